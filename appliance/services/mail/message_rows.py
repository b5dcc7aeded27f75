"""A parsed message as its rows: the message, its attachments and, for a new conversation, its
thread. The one builder that received mail (appliance.services.mail.inbound, written in bulk with
Core inserts) and the sent copy (appliance.services.mail.outbound, through the ORM) both use, so
a message reads the same whichever way it came in."""
from __future__ import annotations

import datetime as dt
from typing import Iterable

from appliance.ids import new_id
from appliance.services.mail.mime import ParsedMessage


def message_row(parsed: ParsedMessage, *, message_id: str, tenant_id: str, inbox_id: str, thread_id: str,
                direction: str, status: str, size: int, now: dt.datetime, is_read: bool,
                labels: Iterable[str] = (), authentication: dict | None = None, envelope_from: str = "",
                envelope_to: str = "", client_ip: str = "", received_at: dt.datetime | None = None,
                sent_at: dt.datetime | None = None) -> dict:
    """The messages row (column names as keys: a Core insert's values or the ORM's keywords)."""
    return {
        "id": message_id, "tenant_id": tenant_id, "inbox_id": inbox_id, "thread_id": thread_id,
        "direction": direction, "status": status, "subject": parsed.subject, "is_read": is_read,
        "created_at": now, "message_id_header": parsed.message_id, "in_reply_to": parsed.in_reply_to,
        "references": parsed.references, "date_header": parsed.date, "from_email": parsed.from_email,
        "from_name": parsed.from_name, "to_addrs": parsed.to, "cc_addrs": parsed.cc,
        "reply_to_addrs": parsed.reply_to, "snippet": parsed.snippet, "text_body": parsed.text,
        "html_body": parsed.html, "has_attachments": bool(parsed.attachments), "size": size,
        "labels": list(labels), "authentication": authentication or {}, "parse_error": parsed.parse_error,
        "envelope_from": envelope_from[:320], "envelope_to": envelope_to[:320], "client_ip": client_ip[:64],
        "received_at": received_at, "sent_at": sent_at, "automated": parsed.automated}


def attachment_rows(parsed: ParsedMessage, message_id: str) -> list[dict]:
    """One attachments row per attached or inline part."""
    return [{"id": new_id("att"), "message_id": message_id, "filename": part.filename,
             "content_type": part.content_type[:255], "size": len(part.content), "disposition": part.disposition,
             "content_id": part.content_id, "content": part.content} for part in parsed.attachments]


def thread_row(*, thread_id: str, tenant_id: str, inbox_id: str, subject: str, now: dt.datetime) -> dict:
    """A new thread, before its first message is counted in (message_count 0)."""
    return {"id": thread_id, "tenant_id": tenant_id, "inbox_id": inbox_id, "subject": subject,
            "message_count": 0, "created_at": now, "last_message_at": now}
