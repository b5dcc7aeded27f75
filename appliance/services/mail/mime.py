"""Parsing received mail with the standard library's `email` package (policy.default).

A pure function of the raw bytes. It never raises: a message that cannot be parsed comes back
with `parse_error` set and whatever could be read, and the caller stores the raw bytes anyway.
"""
from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses

import nh3

MAX_PARTS = 500  # parts looked at per message: bounds the work a hostile message can cause
MAX_ATTACHMENTS = 100
SNIPPET_LENGTH = 200


@dataclass
class ParsedAttachment:
    filename: str
    content_type: str
    content: bytes
    disposition: str  # attachment | inline
    content_id: str = ""


@dataclass
class ParsedMessage:
    subject: str = ""
    message_id: str = ""
    in_reply_to: str = ""
    references: list[str] = field(default_factory=list)
    date: str = ""
    from_email: str = ""
    from_name: str = ""
    to: list[dict] = field(default_factory=list)
    cc: list[dict] = field(default_factory=list)
    reply_to: list[dict] = field(default_factory=list)
    text: str = ""
    html: str = ""  # sanitised
    attachments: list[ParsedAttachment] = field(default_factory=list)
    parse_error: str | None = None
    automated: bool = False  # automated_reason(): Auto-Submitted, Precedence, list headers

    @property
    def snippet(self) -> str:
        """The text's first SNIPPET_LENGTH characters with its whitespace collapsed, read off the
        start of the text (collapsing a prefix gives a prefix of the collapsed whole)."""
        size = SNIPPET_LENGTH * 4
        while True:
            start = " ".join(self.text[:size].split())
            if len(start) >= SNIPPET_LENGTH or size >= len(self.text):
                return start[:SNIPPET_LENGTH]
            size *= 4


_MSGID = re.compile(r"<[^<>\s]+>")


def _clean_text(value: str, limit: int = 998) -> str:
    """Header text without control characters (CR/LF included), trimmed."""
    value = "".join(" " if unicodedata.category(c) == "Cc" else c for c in value)
    return " ".join(value.split())[:limit]


def _header(msg: EmailMessage, name: str) -> str:
    try:
        value = msg.get(name)
        return _clean_text(str(value)) if value is not None else ""
    except Exception:  # noqa: BLE001 - a malformed header reads as empty, the raw keeps it
        return ""


def _addresses(msg: EmailMessage, name: str) -> list[dict]:
    try:
        values = [str(v) for v in msg.get_all(name, [])]
    except Exception:  # noqa: BLE001
        return []
    out = []
    for display, address in getaddresses(values):
        address = _clean_text(address, 320).lower()
        if "@" in address:
            out.append({"email": address, "name": _clean_text(display, 200)})
    return out[:500]


def _message_ids(value: str) -> list[str]:
    return _MSGID.findall(value)[:100]


def safe_filename(name: str | None, index: int, content_type: str) -> str:
    """A file name that is safe on any system: no paths, no control characters, bounded."""
    name = _clean_text(name or "", 255).replace("\\", "/").split("/")[-1].strip(" .")
    name = re.sub(r'[<>:"|?*]', "_", name)
    if not name:
        ext = {"text/plain": "txt", "text/html": "html", "image/png": "png", "image/jpeg": "jpg",
               "application/pdf": "pdf"}.get(content_type, "bin")
        name = f"attachment-{index}.{ext}"
    return name[:255]


def html_to_text(markup: str) -> str:
    """Readable text from HTML when a message has no text part."""
    markup = re.sub(r"(?is)<(script|style)\b.*?</\1\s*>", " ", markup)
    markup = re.sub(r"(?i)<br\s*/?>|</p\s*>|</div\s*>|</li\s*>|</h[1-6]\s*>", "\n", markup)
    text = html.unescape(nh3.clean(markup, tags=set()))
    return "\n".join(" ".join(line.split()) for line in text.splitlines()).strip()


def sanitize_html(markup: str) -> str:
    """HTML safe to show: no scripts, no event handlers, no javascript: links (nh3/ammonia)."""
    return nh3.clean(markup, link_rel="noopener noreferrer nofollow")


def _content(part: EmailMessage) -> str | bytes:
    try:
        return part.get_content()
    except (LookupError, UnicodeError, ValueError, AssertionError, KeyError):
        payload = part.get_payload(decode=True) or b""
        charset = part.get_content_charset() or "utf-8"
        try:
            return payload.decode(charset, "replace")
        except LookupError:
            return payload.decode("utf-8", "replace")


def parse_message(raw: bytes) -> ParsedMessage:
    """Parse raw RFC 5322 bytes; never raises."""
    parsed = ParsedMessage()
    try:
        msg = _single_part(raw) or BytesParser(policy=policy.default).parsebytes(raw)
        _fill(parsed, msg)
    except RecursionError:
        parsed = ParsedMessage(parse_error="the message nests too deeply to parse")
        try:  # its headers are still readable: keep subject, sender and recipients
            _fill_headers(parsed, BytesParser(policy=policy.default).parsebytes(raw, headersonly=True))
        except Exception:  # noqa: BLE001
            pass
    except Exception as exc:  # noqa: BLE001 - hostile input must never stop storage
        parsed.parse_error = f"the message could not be parsed: {type(exc).__name__}"
    return parsed


