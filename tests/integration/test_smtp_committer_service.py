"""The one committer of several listener processes (smtp.committer.CommitterService in the parent,
RemoteCommitter in each child), over a real socket pair and a real store: outcomes come back as
the in-process Committer gives them (stored copies, RecipientChanged, a refusal with its SMTP
reply), a stopping child gets every answer before the line closes, and a parent that vanishes
holding messages leaves their outcome unknown (the session must end unanswered, never 451: the
parent may have committed them)."""
from __future__ import annotations

import smtplib
import socket
import threading

import pytest
from sqlalchemy import func, select, text

from appliance.models import Inbox, Message
from appliance.services.mail import inbound
from smtp.committer import (TEMPORARY_FAILURE, CommitterService, OutcomeUnknown, RemoteCommitter, StoreRefused,
                            _FRAME, _recv_frame)
from smtp.server import Listener


def incoming(inbox_id: str, tag: str) -> inbound.Incoming:
    raw = f"From: a@sender.example\r\nSubject: {tag}\r\nMessage-ID: <{tag}@x>\r\n\r\nbody {tag}\r\n".encode()
    return inbound.prepare(inbox_ids=[inbox_id], raw=raw, envelope_from="a@sender.example", envelope_to={})


def count(store) -> int:
    with store.read_sessions() as db:
        return db.scalar(select(func.count()).select_from(Message))


def test_children_store_through_the_parent_and_hear_each_outcome(world, store) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "agent@hosted.example")
    paused = world.inbox(owner, "paused@hosted.example")
    lines = [socket.socketpair() for _ in range(2)]
    service = CommitterService(store, [parent for parent, _child in lines])
    children = [RemoteCommitter(child) for _parent, child in lines]
    try:
        futures = [children[n % 2].submit(incoming(inbox_id, f"m{n}")) for n in range(40)]
        stored = [future.result(30) for future in futures]
        assert all(len(copies) == 1 and copies[0].inbox_id == inbox_id for copies in stored)
        assert len({copies[0].id for copies in stored}) == 40 and count(store) == 40

        with store.session() as db:
            db.get(Inbox, paused).status = "paused"
        with pytest.raises(inbound.RecipientChanged) as changed:
            children[0].submit(incoming(paused, "p")).result(30)
        assert (changed.value.inbox_id, changed.value.status) == (paused, "paused")

        with store.session() as db:  # the store fails at commit: the child hears the reply to give
            db.execute(text("ALTER TABLE message_raw RENAME TO message_raw_away"))
        try:
            with pytest.raises(StoreRefused) as refused:
                children[1].submit(incoming(inbox_id, "fails")).result(30)
            assert refused.value.reply == TEMPORARY_FAILURE
        finally:
            with store.session() as db:
                db.execute(text("ALTER TABLE message_raw_away RENAME TO message_raw"))
        assert count(store) == 40

        # A child stopping with messages in flight hears every answer before its line closes.
        last = [children[0].submit(incoming(inbox_id, f"last{n}")) for n in range(10)]
        children[0].close()
        assert all(future.done() and len(future.result()) == 1 for future in last)
    finally:
        children[1].close()
        service.close()
    assert count(store) == 50


def test_a_parent_gone_with_messages_leaves_their_outcome_unknown(world, store) -> None:
    inbox_id = world.inbox(world.owner(), "agent@hosted.example")
    parent, child = socket.socketpair()
    remote = RemoteCommitter(child)
    received = threading.Event()

    def vanishing_parent() -> None:  # takes the message, then dies before answering
        assert _recv_frame(parent) is not None
        received.set()
        parent.close()

    thread = threading.Thread(target=vanishing_parent)
    thread.start()
    held = remote.submit(incoming(inbox_id, "held"))
    with pytest.raises(OutcomeUnknown):
        held.result(30)
    thread.join()
    assert received.is_set()
    with pytest.raises(StoreRefused) as later:  # nothing can store it now: a temporary failure
        remote.submit(incoming(inbox_id, "later")).result(30)
    assert later.value.reply == TEMPORARY_FAILURE
    remote.close()


def test_a_garbled_answer_is_read_as_a_broken_line(world, store) -> None:
    inbox_id = world.inbox(world.owner(), "agent@hosted.example")
    parent, child = socket.socketpair()
    remote = RemoteCommitter(child)
    held = remote.submit(incoming(inbox_id, "held"))
    request, _incoming = _recv_frame(parent)
    parent.sendall(_FRAME.pack(request, 5) + b"\x80junk")  # not a pickle
    with pytest.raises(OutcomeUnknown):
        held.result(30)
    parent.close()
    remote.close()


def test_a_session_whose_committer_vanished_ends_unanswered(world, store, settings, caplog) -> None:
    """Over SMTP: the message handed to a parent that died before answering gets no reply at all
    (the client must not hear 451 and send it again: it may be stored); the next one hears 451;
    no session error is logged."""
    world.inbox(world.owner(), "agent@hosted.example")
    parent, child = socket.socketpair()

    def vanishing_parent() -> None:
        _recv_frame(parent)
        parent.close()

    thread = threading.Thread(target=vanishing_parent)
    thread.start()
    listener = Listener(store, settings.model_copy(update={"tls_cert_file": None, "tls_key_file": None}),
                        host="127.0.0.1", port=0)
    listener._commit_socket = child  # as a forked listener process gets it
    address = listener.start()
    mail = b"From: a@sender.example\r\nSubject: held\r\n\r\nbody\r\n"
    try:
        with smtplib.SMTP(*address, timeout=30) as smtp:
            smtp.ehlo("client.example")
            with pytest.raises(smtplib.SMTPServerDisconnected):
                smtp.sendmail("a@sender.example", ["agent@hosted.example"], mail)
        thread.join()
        with smtplib.SMTP(*address, timeout=30) as smtp:
            smtp.ehlo("client.example")
            with pytest.raises(smtplib.SMTPDataError) as later:
                smtp.sendmail("a@sender.example", ["agent@hosted.example"], mail)
            assert later.value.smtp_code == 451
    finally:
        listener.stop()
    assert count(store) == 0
    assert not [r for r in caplog.records if "unexpected error" in r.getMessage()]
