"""Tenant and inbox settings (contract section 3a): the defaults and the effective values.

Rows store only the keys someone set (`tenants.settings`, `inboxes.settings`, JSON); every
reader goes through `tenant_settings`/`inbox_settings`, which lay the stored keys over the
defaults (an inbox's over its tenant's `default_inbox_settings` over the built-in ones), so a
default changed here applies to every row that never set it. The settings API, its validation
and the web UI pages are built on these by the settings area.
"""
from __future__ import annotations

import copy
from typing import Any

from appliance.models import Inbox, Tenant

INBOX_DEFAULTS: dict[str, Any] = {
    "signature_text": "",
    "signature_html": "",
    "auto_contacts": True,
    "webhook_events": [],
    "auto_reply": {"enabled": False, "subject": "", "text_body": "", "until": None},
}
TENANT_DEFAULTS: dict[str, Any] = {
    "default_timezone": "UTC",
    "default_inbox_settings": {},
    "llm_consent": False,
    "notify_address": None,
}


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
