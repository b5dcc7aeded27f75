"""FETCH data of one stored message: sections, ENVELOPE and BODYSTRUCTURE (RFC 3501 section 7.4.2)."""
from __future__ import annotations

import email.parser
import email.policy
import email.utils
import re
from email.message import Message as MailMessage

from imap.protocol import CommandError, literal, quoted

_PARSER = email.parser.BytesParser(policy=email.policy.compat32)
_SECTION = re.compile(r"^((?:\d+\.)*\d+)?\.?(HEADER\.FIELDS\.NOT|HEADER\.FIELDS|HEADER|TEXT|MIME)?(?: \((.*)\))?$",
                      re.I)
MAX_PARTS = 500  # parts walked in a BODYSTRUCTURE


def split(raw: bytes) -> tuple[bytes, bytes]:
    """(header including the blank line, body)."""
    for sep in (b"\r\n\r\n", b"\n\n"):
        at = raw.find(sep)
        if at >= 0:
            return raw[:at + len(sep)], raw[at + len(sep):]
    return raw, b""


def _crlf(data: bytes) -> bytes:
    return re.sub(rb"\r?\n", b"\r\n", data)


def parse(raw: bytes) -> MailMessage:
    return _PARSER.parsebytes(raw)


def _header_lines(header: bytes) -> list[tuple[str, bytes]]:
    """(lower-case field name, the field's bytes with folding) of a header block."""
    fields: list[tuple[str, bytes]] = []
    for line in _crlf(header).split(b"\r\n"):
        if not line:
            continue
        if line[:1] in (b" ", b"\t") and fields:
            name, data = fields[-1]
            fields[-1] = (name, data + line + b"\r\n")
        else:
            name = line.split(b":", 1)[0].strip().decode("ascii", "replace").lower()
            fields.append((name, line + b"\r\n"))
    return fields


def _part(message: MailMessage, path: str) -> MailMessage:
    part = message
    for number in path.split("."):
        index = int(number)
        if part.is_multipart():
            children = part.get_payload()
            if not 1 <= index <= len(children):
                raise CommandError("No such body part", status="NO")
            part = children[index - 1]
        elif part.get_content_type() == "message/rfc822" and isinstance(part.get_payload(), list):
            part = part.get_payload()[0]
            if part.is_multipart():
                return _part(part, number)
        elif index != 1:
            raise CommandError("No such body part", status="NO")
    return part


def section(raw: bytes, spec: str) -> bytes:
    """The bytes of BODY[spec]."""
    match = _SECTION.match(spec.strip())
    if match is None:
        raise CommandError("Bad section")
    path, kind, fields = match.group(1), (match.group(2) or "").upper(), match.group(3)
    if path is None:
        if not kind:
            return raw
        header, body = split(raw)
    else:
        part = _part(parse(raw), path)
        header, body = split(part.as_bytes(policy=email.policy.compat32.clone(linesep="\r\n")))
        if not kind:
            return body  # a part's content (for message/rfc822: the whole enclosed message)
    if kind in ("HEADER", "MIME"):
        return header
    if kind == "TEXT":
        return body
    names = {n.strip('"').lower() for n in (fields or "").split()}
    keep = [data for name, data in _header_lines(header) if (name in names) != (kind == "HEADER.FIELDS.NOT")]
    return b"".join(keep) + b"\r\n"


# --- ENVELOPE ------------------------------------------------------------------------------------
def _addresses(values: list[str]) -> bytes:
    found = email.utils.getaddresses(values)
    items = []
    for name, address in found:
        if not address and not name:
            continue
        local, _, host = address.rpartition("@") if "@" in address else (address, "", "")
        items.append(b"(" + b" ".join([quoted(name or None), b"NIL", quoted(local or None),
                                       quoted(host or None)]) + b")")
    return b"(" + b"".join(items) + b")" if items else b"NIL"


