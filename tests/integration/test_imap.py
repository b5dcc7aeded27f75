"""The IMAP server (issue 25 point 1) against three clients written by others: Python's imaplib,
imapclient and aioimaplib, over STARTTLS (port 143's role) and TLS (993's), on a live server
bound to port 0, with mail arriving over real SMTP and changes checked through the API."""
from __future__ import annotations

import asyncio
import imaplib
import time

import aioimaplib
import pytest
from imapclient import IMAPClient

from tests.integration.imap_fixtures import client_context, imap_server, mailbox, tls_files  # noqa: F401
from tests.integration.smtp_fixtures import client as smtp_client
from tests.integration.smtp_fixtures import message_bytes, smtp_listener  # noqa: F401


def deliver(smtp_address: tuple[str, int], to: str, subject: str) -> None:
    with smtp_client(smtp_address) as smtp:
        smtp.sendmail("alice@sender.example", [to], message_bytes(subject, to))


def logged_in(address, box) -> imaplib.IMAP4:
    imap = imaplib.IMAP4(address.host, address.port)
    imap.starttls(client_context())
    imap.login(box.address, box.password)
    return imap


def api_message(client, box, message_id: str) -> dict:
    resp = client.get(f"/v1/messages/{message_id}/", query_string={"inbox_id": box.inbox_id},
                      headers=box.owner.auth)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()


def api_messages(client, box) -> list[dict]:
    resp = client.get("/v1/messages/", query_string={"inbox_id": box.inbox_id}, headers=box.owner.auth)
    assert resp.status_code == 200, resp.get_json()
    return resp.get_json()["results"]


