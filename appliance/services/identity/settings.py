"""Tenant and inbox settings (contract section 3a): the defaults, the effective values, and the
two use cases that change them (`update_tenant_settings`, `update_inbox_settings`).

Rows store only the keys someone set (`tenants.settings`, `inboxes.settings`, JSON); every
reader goes through `tenant_settings`/`inbox_settings`, which lay the stored keys over the
defaults (an inbox's over its tenant's `default_inbox_settings` over the built-in ones), so a
default changed here applies to every row that never set it.

Changes are validated as a whole before anything is written (a PATCH with one bad field writes
nothing), a key set to null goes back to its default, and each change emits `settings.updated`
naming the keys that changed (never their values). `llm_consent` (tenant, default false) is the
switch the intelligence area must check before any call to an external model: when it is false
no inbox setting may turn one on (see docs/settings.md).
"""
from __future__ import annotations

import copy
import datetime as dt
import functools
import zoneinfo
from typing import Any

from sqlalchemy.orm import Session

from appliance import timeinput
from appliance.clock import utcnow
from appliance.errors import ForbiddenError, ValidationError
from appliance.models import Inbox, Tenant
from appliance.services.automation import events
from appliance.services.automation.event_types import REGISTRY
from appliance.services.identity.auth import Principal, require_manager, usable_inbox
from appliance.services.validation import normalize_email, reject_control_chars

INBOX_DEFAULTS: dict[str, Any] = {
    "signature_text": "",
    "signature_html": "",
    "auto_contacts": True,
    "webhook_events": [],
    "auto_reply": {"enabled": False, "subject": "", "text_body": "", "until": None},
    # issue 21: what the worker adds to received mail (PUT /v1/enrichment/ changes it) and the phishing verdicts' cut-offs
    "enrichment": {"model": "builtin", "enabled_features": ["phishing_detection", "next_step", "contact_digest",
                                                            "thread_digest"], "budget_limit": None},
    "phishing_thresholds": {"suspicious": 4.0, "phishing": 7.0},
}
TENANT_DEFAULTS: dict[str, Any] = {
    "default_timezone": "UTC",
    "default_inbox_settings": {},
    "llm_consent": False,
    "notify_address": None,
}
INBOX_ROW_KEYS = ("display_name", "default_timezone")  # stored on the inbox row, not in its JSON
INBOX_KEYS = (*INBOX_ROW_KEYS, *INBOX_DEFAULTS)
TENANT_KEYS = ("name", *TENANT_DEFAULTS)
AUTO_REPLY_KEYS = tuple(INBOX_DEFAULTS["auto_reply"])
MAX_SIGNATURE = 10_000
MAX_REPLY_BODY = 20_000


def tenant_settings(tenant: Tenant) -> dict[str, Any]:
    """The tenant's effective settings (`name` comes from its row)."""
    out = copy.deepcopy(TENANT_DEFAULTS)
    out.update(copy.deepcopy(tenant.settings or {}))
    out["name"] = tenant.name
    return out


def inbox_settings(inbox: Inbox, tenant: Tenant | None = None) -> dict[str, Any]:
    """The inbox's effective settings: built-in defaults, then the tenant's defaults, then its own.

    `display_name` and `default_timezone` come from the inbox row (the inbox's zone falls back to
    the tenant's, then UTC)."""
    out = copy.deepcopy(INBOX_DEFAULTS)
    tenant_cfg = tenant_settings(tenant) if tenant is not None else TENANT_DEFAULTS
    out.update(copy.deepcopy(tenant_cfg.get("default_inbox_settings") or {}))
    out.update(copy.deepcopy(inbox.settings or {}))
    out["display_name"] = inbox.display_name
    out["default_timezone"] = inbox.default_timezone or tenant_cfg.get("default_timezone") or "UTC"
    return out


def llm_allowed(tenant: Tenant) -> bool:
    """May any AI feature of this tenant call an external model? Only with the owner's consent."""
    return bool(tenant_settings(tenant)["llm_consent"])


# --- validation -----------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def zone_names() -> list[str]:
    """Every IANA zone name tzdata knows, sorted (for pickers)."""
    return sorted(_zones())


def check_timezone(value: Any, field: str) -> str:
    """An IANA zone name known to tzdata (Europe/Berlin, UTC); 400 naming field otherwise."""
    if not isinstance(value, str) or value not in _zones():
        raise ValidationError(f"{field}: '{value}' is not an IANA time zone", field=field,
                              fix="Use a name like Europe/Berlin or America/New_York.")
    return value


