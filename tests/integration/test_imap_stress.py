"""Many clients at once on one mailbox, in the spirit of Dovecot's imaptest (issue 25): 10 imaplib
sessions do random FETCH/STORE/SEARCH/EXPUNGE/APPEND/MOVE on INBOX while mail arrives over SMTP.

What must hold: every session's sequence numbers run 1..N over strictly increasing UIDs; a UID
always names the same message and, once gone, never comes back; no command fails; and at the end
every session sees the same messages with the same flags, and `\\Seen` is the API's is_read.
The suite runs it for IMAP_STRESS_SECONDS (10 s); bench/imap_stress.sh runs it longer.
"""
from __future__ import annotations

import imaplib
import os
import random
import re
import threading
import time

from tests.integration.imap_fixtures import client_context, imap_server, mailbox, tls_files  # noqa: F401
from tests.integration.smtp_fixtures import client as smtp_client
from tests.integration.smtp_fixtures import message_bytes, smtp_listener  # noqa: F401

SECONDS = float(os.environ.get("IMAP_STRESS_SECONDS", "10"))
SESSIONS = 10
_FETCHED = re.compile(rb"^(\d+) \(UID (\d+) BODY\[HEADER\.FIELDS \(MESSAGE-ID\)\] \{\d+\}$")


class Observer:
    """What all sessions saw: UID -> Message-ID, and the UIDs seen gone."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.names: dict[int, bytes] = {}
        self.gone: set[int] = set()
        self.problems: list[str] = []

    def saw(self, pairs: list[tuple[int, int, bytes]], complete: bool) -> None:
        """pairs: (seq, uid, message-id) of a FETCH; complete: it was 1:* after a NOOP."""
        uids = [uid for _, uid, _ in pairs]
        with self.lock:
            if uids != sorted(set(uids)):
                self.problems.append(f"UIDs not strictly increasing: {uids}")
            if complete and [seq for seq, _, _ in pairs] != list(range(1, len(pairs) + 1)):
                self.problems.append(f"sequence numbers not 1..N: {[s for s, _, _ in pairs]}")
            for _, uid, name in pairs:
                if self.names.setdefault(uid, name) != name:
                    self.problems.append(f"UID {uid} named two messages")
                if complete and uid in self.gone:
                    self.problems.append(f"UID {uid} came back")


def fetch_all(imap: imaplib.IMAP4) -> list[tuple[int, int, bytes]]:
    # UID FETCH 1:*: an empty mailbox (every message expunged by the others) answers OK with
    # nothing, where FETCH 1:* names a sequence number that does not exist (BAD, as Dovecot says).
    typ, data = imap.uid("FETCH", "1:*", "(UID BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
    assert typ == "OK", data
    out = []
    for part in data:
        if isinstance(part, tuple):
            match = _FETCHED.match(part[0])
            assert match, part[0]
            out.append((int(match.group(1)), int(match.group(2)), part[1].strip()))
    return out


def logged_in(address, box) -> imaplib.IMAP4:
    imap = imaplib.IMAP4_SSL(address.host, address.tls_port, ssl_context=client_context())
    imap.login(box.address, box.password)
    imap.select("INBOX")
    return imap


def worker(imap: imaplib.IMAP4, observer: Observer, stop: threading.Event, seed: int) -> None:
    rng = random.Random(seed)
    try:
        while not stop.is_set():
            step(imap, rng, observer)
    except Exception as exc:  # noqa: BLE001 - every failure is a finding
        with observer.lock:
            observer.problems.append(f"session {seed}: {type(exc).__name__}: {exc}")
    finally:
        try:
            imap.logout()
        except Exception:  # noqa: BLE001 - the connection may be gone already
            pass


def ok(result: tuple) -> tuple:
    assert result[0] == "OK", result
    return result


def step(imap: imaplib.IMAP4, rng: random.Random, observer: Observer) -> None:
    action = rng.choice(["fetch", "fetch", "store", "store", "search", "expunge", "append", "move", "noop"])
    uids = [int(u) for u in ok(imap.uid("SEARCH", None, "ALL"))[1][0].split()]
    if action == "noop":
        ok(imap.noop())
        observer.saw(fetch_all(imap), complete=True)
    elif action == "fetch":
        observer.saw(fetch_all(imap), complete=False)
    elif action == "search":
        ok(imap.uid("SEARCH", None, rng.choice(["UNSEEN", "FLAGGED", "DELETED", "OR SEEN FLAGGED", "NOT SEEN"])))
    elif action == "append":
        ok(imap.append("Drafts", "(\\Draft)", None, message_bytes("Draft", "someone@remote.example")))
    elif uids:
        uid = str(rng.choice(uids))
        if action == "store":
            flag = rng.choice(["\\Seen", "\\Flagged", "\\Seen", "\\Deleted", "$Important"])
            ok(imap.uid("STORE", uid, rng.choice(["+FLAGS", "-FLAGS"]), f"({flag})"))
        elif action == "expunge":
            ok(imap.expunge())
        elif action == "move":
            ok(imap.uid("MOVE", uid, rng.choice(["Trash", "Junk"])))


def arrivals(smtp_address, to: str, stop: threading.Event, sent: list) -> None:
    while not stop.is_set():
        with smtp_client(smtp_address) as smtp:
            for _ in range(5):
                smtp.sendmail("alice@sender.example", [to], message_bytes(f"Arrival {len(sent)}", to))
                sent.append(1)
        stop.wait(0.2)


def test_ten_sessions_at_random_keep_a_consistent_view(imap_server, mailbox, smtp_listener, client) -> None:
    smtp = smtp_listener()
    for n in range(20):
        with smtp_client(smtp) as s:
            s.sendmail("alice@sender.example", [mailbox.address], message_bytes(f"Start {n}", mailbox.address))
    address = imap_server()
    observer, stop, sent = Observer(), threading.Event(), []
    # Logged in one after the other (the sign-in throttle counts attempts at once; ops are the test)
    sessions = [logged_in(address, mailbox) for _ in range(SESSIONS)]
    threads = [threading.Thread(target=worker, args=(imap, observer, stop, n)) for n, imap in enumerate(sessions)]
    threads.append(threading.Thread(target=arrivals, args=(smtp, mailbox.address, stop, sent)))
    for thread in threads:
        thread.start()
    time.sleep(SECONDS)  # the length of the run itself, not a wait for something to happen
    stop.set()
    for thread in threads:
        thread.join(60)
    assert not observer.problems, observer.problems[:10]
    assert sent, "no mail arrived during the run"
    # checkpoint: every session, after a NOOP, sees the same messages with the same flags
    views = []
    for _ in range(3):
        imap = logged_in(address, mailbox)
        ok(imap.noop())
        views.append(inbox_view(imap))
        observer.saw(fetch_all(imap), complete=True)
        imap.logout()
    assert views[0] and views[0] == views[1] == views[2]
    assert not observer.problems, observer.problems[:10]
    # ... and what IMAP shows is the API's: INBOX is received mail out of Trash/Junk, \Seen is is_read
    shown = sorted((subject, "\\Seen" in flags) for subject, flags in views[0])
    assert shown == api_inbox(client, mailbox)


def inbox_view(imap: imaplib.IMAP4) -> list[tuple[str, str]]:
    """(subject, flags) of every message in the selected folder, in UID order."""
    typ, data = imap.uid("FETCH", "1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK", data
    return [(part[1].decode().strip().removeprefix("Subject: "), re.search(rb"FLAGS \(([^)]*)\)", part[0]).group(1).decode())
            for part in data if isinstance(part, tuple)]


def api_inbox(client, box) -> list[tuple[str, bool]]:
    found, cursor = [], None
    while True:
        query = {"inbox_id": box.inbox_id, "limit": 100, **({"cursor": cursor} if cursor else {})}
        page = client.get("/v1/messages/", query_string=query, headers=box.owner.auth).get_json()
        found += page["results"]
        cursor = page["cursor"]
        if not cursor:
            break
    return sorted((m["subject"], m["is_read"]) for m in found
                  if m["direction"] == "inbound" and not {"trash", "junk"} & set(m["labels"]))