def test_imaplib_logs_in_after_starttls_and_reads_flags_and_labels_as_the_api_does(
        imap_server, mailbox, smtp_listener, client) -> None:
    smtp = smtp_listener()
    deliver(smtp, mailbox.address, "First")
    deliver(smtp, mailbox.address, "Second")
    address = imap_server()
    imap = imaplib.IMAP4(address.host, address.port)
    assert "LOGINDISABLED" in imap.capabilities and "STARTTLS" in imap.capabilities
    with pytest.raises(imaplib.IMAP4.error, match="PRIVACYREQUIRED"):
        imap.login(mailbox.address, mailbox.password)
    imap.starttls(client_context())
    assert imap.login(mailbox.address, mailbox.password)[0] == "OK"
    _, listed = imap.list()
    assert b'(\\HasNoChildren \\Sent) "/" "Sent"' in listed and b'(\\HasNoChildren \\Junk) "/" "Junk"' in listed
    assert imap.select("INBOX") == ("OK", [b"2"])
    validity = imap.response("UIDVALIDITY")[1][0]
    _, data = imap.uid("FETCH", "1:*", "(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    subjects = [part[1] for part in data if isinstance(part, tuple)]
    assert subjects == [b"Subject: First\r\n\r\n", b"Subject: Second\r\n\r\n"]
    # \Seen is the message's is_read, both ways
    first, second = sorted(api_messages(client, mailbox), key=lambda m: m["subject"])
    assert imap.uid("STORE", "1", "+FLAGS", "(\\Seen)")[0] == "OK"
    assert api_message(client, mailbox, first["message_id"])["is_read"] is True
    resp = client.patch(f"/v1/messages/{second['message_id']}/", query_string={"inbox_id": mailbox.inbox_id},
                        json={"is_read": True, "labels": ["invoices"]}, headers=mailbox.owner.auth)
    assert resp.status_code == 200, resp.get_json()
    assert imap.search(None, "UNSEEN") == ("OK", [b""])
    # a label is a folder
    _, listed = imap.list()
    assert b'(\\HasNoChildren) "/" "invoices"' in listed
    assert imap.status("invoices", "(MESSAGES)")[1] == [b'"invoices" (MESSAGES 1)']
    # expunge from INBOX moves to Trash
    assert imap.store("1", "+FLAGS", "(\\Deleted)")[0] == "OK"
    assert imap.expunge() == ("OK", [b"1"])
    assert "trash" in api_message(client, mailbox, first["message_id"])["labels"]
    assert imap.status("Trash", "(MESSAGES)")[1] == [b'"Trash" (MESSAGES 1)']
    imap.logout()
    # UIDs and UIDVALIDITY persist across sessions: the second message keeps UID 2
    again = logged_in(address, mailbox)
    again.select("INBOX")
    assert again.response("UIDVALIDITY")[1][0] == validity
    assert again.uid("SEARCH", None, "ALL") == ("OK", [b"2"])
    again.logout()


def test_imapclient_over_tls_moves_copies_and_appends_with_uidplus(
        imap_server, mailbox, smtp_listener, client) -> None:
    smtp = smtp_listener()
    for n in range(3):
        deliver(smtp, mailbox.address, f"Note {n}")
    address = imap_server()
    with IMAPClient(address.host, address.tls_port, ssl=True, ssl_context=client_context(), timeout=30) as imap:
        assert imap.has_capability("SPECIAL-USE") and imap.has_capability("MOVE")
        imap.login(mailbox.address, mailbox.password)
        assert imap.find_special_folder(b"\\Trash") == "Trash"
        info = imap.select_folder("INBOX")
        assert info[b"EXISTS"] == 3
        uids = imap.search(["SUBJECT", "Note 1"])
        assert uids == [2]
        fetched = imap.fetch(uids, ["ENVELOPE", "BODYSTRUCTURE", "RFC822.SIZE"])
        assert fetched[2][b"ENVELOPE"].subject == b"Note 1"
        assert fetched[2][b"BODYSTRUCTURE"][0] == b"TEXT"
        imap.create_folder("Projects")
        imap.copy([1], "Projects")  # COPY labels the message
        assert imap.folder_status("Projects", ["MESSAGES"])[b"MESSAGES"] == 1
        imap.move([3], "Trash")
        assert imap.search("ALL") == [1, 2]
        labels = {m["subject"]: m["labels"] for m in api_messages(client, mailbox)}
        assert "Projects" in labels["Note 0"] and "trash" in labels["Note 2"]
        appended = imap.append("Sent", message_bytes("Kept copy", "bob@remote.example"), flags=[b"\\Seen"])
        assert b"APPENDUID" in appended
        assert imap.folder_status("Sent", ["MESSAGES"])[b"MESSAGES"] == 1
        imap.select_folder("Trash")
        imap.delete_messages([1])
        imap.expunge()  # from Trash: gone for good
        assert "Note 2" not in {m["subject"] for m in api_messages(client, mailbox)}


def test_aioimaplib_idle_announces_mail_received_over_smtp_within_two_seconds(
        imap_server, mailbox, smtp_listener) -> None:
    smtp = smtp_listener()
    address = imap_server()

    async def scenario() -> float:
        lost = asyncio.get_running_loop().create_future()
        imap = aioimaplib.IMAP4(address.host, address.tls_port, ssl_context=client_context(), timeout=30,  # TLS
                                conn_lost_cb=lambda _exc: lost.done() or lost.set_result(None))
        try:
            return await session(imap)
        finally:
            # aioimaplib's logout leaves the connection for the server to close: close it and wait,
            # or a transport still open when the loop ends warns later, in another test (seen in CI).
            transport = getattr(imap.protocol, "transport", None)
            if transport is not None and not lost.done():
                transport.close()
                await asyncio.wait_for(asyncio.shield(lost), 10)

    async def session(imap: aioimaplib.IMAP4) -> float:
        await imap.wait_hello_from_server()
        assert (await imap.login(mailbox.address, mailbox.password)).result == "OK"
        assert (await imap.select("INBOX")).result == "OK"
        idle = await imap.idle_start(timeout=60)
        started = time.monotonic()
        await asyncio.get_running_loop().run_in_executor(None, deliver, smtp, mailbox.address, "Ping")
        while True:
            remaining = 2.0 - (time.monotonic() - started)
            assert remaining > 0, "no EXISTS within 2 s"
            pushed = await imap.wait_server_push(timeout=remaining)
            if any(b"EXISTS" in (line if isinstance(line, bytes) else str(line).encode()) for line in pushed):
                break
        took = time.monotonic() - started
        imap.idle_done()
        await asyncio.wait_for(idle, 5)
        await imap.logout()
        return took

    assert asyncio.run(scenario()) < 2.0


def test_wrong_passwords_are_refused_alike_and_throttled_per_ip(imap_server, mailbox) -> None:
    address = imap_server(login_failures_ip=3)
    for user in (mailbox.address, "nobody@imap.example", mailbox.address):
        imap = imaplib.IMAP4(address.host, address.port)
        imap.starttls(client_context())
        with pytest.raises(imaplib.IMAP4.error, match="AUTHENTICATIONFAILED"):
            imap.login(user, "wrong password")
        imap.logout()
    imap = imaplib.IMAP4_SSL(address.host, address.tls_port, ssl_context=client_context())
    with pytest.raises(imaplib.IMAP4.error, match="UNAVAILABLE"):
        imap.login(mailbox.address, mailbox.password)  # the right one too, while the IP is throttled
    imap.logout()


def test_connections_past_the_per_ip_cap_get_bye(imap_server) -> None:
    address = imap_server(imap_max_connections_per_ip=2)
    held = [imaplib.IMAP4(address.host, address.port) for _ in range(2)]
    with pytest.raises(imaplib.IMAP4.error, match="Too many connections"):
        imaplib.IMAP4(address.host, address.port)
    held[0].logout()
    deadline = time.monotonic() + 5
    while True:  # the slot comes back once the server has seen the close
        try:
            imaplib.IMAP4(address.host, address.port).logout()
            break
        except imaplib.IMAP4.error:
            assert time.monotonic() < deadline
    held[1].logout()


def test_an_app_password_logs_in_and_a_read_only_agent_token_cannot_change_mail(
        imap_server, mailbox, smtp_listener, client, world) -> None:
    deliver(smtp_listener(), mailbox.address, "For the agent")
    resp = client.post("/v1/app-passwords/", json={"inbox_id": mailbox.inbox_id, "label": "Thunderbird"},
                       headers=mailbox.owner.auth)
    assert resp.status_code == 201, resp.get_data(as_text=True)
    address = imap_server()
    imap = imaplib.IMAP4_SSL(address.host, address.tls_port, ssl_context=client_context())
    assert imap.login(mailbox.address, resp.get_json()["password"])[0] == "OK"
    imap.logout()
    reader = world.agent(mailbox.owner, mailbox.inbox_id, ["email:read"])
    imap = imaplib.IMAP4_SSL(address.host, address.tls_port, ssl_context=client_context())
    assert imap.login(mailbox.address, reader.raw)[0] == "OK"
    assert imap.select("INBOX") == ("OK", [b"1"])
    typ, data = imap.store("1", "+FLAGS", "(\\Seen)")
    assert typ == "NO" and b"NOPERM" in data[0]
    imap.logout()
