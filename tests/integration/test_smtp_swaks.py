"""swaks, a real SMTP client from Debian, sends mail with an attachment through the listener."""
from __future__ import annotations

import subprocess
from pathlib import Path

from sqlalchemy import select

from appliance.models import Attachment
from appliance.services.workspace import blobs
from tests.integration.smtp_fixtures import smtp_listener, stored, tls_files  # noqa: F401


def swaks(address: tuple[str, int], *args: str) -> subprocess.CompletedProcess[str]:
    host, port = address
    return subprocess.run(["swaks", "--server", host, "--port", str(port), "--helo", "client.example",
                           "--timeout", "20", *args], capture_output=True, text=True, timeout=60)


def test_swaks_sends_an_attachment_and_it_is_stored(world, store, smtp_listener, tmp_path: Path) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "agent@hosted.example")
    report = tmp_path / "report.pdf"
    content = bytes(range(256)) * 40 + b"%%EOF\n"
    report.write_bytes(content)
    result = swaks(smtp_listener(), "--from", "carol@sender.example", "--to", "agent@hosted.example",
                   "--header", "Subject: Monthly report", "--body", "The report is attached.",
                   "--attach-type", "application/pdf", "--attach", f"@{report}")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "<-  250 2.0.0 Ok: queued as msg_" in result.stdout
    [(message, raw)] = stored(store)
    assert message.inbox_id == inbox_id and message.subject == "Monthly report"
    assert message.has_attachments and "The report is attached." in message.text_body
    with store.read_sessions() as db:
        [attachment] = db.scalars(select(Attachment).where(Attachment.message_id == message.id)).all()
        stored_bytes = blobs.attachment_bytes(db, attachment)  # issue 19: the bytes live in the blob store
    assert (attachment.filename, attachment.content_type) == ("report.pdf", "application/pdf")
    assert stored_bytes == content and attachment.size == len(content)


def test_swaks_over_starttls(world, store, smtp_listener) -> None:
    owner = world.owner()
    world.inbox(owner, "agent@hosted.example")
    result = swaks(smtp_listener(), "--tls", "--from", "carol@sender.example", "--to", "agent@hosted.example",
                   "--header", "Subject: Encrypted")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TLS started" in result.stdout
    [(message, raw)] = stored(store)
    assert message.subject == "Encrypted" and b" with ESMTPS id " in raw.split(b"\r\n\r\n", 1)[0]


def test_swaks_is_refused_for_a_relay_attempt(world, store, smtp_listener) -> None:
    owner = world.owner()
    world.inbox(owner, "agent@hosted.example")
    result = swaks(smtp_listener(), "--from", "carol@sender.example", "--to", "victim@elsewhere.example")
    assert result.returncode != 0
    assert "<** 554 5.7.1 Relay access denied" in result.stdout
    assert stored(store) == []
