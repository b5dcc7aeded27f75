"""The tokens page: create with scopes and approval holds, the raw token shown once (and working),
pause, resume, rotate, revoke with confirmation; another tenant's tokens are 404s."""
from __future__ import annotations

import logging
import re

from sqlalchemy import select

from appliance.models import AgentToken
from tests.webui.conftest import text_of

RAW = re.compile(r'<code class="raw-token" id="raw-token">(gent_[^<]+)</code>')


def _token(store, token_id: str) -> AgentToken:
    with store.session() as db:
        return db.get(AgentToken, token_id)


def test_the_raw_token_is_shown_once_and_works(web, world, store, client, caplog):
    caplog.set_level(logging.DEBUG)
    owner = world.owner()
    inbox = world.inbox(owner, "bot@mine.example.com")
    web.sign_in(owner.email)
    page = text_of(web.get("/admin/tokens/"))
    assert "No tokens yet" in page and 'name="scopes" value="email:send"' in page

    resp = web.post("/admin/tokens/", {"inbox_id": inbox, "label": "support-bot",
                                       "scopes": ["email:read", "email:send"], "requires_approval": ["email:send"],
                                       "expires": "30"})
    assert resp.status_code == 200
    page = text_of(resp)
    assert "it is shown only this once" in page and "bot@mine.example.com" in page
    raw = RAW.search(page).group(1)
    assert 'data-copy-from="raw-token"' in page
    assert raw not in resp.headers.get("Set-Cookie", "")  # not in a flash message in the cookie
    assert resp.headers["Cache-Control"] == "no-store"

    assert caplog.records and not [r for r in caplog.records if raw in r.getMessage()]  # never logged
    me = client.get("/v1/users/me/", headers={"Authorization": f"Bearer {raw}"})
    assert me.status_code == 200, me.json
    assert me.json["scopes"] == ["email:read", "email:send"] and me.json["requires_approval"] == ["email:send"]

    listing = text_of(web.get("/admin/tokens/"))
    assert raw not in listing and "support-bot" in listing and "needs approval" in listing
    with store.session() as db:
        token = db.scalar(select(AgentToken).where(AgentToken.label == "support-bot"))
    assert token.expires_at is not None
    assert "never" not in listing.split(f'data-token="{token.id}"', 1)[1].split("</tr>", 1)[0]  # last used now


def test_pause_resume_rotate_and_revoke(web, world, store, client):
    owner = world.owner()
    inbox = world.inbox(owner)
    agent = world.agent(owner, inbox, ["email:read"])
    web.sign_in(owner.email)

    page = text_of(web.post(f"/admin/tokens/{agent.token_id}/pause/", follow_redirects=True))
    assert "The token “test agent” is paused" in page
    assert client.get("/v1/users/me/", headers=agent.auth).json["error"]["code"] == "token_paused"
    page = text_of(web.post(f"/admin/tokens/{agent.token_id}/resume/", follow_redirects=True))
    assert "is active again." in page and _token(store, agent.token_id).status == "active"

    resp = web.post(f"/admin/tokens/{agent.token_id}/rotate/")
    assert "Rotate the token “test agent”?" in text_of(resp)
    assert client.get("/v1/users/me/", headers=agent.auth).status_code == 200  # not rotated yet
    page = text_of(web.post(f"/admin/tokens/{agent.token_id}/rotate/", {"confirm": "yes"}))
    new = RAW.search(page).group(1)
    assert "Token rotated" in page and new != agent.raw
    assert client.get("/v1/users/me/", headers=agent.auth).status_code == 401
    assert client.get("/v1/users/me/", headers={"Authorization": f"Bearer {new}"}).status_code == 200

    resp = web.post(f"/admin/tokens/{agent.token_id}/revoke/")
    assert "Revoke the token “test agent”?" in text_of(resp) and _token(store, agent.token_id).status == "active"
    page = text_of(web.post(f"/admin/tokens/{agent.token_id}/revoke/", {"confirm": "yes"}, follow_redirects=True))
    assert "Revoked the token “test agent”." in page and "No tokens yet" in page
    assert client.get("/v1/users/me/", headers={"Authorization": f"Bearer {new}"}).status_code == 401


def test_service_errors_are_flashed_and_other_tenants_tokens_are_404(web, world, store):
    stranger = world.owner()
    theirs = world.agent(stranger, world.inbox(stranger), ["email:read"])
    owner = world.owner()
    inbox = world.inbox(owner)
    web.sign_in(owner.email)
    page = text_of(web.post("/admin/tokens/", {"inbox_id": inbox, "label": "x"}, follow_redirects=True))
    assert "scopes must name at least one scope" in page
    page = text_of(web.post("/admin/tokens/", {"inbox_id": inbox, "scopes": ["email:read"],
                                               "requires_approval": ["email:send"]}, follow_redirects=True))
    assert "requires_approval may only list scopes the token has" in page
    page = text_of(web.post("/admin/tokens/", {"inbox_id": theirs.inbox_id, "scopes": ["email:read"]},
                            follow_redirects=True))
    assert "No such inbox." in page
    for action in ("pause", "resume", "rotate", "revoke"):
        assert web.post(f"/admin/tokens/{theirs.token_id}/{action}/", {"confirm": "yes"}).status_code == 404
    assert _token(store, theirs.token_id).status == "active"
    assert theirs.token_id not in text_of(web.get("/admin/tokens/"))
