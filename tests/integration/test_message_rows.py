"""One builder of a parsed message's rows (issue 14.14): the same bytes stored as received mail
(inbound.receive, Core inserts) and as a sent copy (outbound.store_outbound, the ORM) read the
same, field for field, attachments included; only what differs by direction differs."""
from __future__ import annotations

from sqlalchemy import select

from appliance.clock import utcnow
from appliance.models import Attachment, Inbox, Message, Thread
from appliance.services.workspace import blobs
from appliance.services.mail import inbound, outbound
from tests.mime_corpus import build

DIRECTIONAL = {"id", "thread_id", "direction", "status", "is_read", "created_at", "size", "labels",
               "authentication", "envelope_from", "envelope_to", "client_ip", "received_at", "sent_at"}


def _columns(row: Message) -> dict:
    return {c.key: getattr(row, c.key) for c in Message.__table__.columns if c.key not in DIRECTIONAL}


def _attachments(db, message_id: str) -> list[tuple]:
    rows = db.scalars(select(Attachment).where(Attachment.message_id == message_id).order_by(Attachment.filename))
    return sorted((a.filename, a.content_type, a.size, a.disposition, a.content_id, blobs.attachment_bytes(db, a))
                  for a in rows)


def test_received_and_sent_copies_of_the_same_bytes_read_the_same(world, store) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner)
    compared = 0
    cases = build()
    for case in cases:
        name, raw = case.name, case.raw
        with store.session() as db:
            inbox = db.get(Inbox, inbox_id)
            [stored] = inbound.receive(db, inbox_ids=[inbox_id], raw=raw, envelope_from="a@example.org",
                                       envelope_to={inbox_id: inbox.address})
            sent = outbound.store_outbound(db, inbox, raw, thread_id=None, now=utcnow(), status="sent")
            db.flush()
            received = db.get(Message, stored.id)
            assert _columns(received) == _columns(sent), name
            assert _attachments(db, received.id) == _attachments(db, sent.id), name
            assert (received.direction, sent.direction) == ("inbound", "outbound")
            assert db.get(Thread, sent.thread_id).message_count == 1
            compared += 1
    assert compared == len(cases) > 5
