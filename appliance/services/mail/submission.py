"""SMTP submission (contract section 20, RFC 6409): a message a person's mail client (or an agent
speaking SMTP) composed, checked and sent through the one send path (outbound.dispatch), so caps,
held sends, DKIM, the copy in the inbox's sent mail, contacts and events are the API's own.

What the message submission agent adds to what the client wrote (RFC 6409 section 8): a Date
and a Message-ID when missing, and no Bcc field (its addresses are in the envelope only). What
it refuses: an envelope sender or a From/Sender that is not the signed-in inbox's address.
"""
from __future__ import annotations

import re
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import format_datetime, getaddresses

from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.errors import ForbiddenError, PayloadTooLargeError, ValidationError
from appliance.ids import new_id
from appliance.models import Domain, Inbox, Message
from appliance.services.identity.app_passwords import MailLogin
from appliance.services.mail import compose, inbound, outbound
from appliance.services.mail.mime import parse_message

_FIELD_START = re.compile(rb"^([!-9;-~]+)[ \t]*:")


def submit(db: Session, settings: Settings, login: MailLogin, *, mail_from: str, recipients: list[str],
           raw: bytes) -> Message:
    """Send what the client submitted as the signed-in inbox (held if its email:send is held)."""
    if not login.principal.has_scope("email:send"):
        raise ForbiddenError("This token may not send mail.", code="insufficient_scope",
                             fix="Sign in with a token that has the email:send scope, or an app password.")
    inbox = db.get(Inbox, login.inbox.id)
    outbound.require_active(inbox)
    if mail_from.strip().lower() != inbox.address:
        raise ForbiddenError(f"The envelope sender must be {inbox.address}, the address you signed in as.",
                             field="mail_from", fix=f"Send MAIL FROM:<{inbox.address}>.")
    everyone = list(dict.fromkeys(compose.normalize_address(r, "recipients") for r in recipients))
    if not everyone or len(everyone) > compose.MAX_RECIPIENTS:
        raise ValidationError(f"Name between 1 and {compose.MAX_RECIPIENTS} recipients.", field="recipients")
    head, sep, body = _split(outbound.wire_bytes(raw))
    _check_senders(head, inbox.address)
    now = utcnow()
    head = _without_bcc(head)
    head = _with_missing(head, db, inbox, now)
    message = head + sep + body
    if len(message) > settings.max_message_bytes:
        raise PayloadTooLargeError(f"The message is {len(message)} bytes; the limit is {settings.max_message_bytes}.")
    parsed = parse_message(message)
    composed = compose.Composed(raw=message, mail_from=inbox.address, recipients=everyone,
                                message_id=parsed.message_id, thread_id=inbound.thread_of(db, inbox.id, parsed))
    names = {a["email"].lower(): a.get("name") or "" for a in parsed.to + parsed.cc if a.get("email")}
    return outbound.dispatch(db, settings, login.principal, inbox, composed, now, names=names)


def _split(raw: bytes) -> tuple[bytes, bytes, bytes]:
    """(the header block with its final CRLF, the blank line, the body)."""
    if raw.startswith(b"\r\n"):
        return b"", b"\r\n", raw[2:]
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        raise ValidationError("The message has no blank line between its header and body.", field="message")
    return head + b"\r\n", b"\r\n", body


def _fields(head: bytes) -> list[tuple[bytes, bytes]]:
    """The header block as (name, whole field with continuation lines) pairs."""
    out: list[tuple[bytes, bytes]] = []
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + line)
            continue
        match = _FIELD_START.match(line)
        if match is None:
            raise ValidationError("The message header has a line that is not a field.", field="message")
        out.append((match.group(1).lower(), line))
    return out


def _check_senders(head: bytes, address: str) -> None:
    parsed = BytesHeaderParser(policy=compat32).parsebytes(head + b"\r\n")
    for name in ("From", "Sender"):
        values = parsed.get_all(name) or []
        if name == "From" and len(values) != 1:
            raise ForbiddenError("The message needs exactly one From field.", field="from",
                                 fix=f"Send From: {address}")
        people = [email.strip().lower() for _n, email in getaddresses([str(v) for v in values])]
        if any(email != address for email in people) or (values and not people):
            raise ForbiddenError(f"{name} must be {address}, the address you signed in as.", field=name.lower(),
                                 fix=f"Send {name}: {address}")


def _without_bcc(head: bytes) -> bytes:
    return b"".join(line for name, line in _fields(head) if name != b"bcc")


def _with_missing(head: bytes, db: Session, inbox: Inbox, now) -> bytes:  # noqa: ANN001
    names = {name for name, _line in _fields(head)}
    extra = b""
    if b"date" not in names:
        extra += b"Date: " + format_datetime(now).encode() + b"\r\n"
    if b"message-id" not in names:
        domain = db.get(Domain, inbox.domain_id).name
        extra += f"Message-ID: <{new_id('m').split('_', 1)[1].lower()}@{domain}>\r\n".encode()
    return extra + head
