"""Composing outbound mail: validate what the agent asked for, build the MIME message, DKIM-sign it.

Header injection is refused explicitly, never "cleaned": CR, LF or another control character in
any field, raw or inside an RFC 2047 encoded word, is a 400. And whatever the Python version
(CVE-2024-6923: an encoded word holding `=0A` became a new header when the `email` package
refolded it), the built message is parsed back and must carry exactly the header fields we put
in, each once: an injected field cannot leave the appliance.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import unicodedata
from dataclasses import dataclass, field
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import format_datetime

import idna
from sqlalchemy.orm import Session

from appliance.config import Settings
from appliance.errors import ConflictError, PayloadTooLargeError, ValidationError
from appliance.ids import new_id
from appliance.models import Domain, Inbox, Message
from appliance.services.domains import dkim as dkim_keys
from appliance.services.mail import mime, signatures

MAX_RECIPIENTS = 100
MAX_ATTACHMENTS = 100
# The fields we sign: everything an agent wrote or that identifies the message, each once more
# than the message has it (over-signed), so that none can be added without breaking the signature.
SIGNED = ("From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID", "In-Reply-To", "References",
          "MIME-Version", "Content-Type", "Content-Transfer-Encoding",
          "List-Unsubscribe", "List-Unsubscribe-Post")  # RFC 8058 section 4: both covered by the signature
_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?([qQbB])\?([^?\s]*)\?=")
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_CONTENT_TYPE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
_LINK = re.compile(r'<a\b[^>]*?\bhref="([^"]*)"[^>]*>(.*?)</a\s*>', re.IGNORECASE | re.DOTALL)
_HEAD = re.compile(r"<(head|title)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_RE_PREFIX = re.compile(r"^\s*(re|aw|sv)\s*:", re.IGNORECASE)
EXTRA_HEADERS = ("Auto-Submitted", "X-Auto-Response-Suppress",  # what SendRequest.headers may set
                 "List-Unsubscribe", "List-Unsubscribe-Post",  # these two: broadcasts (RFC 8058)
                 "X-Gentbox-Loop")  # workflow forwards (issue 20): their loop header


@dataclass(frozen=True)
class Recipient:
    email: str
    name: str = ""


@dataclass(frozen=True)
class AttachmentIn:
    filename: str
    content_type: str
    content: bytes


@dataclass
class SendRequest:
    """What POST /v1/messages/ asked for, after schema validation (types and lengths)."""

    to: list[Recipient] = field(default_factory=list)
    cc: list[Recipient] = field(default_factory=list)
    bcc: list[Recipient] = field(default_factory=list)
    reply_to: list[Recipient] = field(default_factory=list)
    subject: str | None = None
    text_body: str | None = None
    html_body: str | None = None
    attachments: list[dict] = field(default_factory=list)  # {filename, content_type, content_base64}
    reply_to_message_id: str | None = None
    # Set by code, never by a client: e.g. Auto-Submitted on automatic replies (RFC 3834).
    headers: dict[str, str] = field(default_factory=dict)
    calendar: tuple[str, str] | None = None  # iMIP (RFC 6047): (METHOD, iCalendar text), workspace/imip.py


@dataclass(frozen=True)
class Composed:
    """A built, signed message ready to store and queue."""

    raw: bytes  # CRLF line ends, DKIM-Signature on top
    mail_from: str  # the envelope sender: the inbox's address, where bounces return
    recipients: list[str]  # to + cc + bcc, each once, domains in punycode
    message_id: str  # <...@domain>
    thread_id: str | None  # the thread of the message this answers, if any
    # raw's parsed fields, read off the built message (mime.parse_built) instead of parsing raw
    # again; None when raw must be parsed (a header text that looks like an RFC 2047 encoded word)
    parsed: mime.ParsedMessage | None = None


# --- validation -----------------------------------------------------------------------------
def refuse_injection(value: str, where: str) -> str:
    """400 for CR/LF or another control character, raw or decoded from an encoded word."""
    _refuse_controls(value, where)
    for charset, encoding, payload in _ENCODED_WORD.findall(value):
        _refuse_controls(_decode_word(charset, encoding, payload), where)
    return value


def _refuse_controls(value: str, where: str) -> None:
    for char in value:
        if char in "\r\n\x00" or (unicodedata.category(char) == "Cc" and char != "\t") or char in "\u2028\u2029\x85":
            raise ValidationError(f"{where} must not contain line breaks or control characters "
                                  "(raw or inside an encoded word)", field=where,
                                  fix="Remove line breaks and control characters from the value")


def _decode_word(charset: str, encoding: str, payload: str) -> str:
    """An RFC 2047 encoded word as the `email` package would decode it (leniently)."""
    try:
        if encoding.lower() == "q":
            data = re.sub(r"=([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), payload.replace("_", " "))
            raw = data.encode("latin-1", "replace")
        else:
            raw = base64.b64decode(payload + "=" * (-len(payload) % 4), validate=False)
    except (binascii.Error, ValueError):
        return payload
    try:
        return raw.decode(charset.split("*", 1)[0], "replace")
    except LookupError:
        return raw.decode("latin-1")


def normalize_address(value: str, where: str) -> str:
    """name@domain, the domain in lowercase punycode; 400 for anything else (no display names,
    no comments, no quoted or routed local parts)."""
    refuse_injection(value, where)
    value = value.strip()
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain or len(value) > 320:
        raise ValidationError(f"{where} is not an email address", field=where,
                              fix="Send an address like name@example.com")
    if not local.isascii():
        raise ValidationError(f"{where}: internationalised local parts are not supported yet", field=where,
                              fix="Use an ASCII address for this recipient")
    if not _LOCAL_PART.fullmatch(local) or len(local) > 64:
        raise ValidationError(f"{where} is not an email address", field=where,
                              fix="Send an address like name@example.com")
    try:
        domain = idna.encode(domain.rstrip("."), uts46=True).decode("ascii")
    except idna.IDNAError:
        raise ValidationError(f"{where} has an invalid domain", field=where,
                              fix="Send an address like name@example.com") from None
    if "." not in domain:
        raise ValidationError(f"{where} needs a fully qualified domain", field=where,
                              fix="Send an address like name@example.com")
    return f"{local}@{domain.lower()}"


def _display_name(value: str, where: str) -> str:
    return refuse_injection(value, where).strip()


def _recipients(entries: list[Recipient], where: str) -> list[Recipient]:
    return [Recipient(normalize_address(r.email, f"{where}[{i}].email"), _display_name(r.name, f"{where}[{i}].name"))
            for i, r in enumerate(entries)]


def _attachments(entries: list[dict], settings: Settings) -> list[AttachmentIn]:
    if len(entries) > MAX_ATTACHMENTS:
        raise ValidationError(f"attachments: at most {MAX_ATTACHMENTS}", field="attachments")
    out = []
    for i, entry in enumerate(entries):
        where = f"attachments[{i}]"
        filename = refuse_injection(entry["filename"], f"{where}.filename").strip()
        if not filename or "/" in filename or "\\" in filename:
            raise ValidationError(f"{where}.filename must be a plain file name", field=f"{where}.filename",
                                  fix="Send a name like report.pdf, without folders")
        content_type = refuse_injection(entry.get("content_type") or "application/octet-stream",
                                        f"{where}.content_type").strip().lower()
        if not _CONTENT_TYPE.fullmatch(content_type):
            raise ValidationError(f"{where}.content_type must look like type/subtype", field=f"{where}.content_type",
                                  fix="Send a media type such as application/pdf")
        try:
            content = base64.b64decode(entry["content_base64"], validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError(f"{where}.content_base64 is not valid base64", field=f"{where}.content_base64",
                                  fix="Encode the file's bytes with standard base64") from None
        out.append(AttachmentIn(filename, content_type, content))
    if sum(len(a.content) for a in out) > settings.max_message_bytes:
        raise PayloadTooLargeError(f"The attachments exceed the message size limit of "
                                   f"{settings.max_message_bytes} bytes.", fix="Send smaller files")
    return out


def reply_subject(subject: str) -> str:
    return subject if _RE_PREFIX.match(subject) else f"Re: {subject}".strip()


# --- building -------------------------------------------------------------------------------
def compose(db: Session, settings: Settings, inbox: Inbox, request: SendRequest,
            original: Message | None, now: dt.datetime) -> Composed:
    """Validate request and build the signed message from inbox. original: the message replied to
    (already looked up in the same inbox by the caller)."""
    to, cc, bcc = (_recipients(request.to, "to"), _recipients(request.cc, "cc"), _recipients(request.bcc, "bcc"))
    reply_to = _recipients(request.reply_to, "reply_to")
    subject = refuse_injection(request.subject, "subject") if request.subject is not None else None
    if original is not None:
        if not to:
            source = (original.reply_to_addrs or [{"email": original.from_email, "name": original.from_name}]
                      if original.direction == "inbound" else original.to_addrs or [])
            to = [Recipient(normalize_address(a["email"], "reply_to_message_id"), _clean_name(a.get("name") or ""))
                  for a in source if a.get("email")]
        if subject is None:
            subject = reply_subject(original.subject or "")
    subject = subject or ""
    everyone = list(dict.fromkeys(r.email for r in to + cc + bcc))
    if not everyone:
        raise ValidationError("Name at least one recipient in to, cc or bcc.", field="to",
                              fix='Send "to": [{"email": "name@example.com"}]')
    if len(everyone) > MAX_RECIPIENTS:
        raise ValidationError(f"At most {MAX_RECIPIENTS} recipients per message.", field="to",
                              fix="Split the recipients over several messages")
    text_body, html_body = request.text_body, request.html_body
    if not text_body and not html_body:
        raise ValidationError("Send text_body, html_body or both.", field="text_body",
                              fix="Add a text_body")
    for value, where in ((text_body, "text_body"), (html_body, "html_body")):
        if value and "\x00" in value:
            raise ValidationError(f"{where} must not contain NUL characters", field=where)
    attachments = _attachments(request.attachments, settings)
    text_body, html_body = signatures.append(db, inbox, text_body, html_body, text_alternative)

    domain = db.get(Domain, inbox.domain_id)
    if domain is None or domain.status != "verified":
        raise ConflictError(f"{inbox.address}'s domain is not verified, so its mail would not be trusted.",
                            fix="Publish the domain's DNS records and verify it (POST /v1/domains/{id}/verify/)")
    message_id = f"<{new_id('m').split('_', 1)[1].lower()}@{domain.name}>"

    msg = EmailMessage(policy=policy.SMTP)
    expected = ["From"]
    msg["From"] = Address(display_name=_clean_name(inbox.display_name or ""), addr_spec=inbox.address)
    for name, people in (("To", to), ("Cc", cc), ("Reply-To", reply_to)):
        if people:
            msg[name] = [Address(display_name=p.name, addr_spec=p.email) for p in people]
            expected.append(name)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now.astimezone(dt.timezone.utc))
    msg["Message-ID"] = message_id
    expected += ["Subject", "Date", "Message-ID"]
    if original is not None and original.message_id_header:
        references = [*(original.references or [])[-20:], original.message_id_header]
        msg["In-Reply-To"] = original.message_id_header
        msg["References"] = " ".join(dict.fromkeys(references))
        expected += ["In-Reply-To", "References"]
    for name, value in request.headers.items():
        if name not in EXTRA_HEADERS:  # pragma: no cover - a programming error, never a client's
            raise ValueError(f"compose does not set {name}")
        msg[name] = refuse_injection(value, name)
        expected.append(name)
    if text_body:
        msg.set_content(text_body)
        if html_body:
            msg.add_alternative(html_body, subtype="html")
    else:  # HTML only: a text/plain alternative first, so no reader (nor spam filter) sees HTML alone
        msg.set_content(text_alternative(html_body or ""))
        msg.add_alternative(html_body or "", subtype="html")
    if request.calendar is not None:  # the invitation as the last (richest) alternative, as iMIP clients expect
        msg.add_alternative(request.calendar[1], subtype="calendar", params={"method": request.calendar[0]})
    for attachment in attachments:
        maintype, subtype = attachment.content_type.split("/", 1)
        msg.add_attachment(attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename)
    expected += ["MIME-Version", "Content-Type"] + (["Content-Transfer-Encoding"] if "Content-Transfer-Encoding" in msg else [])
    raw = msg.as_bytes()
    _check_headers(raw, expected)
    if len(raw) > settings.max_message_bytes:
        raise PayloadTooLargeError(f"The message is {len(raw)} bytes; the limit is {settings.max_message_bytes}.",
                                   fix="Send smaller attachments")
    return Composed(raw=raw, mail_from=inbox.address, recipients=everyone, message_id=message_id,
                    thread_id=original.thread_id if original is not None else None,
                    parsed=None if any("=?" in str(value) for value in msg.values()) else mime.parse_built(msg))


def text_alternative(markup: str) -> str:
    """Readable plain text from an HTML body: sanitised first (no script or style content),
    links kept as "label (URL)", no tags."""
    clean = mime.sanitize_html(_HEAD.sub(" ", markup))  # the sanitiser keeps a <title>'s words

    def link(match: re.Match) -> str:
        href, label = match.group(1), match.group(2)
        shown = mime.html_to_text(label)
        return label if not href or href in (shown, f"mailto:{shown}") else f"{label} ({href})"
    clean = _LINK.sub(link, clean)
    return mime.html_to_text(clean) + "\n"


def _clean_name(value: str) -> str:
    """A stored display name (ours, or parsed from received mail) safe to put in a header."""
    return " ".join("".join(c for c in value if unicodedata.category(c) != "Cc").split())[:200]


def _check_headers(raw: bytes, expected: list[str]) -> None:
    """The built message must have exactly the fields we set, each once (defence in depth
    against header injection through the `email` package's folding, whatever its version)."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    if b"\n" in head.replace(b"\r\n", b"") or b"\r" in head.replace(b"\r\n", b""):
        raise ValidationError("A header value would contain a line break.", field="subject",
                              fix="Remove line breaks and encoded line breaks from every field")
    found = [name for name, _ in BytesHeaderParser(policy=policy.compat32).parsebytes(raw).items()]
    if sorted(n.lower() for n in found) != sorted(n.lower() for n in expected):
        raise ValidationError("A field would add or change message headers (header injection).", field="subject",
                              fix="Remove line breaks and encoded line breaks from every field")


def sign(raw: bytes, selector: str, domain: str, private_key_pem: bytes, *,
         expiry: int = dkim_keys.DEFAULT_EXPIRY) -> bytes:
    """DKIM-sign (appliance.services.domains.dkim.sign_message): every field in SIGNED over-signed, present
    or not, and x= expiry seconds after t=."""
    return dkim_keys.sign_message(raw, selector, domain, private_key_pem, SIGNED, expiry=expiry)