def parse_built(msg: EmailMessage) -> ParsedMessage:
    """The fields parse_message would read from msg's bytes, read off msg itself: a message this
    appliance just built (compose) holds its header fields as parsed objects already, so nothing is
    parsed twice. The caller vouches that msg's bytes parse back to the same message (compose
    does: tests/api/test_sent_copy_fields.py compares the two over many kinds of message), and has
    its bytes already: msg's payloads are rewritten with CRLF line ends, as its bytes carry them."""
    for part in msg.walk():
        payload = part._payload  # as the generator reads it (get_payload() would decode 8-bit text)
        if isinstance(payload, str):  # ...and writes it: every line end CRLF
            part.set_payload(_LINE_ENDS.sub("\r\n", payload))
    parsed = ParsedMessage()
    _fill(parsed, msg)
    return parsed


_LINE_ENDS = re.compile(r"\r\n|\r|\n")


def _single_part(raw: bytes) -> EmailMessage | None:
    """The message BytesParser would make of raw, made faster when it is a single part: only the
    header block goes through the parser (which reads a body line by line, some 1,300 lines for
    100 KiB), and the rest becomes the payload as is, which is what the parser makes of the body
    of a part that is neither multipart nor message/* (tests/unit/test_mime_fast_path.py compares
    the two on the corpus and on generated messages). None when raw is not such a message."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        return None
    msg = BytesParser(policy=policy.default).parsebytes(raw[:end + 4])
    if msg.get_content_maintype() in ("multipart", "message") or msg.get_payload():
        return None  # several parts; or the header block ended before the blank line (a defect)
    msg.set_payload(raw[end + 4:].decode("ascii", "surrogateescape"))  # as BytesParser decodes
    return msg


def _fill_headers(parsed: ParsedMessage, msg: EmailMessage) -> None:
    parsed.subject = _header(msg, "Subject")
    parsed.message_id = (_message_ids(_header(msg, "Message-ID")) or [""])[0]
    parsed.in_reply_to = (_message_ids(_header(msg, "In-Reply-To")) or [""])[0]
    parsed.references = _message_ids(_header(msg, "References"))
    parsed.date = _header(msg, "Date")[:200]
    senders = _addresses(msg, "From")
    if senders:
        parsed.from_email, parsed.from_name = senders[0]["email"], senders[0]["name"]
    parsed.to, parsed.cc = _addresses(msg, "To"), _addresses(msg, "Cc")
    parsed.reply_to = _addresses(msg, "Reply-To")
    parsed.automated = is_automated(msg)


LIST_HEADERS = ("List-Id", "List-Unsubscribe", "List-Post")  # RFC 2919, RFC 2369


def automated_reason(msg: EmailMessage) -> str | None:
    """Why this mail was sent by a machine or to a list, by its headers (RFC 3834 Auto-Submitted,
    Precedence bulk/list/junk, RFC 2919/2369 list headers), or None. The one rule for both the
    agenda's missed replies and automatic replies (autoreply.why_not adds the sender's checks)."""
    submitted = _header(msg, "Auto-Submitted").split(";")[0].strip().lower()
    if submitted not in ("", "no"):
        return f"Auto-Submitted: {submitted}"
    precedence = _header(msg, "Precedence").strip().lower()
    if precedence in ("bulk", "list", "junk"):
        return f"Precedence: {precedence}"
    for name in LIST_HEADERS:
        if msg.get(name) is not None:
            return f"{name} present"
    return None


def is_automated(msg: EmailMessage) -> bool:
    """Sent by a machine or to a list: such mail awaits no personal reply, so it is never a
    missed reply on the agenda."""
    return automated_reason(msg) is not None


def _fill(parsed: ParsedMessage, msg: EmailMessage) -> None:
    _fill_headers(parsed, msg)
    text_part = msg.get_body(preferencelist=("plain",))
    html_part = msg.get_body(preferencelist=("html",))
    # NUL is dropped from the decoded text (PostgreSQL text cannot hold it); the raw keeps it.
    if html_part is not None:
        markup = _content(html_part)
        markup = markup if isinstance(markup, str) else markup.decode("utf-8", "replace")
        parsed.html = sanitize_html(markup.replace("\x00", ""))
    if text_part is not None:
        text = _content(text_part)
        parsed.text = (text if isinstance(text, str) else text.decode("utf-8", "replace")).replace("\x00", "")
    elif html_part is not None:
        parsed.text = html_to_text(parsed.html)
    body_parts = {id(p) for p in (text_part, html_part) if p is not None}
    for index, part in enumerate(msg.walk()):
        if index >= MAX_PARTS:
            parsed.parse_error = f"only the first {MAX_PARTS} parts were read"
            break
        if part.is_multipart() or id(part) in body_parts or len(parsed.attachments) >= MAX_ATTACHMENTS:
            continue
        disposition = part.get_content_disposition()
        if disposition is None and part.get_content_maintype() == "text" and not part.get_filename():
            continue  # an alternative body we did not pick, not an attachment
        content_type = part.get_content_type()
        payload = part.get_payload(decode=True)
        if payload is None:
            continue
        parsed.attachments.append(ParsedAttachment(
            filename=safe_filename(part.get_filename(), len(parsed.attachments) + 1, content_type),
            content_type=_clean_text(content_type, 255), content=payload,
            disposition="inline" if disposition == "inline" else "attachment",
            content_id=_clean_text(str(part.get("Content-ID", "")), 998)))
    if msg.defects and parsed.parse_error is None:
        parsed.parse_error = "; ".join(sorted({type(d).__name__ for d in msg.defects}))[:500] or None
