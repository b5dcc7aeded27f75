"""A flag stored in one IMAP session wakes the other sessions IDLE-ing on the folder with an
untagged FETCH FLAGS: keywords (which only IMAP clients set) and the system flags kept per folder
(\\Flagged and the like), not only \\Seen (the message's is_read). Real clients: imaplib stores,
IMAPClient idles, against the live server on port 0."""
from __future__ import annotations

import imaplib
import time

import pytest
from imapclient import IMAPClient

from tests.integration.imap_fixtures import client_context, imap_server, mailbox, tls_files  # noqa: F401
from tests.integration.smtp_fixtures import client as smtp_client
from tests.integration.smtp_fixtures import message_bytes, smtp_listener  # noqa: F401

WAIT = 20  # seconds an idling client waits for the FETCH (a wake-up takes well under one)


def pushed_flags(idler: IMAPClient, uid_seq: int) -> set[bytes] | None:
    """Wait (up to WAIT s) for an untagged FETCH of message uid_seq while idling: its flags."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for response in idler.idle_check(timeout=max(0.1, deadline - time.monotonic())):
            if len(response) == 3 and response[0] == uid_seq and response[1] == b"FETCH":
                items = dict(zip(response[2][::2], response[2][1::2]))
                return set(items.get(b"FLAGS", ()))
    return None


# \Seen (the message's is_read, whose message.updated event always woke IDLE) is the control.
@pytest.mark.parametrize("flag", ["$Important", "Project-X", "\\Flagged", "\\Seen"])
def test_a_flag_stored_in_one_session_wakes_another_idling_on_the_folder(
        imap_server, mailbox, smtp_listener, flag: str) -> None:
    with smtp_client(smtp_listener()) as smtp:
        smtp.sendmail("alice@sender.example", [mailbox.address], message_bytes("Flag me", mailbox.address))
    address = imap_server()
    with IMAPClient(address.host, address.tls_port, ssl=True, ssl_context=client_context(), timeout=60) as idler:
        idler.login(mailbox.address, mailbox.password)
        assert idler.select_folder("INBOX")[b"EXISTS"] == 1
        idler.idle()
        writer = imaplib.IMAP4(address.host, address.port)
        try:
            writer.starttls(client_context())
            writer.login(mailbox.address, mailbox.password)
            writer.select("INBOX")
            assert writer.uid("STORE", "1", "+FLAGS", f"({flag})")[0] == "OK"
            flags = pushed_flags(idler, 1)
            assert flags is not None, f"no FETCH FLAGS pushed to the idling session after {flag} was stored"
            assert flag.encode() in flags
            # Taking it off is announced the same way.
            assert writer.uid("STORE", "1", "-FLAGS", f"({flag})")[0] == "OK"
            flags = pushed_flags(idler, 1)
            assert flags is not None and flag.encode() not in flags
        finally:
            writer.logout()
            idler.idle_done()
