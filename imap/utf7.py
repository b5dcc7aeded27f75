"""Modified UTF-7 (RFC 3501 section 5.1.3), the encoding of IMAP mailbox names."""
from __future__ import annotations

import base64
import re

_B64_RUN = re.compile(r"&([^-]*)-")


class Utf7Error(ValueError):
    """A mailbox name that is not valid modified UTF-7."""


def encode(name: str) -> str:
    """name as modified UTF-7: printable ASCII as is, '&' as '&-', the rest base64 of UTF-16."""
    out, run = [], []

    def flush() -> None:
        if run:
            data = "".join(run).encode("utf-16-be")
            out.append("&" + base64.b64encode(data).decode().rstrip("=").replace("/", ",") + "-")
            run.clear()

    for char in name:
        if 0x20 <= ord(char) <= 0x7E:
            flush()
            out.append("&-" if char == "&" else char)
        else:
            run.append(char)
    flush()
    return "".join(out)


def decode(name: str) -> str:
    """The Unicode name of a modified UTF-7 one; Utf7Error when it is not valid."""
    if any(not 0x20 <= ord(c) <= 0x7E for c in name):
        raise Utf7Error("mailbox names are 7-bit (modified UTF-7)")
    out, pos = [], 0
    for match in _B64_RUN.finditer(name):
        out.append(name[pos:match.start()])
        pos = match.end()
        payload = match.group(1)
        if payload == "":
            out.append("&")
            continue
        if not re.fullmatch(r"[A-Za-z0-9+,]+", payload):
            raise Utf7Error("bad characters in a modified UTF-7 run")
        data = payload.replace(",", "/")
        try:
            raw = base64.b64decode(data + "=" * (-len(data) % 4), validate=True)
            text = raw.decode("utf-16-be")
        except (ValueError, UnicodeDecodeError):
            raise Utf7Error("a modified UTF-7 run does not decode") from None
        if encode(text) != "&" + payload + "-":
            raise Utf7Error("a modified UTF-7 run is not in its one canonical form")
        out.append(text)
    rest = name[pos:]
    if "&" in rest:
        raise Utf7Error("an '&' without its closing '-'")
    out.append(rest)
    return "".join(out)
