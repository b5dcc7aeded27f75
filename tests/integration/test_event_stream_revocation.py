"""A revoked token's live stream (issue 15, point 5) ends cleanly before it sends the revocation's
own `token.revoked` event or anything committed after it, on SQLite and PostgreSQL: not only at
the next periodic credential check (set to a minute here, so only the check before each page can
end it within the test's deadline)."""
from __future__ import annotations

from appliance.services.identity import tokens
from appliance.services.identity.auth import authenticate
from tests.integration.test_event_stream import Reader, _agent, _emit, _serve


def test_a_revoked_tokens_stream_ends_without_the_revocation_or_later_events(make_settings, make_store) -> None:
    with _serve(make_settings, make_store, event_stream_keepalive=60.0, event_stream_auth_interval=60.0) as live:
        owner, agent = _agent(live.world)
        reader = Reader(live, agent.auth)
        assert reader.status == 200
        before = _emit(live.store, owner, agent.inbox_id)
        assert reader.next_event().data["resource_id"] == before[0]  # live while the token is good
        with live.store.session() as db:
            tokens.revoke_token(db, authenticate(db, owner.access_token), agent.token_id)
        _emit(live.store, owner, agent.inbox_id, n=3)  # committed after the revocation
        sent = []
        while (msg := reader.next()) is not None:  # the server ends the stream within the deadline
            sent.append(msg)
        assert [m for m in sent if m.data is not None] == []
        reader.close()
        assert Reader(live, agent.auth).status == 401
