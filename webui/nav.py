"""The navigation registry: view modules register their entries; base.html renders the visible ones."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable

from appliance.services.identity.auth import Principal

log = logging.getLogger("gentbox.webui")
AUDIENCES = ("tenant", "operator")


@dataclass(frozen=True)
class NavItem:
    label: str
    endpoint: str  # "webui.<view function name>"
    order: int
    audience: str  # "tenant": any signed-in user of a tenant (see roles); "operator": operators only
    roles: tuple[str, ...]
    badge: Callable[[Any, Principal], int | str | None] | None  # badge(db, principal) -> count or None


_ITEMS: dict[str, NavItem] = {}


def nav_item(label: str, endpoint: str, order: int = 100, audience: str = "tenant",
             badge: Callable[[Any, Principal], int | str | None] | None = None,
             roles: tuple[str, ...] = ("owner", "admin", "member")) -> NavItem:
    """Register a navigation entry (idempotent per endpoint; lower order comes first)."""
    if audience not in AUDIENCES:
        raise ValueError(f"audience must be one of {AUDIENCES}")
    if not endpoint.startswith("webui."):
        endpoint = f"webui.{endpoint}"
    item = NavItem(label, endpoint, order, audience, tuple(roles), badge)
    _ITEMS[endpoint] = item
    return item


def registered() -> list[NavItem]:
    return sorted(_ITEMS.values(), key=lambda i: (i.order, i.label))


def visible(principal: Principal | None) -> list[NavItem]:
    """The entries this principal may open, in order."""
    if principal is None or principal.user is None:
        return []
    user = principal.user
    out = []
    for item in registered():
        if item.audience == "operator" and not user.is_operator:
            continue
        if item.audience == "tenant" and user.role not in item.roles:
            continue
        out.append(item)
    return out


def badge_value(item: NavItem, db: Any, principal: Principal) -> int | str | None:
    """The item's badge; a failing badge is logged and left out rather than breaking every page."""
    if item.badge is None:
        return None
    try:
        value = item.badge(db, principal)
    except Exception:  # noqa: BLE001
        log.warning("nav badge of %s failed", item.endpoint, exc_info=True)
        return None
    return value or None
