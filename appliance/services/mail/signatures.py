"""Signatures (issue 27): the inbox's signature appended by the one send path (compose), to the
text part and to the HTML part, once per message.

The text signature is an RFC 3676 signature block: a line "-- " and the signature's lines. A body
that already holds that block (the agent wrote it, or a reply quotes an earlier message that
carried it, with "> " before each line) gets no second one; the HTML part is checked the same way
on its text. Only one of the two signatures set: the other part gets it converted (HTML to text,
or text escaped into HTML), so both parts say the same.
"""
from __future__ import annotations

import html
import re
from typing import Callable

from sqlalchemy.orm import Session

from appliance.models import Inbox, Tenant
from appliance.services.identity.settings import inbox_settings
from appliance.services.mail import mime

DELIMITER = "-- "  # RFC 3676 4.3
_QUOTE = re.compile(r"^[\s>]+")
_BODY_END = re.compile(r"</body\s*>", re.IGNORECASE)


def of_inbox(db: Session, inbox: Inbox) -> tuple[str, str]:
    """The inbox's (text, HTML) signature, each derived from the other when only one is set."""
    cfg = inbox_settings(inbox, db.get(Tenant, inbox.tenant_id))
    text, markup = (cfg.get("signature_text") or "").strip("\n"), (cfg.get("signature_html") or "").strip()
    if markup and not text.strip():
        text = mime.html_to_text(markup)
    if text.strip() and not markup:
        markup = html.escape(text).replace("\n", "<br>\n")
    return (text, markup) if text.strip() else ("", "")


def _lines(value: str) -> list[str]:
    """value's non-empty lines without quote marks or surrounding blanks (so quoted text matches)."""
    out = []
    for line in value.splitlines():
        line = " ".join(_QUOTE.sub("", line).split())
        if line:
            out.append(line)
    return out


def carries(body: str, signature_text: str) -> bool:
    """Does body (text) already hold the signature block, quoted or not?"""
    block = "\n".join(["--", *_lines(signature_text)])
    return f"\n{block}\n" in "\n" + "\n".join(_lines(body)) + "\n"


def append(db: Session, inbox: Inbox, text_body: str | None, html_body: str | None,
           to_text: Callable[[str], str]) -> tuple[str | None, str | None]:
    """The bodies with the inbox's signature, once each (to_text: the text part of an HTML-only send)."""
    if html_body and not text_body:
        text_body = to_text(html_body)
    text_sig, html_sig = of_inbox(db, inbox)
    if not text_sig:
        return text_body, html_body
    if text_body is not None and not carries(text_body, text_sig):
        text_body = f"{text_body.rstrip()}\n\n{DELIMITER}\n{text_sig}\n"
    if html_body and not carries(mime.html_to_text(html_body), mime.html_to_text(html_sig)):
        block = f'<div class="gentbox-signature">{DELIMITER}<br>\n{html_sig}</div>'
        ends = list(_BODY_END.finditer(html_body))
        html_body = (html_body[:ends[-1].start()] + block + html_body[ends[-1].start():]) if ends \
            else f"{html_body}\n{block}"
    return text_body, html_body
