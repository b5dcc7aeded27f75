"""The send's write phase stays short (issue 26 point 1): a message to several recipient domains
is queued with one statement for its queue rows and one for its recipient rows, and the write
phase runs a bounded number of statements whatever the recipients (counted, not timed)."""
from __future__ import annotations

from sqlalchemy import event, func, select

from appliance.models import OutboundQueue, OutboundRecipient

TO = [{"email": "a@one.example"}, {"email": "b@two.example"}, {"email": "c@two.example"}]


def test_a_send_to_three_recipients_in_two_domains_queues_them_in_one_statement_each(client, world, store) -> None:  # noqa: ANN001
    agent = world.sender(world.owner("stmts-owner@example.com"), "agent@stmts.example.com")
    seen: list[tuple[str, bool]] = []

    def count(conn, cursor, statement, params, context, executemany) -> None:  # noqa: ANN001
        seen.append((" ".join(statement.split()[:3]), executemany))
    event.listen(store.engine, "before_cursor_execute", count)
    try:
        sent = client.post("/v1/messages/", json={"to": TO, "subject": "hi", "text_body": "x\n"}, headers=agent.auth)
    finally:
        event.remove(store.engine, "before_cursor_execute", count)
    assert sent.status_code == 201, sent.get_json()
    statements = [s for s, _ in seen]
    assert statements.count("INSERT INTO outbound_queue") == 1
    assert statements.count("INSERT INTO outbound_recipients") == 1
    assert statements.count("INSERT INTO messages") == 1 and statements.count("INSERT INTO threads") == 1
    assert not any(s.startswith("UPDATE threads") for s in statements)  # a new thread starts counted in
    with store.session() as db:
        message_id = sent.get_json()["message_id"]
        assert db.scalar(select(func.count()).select_from(OutboundQueue)
                         .where(OutboundQueue.message_id == message_id)) == 2
        positions = db.execute(select(OutboundRecipient.recipient, OutboundRecipient.position)
                               .where(OutboundRecipient.message_id == message_id)
                               .order_by(OutboundRecipient.position)).all()
        assert [tuple(p) for p in positions] == [("a@one.example", 0), ("b@two.example", 1), ("c@two.example", 2)]
