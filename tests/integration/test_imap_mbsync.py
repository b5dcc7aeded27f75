"""mbsync (Debian's isync, a strict IMAP client) syncs an inbox to a local Maildir and back over TLS
(issue 25): flags set on the Maildir side reach the API, a message deleted over the API leaves the
Maildir at the next sync, and one trashed in the Maildir goes to Trash."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.integration.imap_fixtures import imap_server, mailbox, tls_files  # noqa: F401
from tests.integration.smtp_fixtures import client as smtp_client
from tests.integration.smtp_fixtures import message_bytes, smtp_listener  # noqa: F401

CONFIG = """IMAPAccount gentbox
Host {host}
Port {port}
User {user}
Pass "{password}"
SSLType IMAPS
CertificateFile {cert}
AuthMechs LOGIN PLAIN

IMAPStore remote
Account gentbox

MaildirStore local
Path {maildir}/
Inbox {maildir}/INBOX
SubFolders Verbatim

Channel people
Far :remote:
Near :local:
Patterns INBOX
Create Near
Expunge Both
SyncState *
Sync All
"""


def mbsync(home: Path) -> None:
    done = subprocess.run(["mbsync", "-c", str(home / "mbsyncrc"), "people"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "HOME": str(home)})
    assert done.returncode == 0, done.stdout + done.stderr


def maildir(home: Path) -> dict[str, Path]:
    """Subject -> file of every message in the local INBOX."""
    found = {}
    for sub in ("new", "cur"):
        for path in (home / "Mail" / "INBOX" / sub).iterdir():
            subject = next(line for line in path.read_bytes().splitlines() if line.startswith(b"Subject: "))
            found[subject[9:].decode()] = path
    return found


def set_flags(path: Path, flags: str) -> None:
    """What a Maildir reader does to flag a message: move it to cur/ with the flags after ':2,'."""
    base = path.name.split(":2,", 1)[0]
    path.rename(path.parent.parent / "cur" / f"{base}:2,{flags}")


def api(client, box, method: str, path: str = "", **kw):
    resp = getattr(client, method)(f"/v1/messages/{path}", query_string={"inbox_id": box.inbox_id},
                                   headers=box.owner.auth, **kw)
    assert resp.status_code in (200, 204), resp.get_data(as_text=True)
    return resp.get_json() if resp.status_code == 200 else None


def test_mbsync_round_trip_carries_flags_and_deletions_both_ways(
        imap_server, mailbox, smtp_listener, client, tmp_path, tls_files) -> None:  # noqa: F811
    smtp = smtp_listener()
    for subject in ("Read me", "Flag me", "Delete me over the API", "Trash me here"):
        with smtp_client(smtp) as s:
            s.sendmail("alice@sender.example", [mailbox.address], message_bytes(subject, mailbox.address))
    address = imap_server()
    (tmp_path / "Mail").mkdir()
    (tmp_path / "mbsyncrc").write_text(CONFIG.format(
        host=address.host, port=address.tls_port, user=mailbox.address, password=mailbox.password,
        cert=tls_files[0], maildir=tmp_path / "Mail"))
    mbsync(tmp_path)
    local = maildir(tmp_path)
    assert sorted(local) == ["Delete me over the API", "Flag me", "Read me", "Trash me here"]

    set_flags(local["Read me"], "S")
    set_flags(local["Flag me"], "FS")
    set_flags(local["Trash me here"], "ST")
    by_subject = {m["subject"]: m for m in api(client, mailbox, "get")["results"]}
    api(client, mailbox, "delete", f"{by_subject['Delete me over the API']['message_id']}/")
    mbsync(tmp_path)

    by_subject = {m["subject"]: m for m in api(client, mailbox, "get")["results"]}
    assert by_subject["Read me"]["is_read"] is True and by_subject["Flag me"]["is_read"] is True
    assert "Delete me over the API" not in by_subject
    assert "trash" in by_subject["Trash me here"]["labels"]  # expunged from INBOX: moved to Trash
    assert sorted(maildir(tmp_path)) == ["Flag me", "Read me"]
    mbsync(tmp_path)  # a third run finds nothing to do and changes nothing
    assert sorted(maildir(tmp_path)) == ["Flag me", "Read me"]
    assert maildir(tmp_path)["Flag me"].name.endswith(":2,FS")