def _field(message: MailMessage, name: str) -> str | None:
    value = message.get(name)
    return None if value is None else str(value).replace("\r", "").replace("\n", "")


def envelope(message: MailMessage) -> bytes:
    """ENVELOPE: date, subject, from, sender, reply-to, to, cc, bcc, in-reply-to, message-id."""
    sender = message.get_all("from") or []
    def addrs(name: str, default: list[str]) -> bytes:  # noqa: E306
        return _addresses([str(v) for v in (message.get_all(name) or default)])
    parts = [quoted(_field(message, "date")), quoted(_field(message, "subject")), addrs("from", []),
             addrs("sender", sender), addrs("reply-to", sender), addrs("to", []), addrs("cc", []),
             addrs("bcc", []), quoted(_field(message, "in-reply-to")), quoted(_field(message, "message-id"))]
    return b"(" + b" ".join(parts) + b")"


# --- BODYSTRUCTURE -------------------------------------------------------------------------------
def _params(part: MailMessage, header: str = "content-type") -> bytes:
    params = part.get_params(header=header) or []
    pairs = [(k, v) for k, v in params[1:]] if header == "content-type" else list(params[1:])
    if not pairs:
        return b"NIL"
    out = []
    for key, value in pairs:
        value = email.utils.collapse_rfc2231_value(value) if isinstance(value, tuple) else value
        out += [quoted(key.upper()), quoted(str(value))]
    return b"(" + b" ".join(out) + b")"


def _disposition(part: MailMessage) -> bytes:
    value = part.get("content-disposition")
    if value is None:
        return b"NIL"
    kind = str(value).split(";", 1)[0].strip() or "attachment"
    return b"(" + quoted(kind.upper()) + b" " + _params(part, "content-disposition") + b")"


def bodystructure(part: MailMessage, extended: bool = True, budget: list | None = None) -> bytes:
    """BODYSTRUCTURE (extended) or BODY of a parsed message or part."""
    budget = budget if budget is not None else [MAX_PARTS]
    budget[0] -= 1
    if budget[0] < 0:
        return b'("TEXT" "PLAIN" NIL NIL NIL "7BIT" 0 0)'
    if part.is_multipart():
        children = b"".join(bodystructure(p, extended, budget) for p in part.get_payload())
        out = children + b" " + quoted(part.get_content_subtype().upper())
        if extended:
            out += b" " + _params(part) + b" " + _disposition(part) + b" NIL NIL"
        return b"(" + out + b")"
    maintype, subtype = part.get_content_maintype().upper(), part.get_content_subtype().upper()
    _, body = split(part.as_bytes(policy=email.policy.compat32.clone(linesep="\r\n")))
    fields = [quoted(maintype), quoted(subtype), _params(part), quoted(_field(part, "content-id")),
              quoted(_field(part, "content-description")),
              quoted((part.get("content-transfer-encoding") or "7BIT").strip().upper()), b"%d" % len(body)]
    if maintype == "MESSAGE" and subtype == "RFC822" and isinstance(part.get_payload(), list):
        inner = part.get_payload()[0]
        fields += [envelope(inner), bodystructure(inner, extended, budget), b"%d" % body.count(b"\r\n")]
    elif maintype == "TEXT":
        fields.append(b"%d" % body.count(b"\r\n"))
    if extended:
        fields += [b"NIL", _disposition(part), b"NIL", b"NIL"]
    return b"(" + b" ".join(fields) + b")"


def partial(data: bytes, origin: int | None, count: int | None) -> tuple[bytes, bytes]:
    """(the `<origin>` suffix for the answer, the slice)."""
    if origin is None:
        return b"", data
    return b"<%d>" % origin, data[origin:origin + count] if count is not None else data[origin:]


def body_item(raw: bytes, spec: str, origin: int | None, count: int | None) -> tuple[bytes, bytes]:
    """(suffix, literal) for BODY[spec]<origin.count>."""
    suffix, data = partial(section(raw, spec), origin, count)
    return suffix, literal(data)