def _text(value: Any, field: str, limit: int, *, one_line: bool = False) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{field}: must be a string", field=field)
    if len(value) > limit:
        raise ValidationError(f"{field}: at most {limit} characters", field=field)
    if "\x00" in value:
        raise ValidationError(f"{field}: must not contain NUL characters", field=field)
    return reject_control_chars(value, field).strip() if one_line else value


def _bool(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{field}: must be true or false", field=field)
    return value


def _unknown(changes: dict, allowed: tuple[str, ...], prefix: str) -> None:
    if not isinstance(changes, dict):
        raise ValidationError(f"{prefix.rstrip('.') or 'the body'}: must be an object", field=prefix.rstrip(".") or None)
    for key in changes:
        if key not in allowed:
            raise ValidationError(f"{prefix}{key}: unknown field; accepted: {', '.join(allowed)}",
                                  field=f"{prefix}{key}")


def parse_until(value: Any, field: str, zone: str, now: dt.datetime) -> str | None:
    """An out-of-office end as an aware UTC ISO string (None: no end), read with the calendar
    area's time input (ISO 8601, 'next Monday 9:00', 'in 2 weeks'; without an offset in the
    inbox's zone); 400 naming field when unreadable or not in the future."""
    if value is None or value == "":
        return None
    try:
        utc = timeinput.parse_instant(value, zone=zone, now=now, field=field).at.astimezone(dt.timezone.utc)
    except (OverflowError, ValueError):  # e.g. year 9999 with a negative offset
        raise ValidationError(f"{field}: '{value}' is out of range", field=field,
                              fix=timeinput.INSTANT_FIX) from None
    if utc <= now:
        raise ValidationError(f"{field}: is in the past; the reply would never be sent", field=field,
                              fix="Send a time in the future, or null for no end")
    return utc.isoformat()


def _webhook_events(value: Any, field: str) -> list[str]:
    if not isinstance(value, list) or len(value) > len(REGISTRY):
        raise ValidationError(f"{field}: must be a list of event types", field=field)
    for index, item in enumerate(value):
        if not isinstance(item, str) or item not in REGISTRY or REGISTRY[item].admin:
            raise ValidationError(f"{field}[{index}]: '{item}' is not an inbox event type", field=f"{field}[{index}]",
                                  fix="See GET /v1/events/types/ for the types an inbox receives")
    return list(dict.fromkeys(value))


def _auto_reply(value: Any, current: dict, field: str, zone: str, now: dt.datetime) -> dict:
    """The auto_reply object: the keys sent laid over the current ones."""
    _unknown(value, AUTO_REPLY_KEYS, f"{field}.")
    out = {**INBOX_DEFAULTS["auto_reply"], **(current or {})}
    for key, item in value.items():
        where = f"{field}.{key}"
        if key == "enabled":
            out[key] = _bool(item, where)
        elif key == "subject":
            out[key] = _text(item or "", where, 300, one_line=True)
        elif key == "text_body":
            out[key] = _text(item or "", where, MAX_REPLY_BODY)
        else:
            out[key] = parse_until(item, where, zone, now)
    return out


def _sanitize(markup: str) -> str:
    from appliance.services.mail import mime  # noqa: PLC0415 - the mail area's sanitiser, the same as mail's
    return mime.sanitize_html(markup).strip()


def validate_inbox_values(changes: dict, current: dict, *, prefix: str = "", zone: str = "UTC",
                          now: dt.datetime | None = None) -> dict[str, Any]:
    """The JSON-stored inbox keys of changes, checked and normalised (None: back to the default)."""
    now = now or utcnow()
    out: dict[str, Any] = {}
    for key, value in changes.items():
        where = f"{prefix}{key}"
        if value is None:
            out[key] = None
        elif key == "signature_text":
            out[key] = _text(value, where, MAX_SIGNATURE).strip("\n")
        elif key == "signature_html":
            out[key] = _sanitize(_text(value, where, MAX_SIGNATURE))
        elif key == "auto_contacts":
            out[key] = _bool(value, where)
        elif key == "webhook_events":
            out[key] = _webhook_events(value, where)
        elif key == "auto_reply":
            out[key] = _auto_reply(value, current.get("auto_reply") or {}, where, zone, now)
        elif key == "phishing_thresholds":
            out[key] = _thresholds(value, current.get(key) or INBOX_DEFAULTS[key], where)
    return out


def _thresholds(value: Any, current: dict, field: str) -> dict:
    """phishing_thresholds: scores from 0 to 100, `suspicious` below `phishing` (docs/intelligence.md)."""
    _unknown(value, ("suspicious", "phishing"), f"{field}.")
    out = {**current}
    for key, item in value.items():
        if isinstance(item, bool) or not isinstance(item, (int, float)) or not 0 < item <= 100:
            raise ValidationError(f"{field}.{key}: must be a number above 0 and at most 100", field=f"{field}.{key}")
        out[key] = float(item)
    if out["suspicious"] >= out["phishing"]:
        raise ValidationError(f"{field}: suspicious must be below phishing", field=f"{field}.suspicious")
    return out


def _merged(stored: dict, values: dict) -> dict:
    """stored with values set (None removes a key: it goes back to its default)."""
    out = copy.deepcopy(stored or {})
    for key, value in values.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


# --- use cases ------------------------------------------------------------------------------
def get_tenant_settings(db: Session, principal: Principal) -> dict[str, Any]:
    """GET /v1/settings/: any session of the tenant reads its settings, defaults included."""
    tenant = db.get(Tenant, principal.tenant_id)
    return {"tenant_id": tenant.id, **tenant_settings(tenant)}


def update_tenant_settings(db: Session, principal: Principal, changes: dict) -> dict[str, Any]:
    """PATCH /v1/settings/ (owners and admins): all keys checked first, then written at once."""
    require_manager(principal)
    _unknown(changes, TENANT_KEYS, "")
    tenant = db.get(Tenant, principal.tenant_id, with_for_update=True)
    before = tenant_settings(tenant)
    values: dict[str, Any] = {}
    name = None
    for key, value in changes.items():
        if key == "name":
            name = _text(value, "name", 200, one_line=True)
            if not name:
                raise ValidationError("name: must not be empty", field="name")
        elif value is None:
            values[key] = None
        elif key == "default_timezone":
            values[key] = check_timezone(value, key)
        elif key == "llm_consent":
            values[key] = _bool(value, key)
        elif key == "notify_address":
            values[key] = normalize_email(value, key)
        else:
            _unknown(value, tuple(INBOX_DEFAULTS), "default_inbox_settings.")
            current = before["default_inbox_settings"]
            checked = validate_inbox_values(value, current, prefix="default_inbox_settings.",
                                            zone=before["default_timezone"])
            values[key] = _merged(current, checked)
    if name is not None:
        tenant.name = name
    tenant.settings = _merged(tenant.settings, values)
    after = tenant_settings(tenant)
    _announce(db, principal, before, after, inbox_id=None, scope="tenant")
    return {"tenant_id": tenant.id, **after}


def get_inbox_settings(db: Session, principal: Principal, inbox_id: str) -> dict[str, Any]:
    """GET /v1/inboxes/{id}/settings/: a user who may use the inbox, or its own agent token."""
    inbox = usable_inbox(db, principal, inbox_id)
    return {"inbox_id": inbox.id, **inbox_settings(inbox, db.get(Tenant, inbox.tenant_id))}


def update_inbox_settings(db: Session, principal: Principal, inbox_id: str, changes: dict) -> dict[str, Any]:
    """PATCH /v1/inboxes/{id}/settings/ (people only): all keys checked first, then written at once."""
    if principal.is_agent:
        raise ForbiddenError("An agent token reads its inbox's settings but cannot change them.",
                             code="session_required", fix="Ask a person of the tenant to change them.")
    inbox = usable_inbox(db, principal, inbox_id)
    _unknown(changes, INBOX_KEYS, "")
    tenant = db.get(Tenant, inbox.tenant_id)
    before = inbox_settings(inbox, tenant)
    row: dict[str, Any] = {}
    if "display_name" in changes:
        row["display_name"] = _text(changes["display_name"] or "", "display_name", 200, one_line=True)
    if "default_timezone" in changes:
        zone = changes["default_timezone"]
        row["default_timezone"] = None if zone is None else check_timezone(zone, "default_timezone")
    zone = row.get("default_timezone") or before["default_timezone"]
    values = validate_inbox_values({k: v for k, v in changes.items() if k in INBOX_DEFAULTS}, before, zone=zone)
    for key, value in row.items():
        setattr(inbox, key, value)
    inbox.settings = _merged(inbox.settings, values)
    after = inbox_settings(inbox, tenant)
    _announce(db, principal, before, after, inbox_id=inbox.id, scope="inbox")
    return {"inbox_id": inbox.id, **after}


def _announce(db: Session, principal: Principal, before: dict, after: dict, *, inbox_id: str | None,
              scope: str) -> None:
    """settings.updated with the keys that changed (their names only: values may be private)."""
    changed = sorted(key for key in after if before.get(key) != after.get(key))
    if changed:
        events.emit(db, "settings.updated", tenant_id=principal.tenant_id, inbox_id=inbox_id,
                    resource_id=inbox_id or principal.tenant_id, actor=principal,
                    payload={"scope": scope, "changed": changed})
