"""Issue 22 leftover: in enforce mode a full mailbox is refused at RCPT TO (452 4.2.2) for that
recipient alone; the transaction's other recipients still get the message. A size declared with
SIZE= that would pass the cap is refused at RCPT too; the real size is still checked at DATA
(tests/integration/test_mailbox_cap_smtp.py)."""
from __future__ import annotations

from tests.integration.smtp_fixtures import client as smtp_client, message_bytes, smtp_listener, tls_files  # noqa: F401
from tests.integration.test_mailbox_cap_smtp import BIG, _put_cap, _stored

FULL = (452, b"4.2.2 Mailbox full; try again later")


def test_a_full_mailbox_is_refused_per_recipient(world, store, client, smtp_listener) -> None:
    owner = world.owner()
    full = world.inbox(owner, "full@rcpt.example")
    open_ = world.inbox(owner, "open@rcpt.example")
    address = smtp_listener()
    with smtp_client(address) as smtp:  # 8 KB kept, then the cap lowered below it: over its cap
        assert smtp.sendmail("a@sender.example", ["full@rcpt.example"],
                             message_bytes("first", "full@rcpt.example", body=BIG * 100)) == {}
    kept = _stored(store, full)
    _put_cap(client, owner, full, 0.000001)  # 1,000 bytes
    with smtp_client(address) as smtp:
        assert smtp.mail("a@sender.example")[0] == 250
        assert smtp.rcpt("full@rcpt.example") == FULL
        assert smtp.rcpt("open@rcpt.example")[0] == 250
        code, reply = smtp.data(message_bytes("both", "full@rcpt.example, open@rcpt.example", body="Hello."))
        assert code == 250, reply
    assert _stored(store, full) == kept  # nothing added, nothing deleted
    assert len(_stored(store, open_)) == 1


def test_a_declared_size_over_the_cap_is_refused_at_rcpt(world, store, client, smtp_listener) -> None:
    owner = world.owner()
    capped = world.inbox(owner, "small@rcpt.example")
    other = world.inbox(owner, "other@rcpt.example")
    _put_cap(client, owner, capped, 0.00001)  # 10,000 bytes, nothing stored yet
    address = smtp_listener()
    raw = message_bytes("big", "small@rcpt.example, other@rcpt.example", body=BIG * 200)  # ~16 KB
    with smtp_client(address) as smtp:
        smtp.ehlo()
        assert smtp.mail("a@sender.example", [f"SIZE={len(raw)}"])[0] == 250
        assert smtp.rcpt("small@rcpt.example") == FULL
        assert smtp.rcpt("other@rcpt.example")[0] == 250
        assert smtp.data(raw)[0] == 250
        small = message_bytes("small", "small@rcpt.example", body="Short.")
        assert smtp.sendmail("a@sender.example", ["small@rcpt.example"], small) == {}  # room for this one
    assert len(_stored(store, capped)) == 1 and len(_stored(store, other)) == 1
