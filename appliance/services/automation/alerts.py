"""Alerts (contract section 8): an inbox's subscription to event types, delivered to the outside.

A webhook alert POSTs each matching event, signed with its `whsec_` secret (Standard Webhooks);
a task alert writes a task in the inbox. This module is the alerts' configuration and the rules
the delivery engine shares (which events an alert takes, the secrets that sign, the delivery
rows and their states); the engine that sends lives with the worker.

Rules kept here:
- An alert belongs to one inbox. Agent tokens act on their own inbox's alerts, members on the
  inboxes granted to them, owners and admins on every inbox of the tenant; any other alert is
  404 (tenancy helper), never 403.
- Events must be registered types the caller may see: admin-only types only for owners/admins.
- A webhook target is https:// and resolves only to public addresses (appliance/addresses.py),
  checked here at create/update time and by the engine again at every attempt, unless the
  operator set `webhook_allow_private` (which allows http:// too).
- The secret is shown once (create, rotate). After a rotation the previous secret keeps signing
  for 24 h (`live_secrets` gives both), so receivers can switch without losing a delivery.
"""
from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from appliance import addresses
from appliance.clock import utcnow
from appliance.config import Settings
from appliance.errors import ValidationError
from appliance.ids import has_prefix, new_id
from appliance.models import Alert, Event, Inbox, Task, WebhookDelivery
from appliance.models.alerts import BACKOFFS, DELIVERY_STATUSES, OFFSET_UNITS, webhook_msg_id
from appliance.security import seal, unseal
from appliance.services import tenancy
from appliance.services.automation import events
from appliance.services.automation.event_types import REGISTRY
from appliance.services.identity.auth import Principal, inbox_for, may_use_inbox

SECRET_PREFIX = "whsec_"
ROTATION_GRACE = dt.timedelta(hours=24)  # the previous secret keeps signing this long
_PURPOSE = "webhook-secrets"
MAX_RETRIES = 10
_NOT_FOUND = "No such alert."


@dataclass(frozen=True)
class AlertInput:
    """What create (all of it) and update (the fields given) take, as the edges parsed it."""

    events: list[str] | None = None
    delivery_type: str | None = None
    target: str | None = None
    summary: str | None = None
    offset: dict | None = None
    filter: dict | None = None
    threshold: int | None = None
    retries: int | None = None
    backoff: str | None = None
    enabled: bool | None = None


# --- secrets -----------------------------------------------------------------------------------
def new_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and the base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key_bytes(secret: str) -> bytes:
    """The HMAC key inside a `whsec_` secret (what Standard Webhooks libraries sign with)."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def _seal(settings: Settings, alert_id: str, secret: str) -> bytes:
    return seal(settings.secret_key, _PURPOSE, secret.encode(), alert_id)


def _unseal(settings: Settings, alert_id: str, sealed: bytes) -> str:
    return unseal(settings.secret_key, _PURPOSE, sealed, alert_id).decode()


def live_secrets(settings: Settings, alert: Alert, now: dt.datetime | None = None) -> list[str]:
    """The `whsec_` secrets that sign the alert's deliveries now: the current one, and the
    previous one while its 24 h after a rotation last."""
    now = now or utcnow()
    found = [_unseal(settings, alert.id, alert.secret_sealed)] if alert.secret_sealed else []
    if alert.previous_secret_sealed and alert.previous_secret_until and now < alert.previous_secret_until:
        found.append(_unseal(settings, alert.id, alert.previous_secret_sealed))
    return found


# --- matching ----------------------------------------------------------------------------------
def matches(alert: Alert, event: Event) -> bool:
    """Does the event go to this alert? Its tenant, its type among the alert's, from the alert's
    inbox (tenant-wide events, without an inbox, only for admin-only types, which only owners and
    admins can subscribe to), and every filter field equal to the payload's. A `webhook.test`
    event goes only to the alert it names."""
    if event.tenant_id != alert.tenant_id or event.type not in (alert.events or []):
        return False
    if event.type == "webhook.test":
        return event.resource_id == alert.id
    if event.inbox_id != alert.inbox_id:
        entry = REGISTRY.get(event.type)
        if event.inbox_id is not None or entry is None or not entry.admin:
            return False
    payload = event.payload or {}
    return all(field in payload and payload[field] == value for field, value in (alert.filter or {}).items())


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]{0,63})\}")


def render_task_summary(template: str, event: Event) -> str:
    """A task alert's summary for one event: `{field}` replaced by the payload's field (or the
    event's own: type, event_id, inbox_id, resource_id); unknown fields stay as written. Plain
    substitution, never str.format (a template must not reach attributes)."""
    values: dict[str, Any] = {"type": event.type, "event_id": event.id, "inbox_id": event.inbox_id,
                              "resource_id": event.resource_id, **(event.payload or {})}

    def one(match: re.Match) -> str:
        value = values.get(match.group(1))
        return match.group(0) if value is None or isinstance(value, (dict, list)) else str(value)
    return _PLACEHOLDER.sub(one, template)[:500]


def deliver_task(db: Session, alert: Alert, event: Event) -> Task | None:
    """Write the task a task alert makes for one event; None when it exists already (the same
    event delivered twice makes one task: a unique index on the source alert and event)."""
    now = utcnow()
    task = Task(id=new_id("tsk"), tenant_id=alert.tenant_id, inbox_id=alert.inbox_id,
                summary=render_task_summary(alert.task_summary or event.type, event), description="",
                status="needs_action", related_type=None, related_id=None,
                source_alert_id=alert.id, source_event_id=event.id, created_at=now, updated_at=now)
    try:
        with db.begin_nested():
            db.add(task)
    except IntegrityError:
        return None
    return task


# --- validation --------------------------------------------------------------------------------
def check_events(principal: Principal, types: list[str] | None) -> list[str]:
    """Registered types the caller may subscribe to (admin-only ones: owners and admins only)."""
    if not types:
        raise ValidationError("events: name at least one event type", field="events",
                              fix="Use the types of GET /v1/events/types/, e.g. message.received.")
    for index, type_ in enumerate(types):
        entry = REGISTRY.get(type_)
        if entry is None or (entry.admin and not principal.is_manager):
            raise ValidationError(f"events[{index}]: there is no event type {type_[:64]!r} you may subscribe to",
                                  field=f"events[{index}]",
                                  fix="Use the types of GET /v1/events/types/, e.g. message.received.")
    return list(dict.fromkeys(types))


def _forbidden(message: str, fix: str) -> ValidationError:
    return ValidationError(message, code="webhook_target_forbidden", field="delivery.target", fix=fix)


_PUBLIC_FIX = ("Use an https:// URL whose host resolves only to public addresses; for a LAN receiver the "
               "operator can set webhook_allow_private (GENTBOX_WEBHOOK_ALLOW_PRIVATE=true).")


def check_target(settings: Settings, url: str, resolver: Any = None) -> str:
    """A webhook target the appliance may POST to: https:// on public addresses only (every A
    and AAAA record of its host), or anything http(s) with webhook_allow_private."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise _forbidden("delivery.target: not a valid URL", _PUBLIC_FIX) from None
    allowed = ("https", "http") if settings.webhook_allow_private else ("https",)
    if parts.scheme not in allowed or not host:
        raise _forbidden("delivery.target: must be an https:// URL", _PUBLIC_FIX)
    if settings.webhook_allow_private:
        return url
    found = _addresses_of(settings, host, resolver)
    if not found:
        raise _forbidden(f"delivery.target: {host} does not resolve to an address", _PUBLIC_FIX)
    own = addresses.own_addresses(settings)
    refused = [ip for ip in found if not addresses.is_public(ip) or ip in own]
    if refused:
        raise _forbidden(f"delivery.target: {host} resolves to {refused[0]}, which is not a public address",
                         _PUBLIC_FIX)
    return url


def _addresses_of(settings: Settings, host: str, resolver: Any) -> list[str]:
    """The host's addresses: itself when it is an IP literal, else its A and AAAA records."""
    try:
        return [str(ipaddress.ip_address(host))]
    except ValueError:
        pass
    if resolver is None:
        from appliance.dns import Resolver
        resolver = Resolver(settings)
    found: list[str] = []
    for rdtype in ("A", "AAAA"):
        found.extend(resolver.query(host, rdtype).records)
    return found


def _check_offset(types: list[str], offset: dict | None) -> tuple[int | None, str | None]:
    if not offset:
        return None, None
    value, unit = offset.get("value"), offset.get("unit")
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100_000 or unit not in OFFSET_UNITS:
        raise ValidationError(f"offset: needs a value (0-100000) and a unit ({', '.join(OFFSET_UNITS)})", field="offset")
    refusing = [t for t in types if unit not in REGISTRY[t].offset_units]
    if refusing:
        raise ValidationError(f"offset: {refusing[0]} takes no offset in {unit}", field="offset",
                              fix="Offsets schedule calendar and anniversary events; see offset_units in "
                                  "GET /v1/events/types/.")
    return value, unit


def _check_threshold(types: list[str], threshold: int | None) -> int | None:
    if threshold is None:
        return None
    if not all(REGISTRY[t].config.get("threshold") for t in types):
        raise ValidationError("threshold: only for event types that take one (cap.reached)", field="threshold")
    if not 1 <= threshold <= 100:
        raise ValidationError("threshold: a percentage, 1-100", field="threshold")
    return threshold


def _check_summary(summary: str | None) -> str:
    if not summary or not summary.strip():
        raise ValidationError("delivery.summary: a task alert needs a summary (with {field} placeholders if you "
                              "like)", field="delivery.summary")
    return summary


def _check_simple(data: AlertInput) -> None:
    if data.retries is not None and not 0 <= data.retries <= MAX_RETRIES:
        raise ValidationError(f"retries: 0-{MAX_RETRIES}", field="retries")
    if data.backoff is not None and data.backoff not in BACKOFFS:
        raise ValidationError(f"backoff: one of {', '.join(BACKOFFS)}", field="backoff")
    if data.delivery_type is not None and data.delivery_type not in ("webhook", "task"):
        raise ValidationError("delivery.type: webhook or task", field="delivery.type")
    for name, value in (data.filter or {}).items():
        if not isinstance(name, str) or isinstance(value, (dict, list)):
            raise ValidationError("filter: payload field names to plain values (string, number, true/false, "
                                  "null)", field="filter")


# --- reading -----------------------------------------------------------------------------------
def _usable_inboxes(principal: Principal):  # noqa: ANN202 - a SQL condition on Alert
    """The alert's inbox is a live one of the tenant that the caller may use."""
    inboxes = select(Inbox.id).where(Inbox.tenant_id == principal.tenant_id, Inbox.status != "deleted",
                                     may_use_inbox(principal))
    return Alert.inbox_id.in_(inboxes)


def get_alert(db: Session, principal: Principal, alert_id: str, inbox_id: str | None = None, *,
              for_update: bool = False) -> Alert:
    """One alert the caller may see (of the inbox named, when one is); 404 for any other."""
    where = (_usable_inboxes(principal),) + ((Alert.inbox_id == inbox_id,) if inbox_id else ())
    return tenancy.get_owned(db, Alert, alert_id, principal.tenant_id, where=where, message=_NOT_FOUND,
                             for_update=for_update)


def list_alerts(db: Session, principal: Principal, inbox_id: str | None = None, *, after: str | None = None,
                limit: int = 50) -> list[Alert]:
    """The alerts of the caller's inbox (an agent's own, or the one a session names; a session
    naming none: every inbox it may use), oldest first, after the cursor (an alert id)."""
    query = tenancy.owned(select(Alert), Alert, principal.tenant_id).where(_usable_inboxes(principal))
    if inbox_id is not None or principal.own_inbox_id is not None:
        query = query.where(Alert.inbox_id == inbox_for(db, principal, inbox_id).id)
    if after:
        query = query.where(Alert.id > after)
    return list(db.scalars(query.order_by(Alert.id).limit(limit)))


def failing_alerts(db: Session, tenant_id: str, limit: int = 20) -> list[Alert]:
    """The tenant's enabled alerts whose deliveries are failing, and those disabled for failing."""
    query = tenancy.owned(select(Alert), Alert, tenant_id).where(
        (Alert.failing_since.is_not(None)) | (Alert.disabled_reason.is_not(None) & (Alert.disabled_reason != "manual")))
    return list(db.scalars(query.order_by(Alert.failing_since, Alert.id).limit(limit)))


# --- writing -----------------------------------------------------------------------------------
def create_alert(db: Session, settings: Settings, principal: Principal, inbox_id: str | None, data: AlertInput,
                 resolver: Any = None) -> tuple[Alert, str | None]:
    """A new alert in the caller's inbox; for a webhook, its secret too (shown this once)."""
    inbox = inbox_for(db, principal, inbox_id)
    _check_simple(data)
    types = check_events(principal, data.events)
    now = utcnow()
    alert = Alert(id=new_id("alr"), tenant_id=inbox.tenant_id, inbox_id=inbox.id, events=types,
                  delivery_type=data.delivery_type or "webhook", filter=dict(data.filter or {}),
                  retries=3 if data.retries is None else data.retries, backoff=data.backoff or "exponential",
                  enabled=True if data.enabled is None else data.enabled, created_at=now, updated_at=now)
    alert.offset_value, alert.offset_unit = _check_offset(types, data.offset)
    alert.threshold = _check_threshold(types, data.threshold)
    secret = _set_delivery(settings, alert, data, resolver)
    if not alert.enabled:
        alert.disabled_reason = "manual"
    db.add(alert)
    _announce(db, alert, "alert.created", principal)
    return alert, secret


def _set_delivery(settings: Settings, alert: Alert, data: AlertInput, resolver: Any) -> str | None:
    """Where the alert delivers (a checked target, or a task summary); a new secret when a
    webhook alert has none yet (returned: shown once), none kept for a task alert."""
    kind_changed = data.delivery_type is not None and data.delivery_type != alert.delivery_type
    alert.delivery_type = data.delivery_type or alert.delivery_type
    if alert.delivery_type == "task":
        if data.summary is not None or kind_changed or alert.task_summary is None:
            alert.task_summary = _check_summary(data.summary if data.summary is not None else alert.task_summary)
        alert.target, alert.secret_sealed, alert.previous_secret_sealed = None, None, None
        alert.previous_secret_until = None
        return None
    if data.target is not None or alert.target is None:
        if not data.target:
            raise ValidationError("delivery.target: a webhook alert needs a target URL", field="delivery.target")
        alert.target = check_target(settings, data.target, resolver)
    alert.task_summary = None
    if alert.secret_sealed is not None:
        return None
    secret = new_secret()
    alert.secret_sealed = _seal(settings, alert.id, secret)
    return secret


def update_alert(db: Session, settings: Settings, principal: Principal, alert_id: str, inbox_id: str | None,
                 data: AlertInput, resolver: Any = None) -> tuple[Alert, str | None]:
    """Change the fields given; enabling clears the failure state, disabling emits alert.disabled.
    Returns the secret when the change made the alert a webhook (shown this once)."""
    alert = get_alert(db, principal, alert_id, inbox_id, for_update=True)
    _check_simple(data)
    types = check_events(principal, data.events) if data.events is not None else list(alert.events)
    offset = data.offset if data.offset is not None else (
        {"value": alert.offset_value, "unit": alert.offset_unit} if alert.offset_value is not None else None)
    alert.offset_value, alert.offset_unit = _check_offset(types, offset)
    alert.threshold = _check_threshold(types, data.threshold if data.threshold is not None else alert.threshold)
    alert.events = types
    secret = _set_delivery(settings, alert, data, resolver)
    for name in ("retries", "backoff"):
        if getattr(data, name) is not None:
            setattr(alert, name, getattr(data, name))
    if data.filter is not None:
        alert.filter = dict(data.filter)
    alert.updated_at = utcnow()
    if data.enabled is False and alert.enabled:
        disable_alert(db, alert, "manual", actor=principal)
    elif data.enabled and not alert.enabled:
        alert.enabled, alert.disabled_reason, alert.failing_since = True, None, None
    _announce(db, alert, "alert.updated", principal)
    return alert, secret


def disable_alert(db: Session, alert: Alert, reason: str, *, actor: Any = None) -> None:
    """Stop delivering (by hand: reason "manual"; the engine: "gone" on a 410, "failing" after 5
    days of failures) and emit alert.disabled. Pending deliveries stay; enabling resumes them."""
    alert.enabled, alert.disabled_reason, alert.updated_at = False, reason[:200], utcnow()
    events.emit(db, "alert.disabled", tenant_id=alert.tenant_id, inbox_id=alert.inbox_id, resource_id=alert.id,
                actor=actor, payload={"alert_id": alert.id, "reason": alert.disabled_reason})


def delete_alert(db: Session, principal: Principal, alert_id: str, inbox_id: str | None = None) -> None:
    """Delete the alert and its deliveries (pending ones are never sent)."""
    alert = get_alert(db, principal, alert_id, inbox_id, for_update=True)
    db.execute(WebhookDelivery.__table__.delete().where(WebhookDelivery.alert_id == alert.id))
    _announce(db, alert, "alert.deleted", principal)
    db.delete(alert)


def rotate_secret(db: Session, settings: Settings, principal: Principal, alert_id: str,
                  inbox_id: str | None = None) -> tuple[Alert, str]:
    """A new secret (returned: shown this once); the current one keeps signing for 24 h. A second
    rotation within those 24 h drops the oldest: two secrets sign at most."""
    alert = get_alert(db, principal, alert_id, inbox_id, for_update=True)
    if alert.delivery_type != "webhook" or alert.secret_sealed is None:
        raise ValidationError("Only webhook alerts have a secret.", fix="Task alerts are not signed.")
    now, secret = utcnow(), new_secret()
    alert.previous_secret_sealed = alert.secret_sealed
    alert.previous_secret_until = now + ROTATION_GRACE
    alert.secret_sealed, alert.updated_at = _seal(settings, alert.id, secret), now
    _announce(db, alert, "alert.secret_rotated", principal,
              {"previous_valid_until": events.iso(alert.previous_secret_until)})
    return alert, secret


def _announce(db: Session, alert: Alert, type_: str, actor: Any, extra: dict | None = None) -> None:
    # No target or secret in events: a URL may carry a receiver's token in its query.
    events.emit(db, type_, tenant_id=alert.tenant_id, inbox_id=alert.inbox_id, resource_id=alert.id, actor=actor,
                payload={"alert_id": alert.id, "events": list(alert.events), "delivery_type": alert.delivery_type,
                         "enabled": alert.enabled, **(extra or {})})


# --- deliveries --------------------------------------------------------------------------------
def request_test(db: Session, principal: Principal, alert_id: str, inbox_id: str | None = None) -> WebhookDelivery:
    """Emit a `webhook.test` event for the alert and queue its one delivery, due now (the worker
    sends it like any other: signed, retried, logged)."""
    alert = get_alert(db, principal, alert_id, inbox_id)
    if alert.delivery_type != "webhook":
        raise ValidationError("Only webhook alerts can be tested.", fix="A task alert writes tasks; nothing is sent.")
    event = events.emit(db, "webhook.test", tenant_id=alert.tenant_id, inbox_id=alert.inbox_id, resource_id=alert.id,
                        actor=principal, payload={"alert_id": alert.id, "message": "A test delivery from Gentbox."})
    return queue_delivery(db, alert, event.id, None)


def queue_delivery(db: Session, alert: Alert, event_id: str, event_seq: int | None,
                   due: dt.datetime | None = None) -> WebhookDelivery:
    """A pending delivery of one event to one alert (the caller handles the unique conflict of an
    (alert, event) queued twice)."""
    now = utcnow()
    delivery = WebhookDelivery(id=new_id("dlv"), tenant_id=alert.tenant_id, alert_id=alert.id, event_id=event_id,
                               event_seq=event_seq, webhook_id=webhook_msg_id(event_id, alert.id), attempt=0,
                               status="pending", next_attempt_at=due or now, created_at=now, updated_at=now)
    db.add(delivery)
    return delivery


def list_deliveries(db: Session, principal: Principal, alert_id: str, inbox_id: str | None = None, *,
                    status: str | None = None, before: str | None = None, limit: int = 50) -> list[WebhookDelivery]:
    """The alert's deliveries, newest first, before the cursor (a delivery id); one status or all."""
    alert = get_alert(db, principal, alert_id, inbox_id)
    if status is not None and status not in DELIVERY_STATUSES:
        raise ValidationError(f"status: one of {', '.join(DELIVERY_STATUSES)}", field="status")
    if before is not None and not has_prefix(before, "dlv"):
        raise ValidationError("cursor is not one this list gave out", field="cursor",
                              fix="Pass the cursor of the previous page unchanged.")
    query = select(WebhookDelivery).where(WebhookDelivery.alert_id == alert.id)
    if status:
        query = query.where(WebhookDelivery.status == status)
    if before:
        query = query.where(WebhookDelivery.id < before)
    return list(db.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit)))


def retry_delivery(db: Session, principal: Principal, alert_id: str, delivery_id: str,
                   inbox_id: str | None = None) -> WebhookDelivery:
    """Make one of the alert's deliveries due now (a redelivery: a succeeded one is sent again,
    with the same webhook-id, so receivers that dedupe ignore it)."""
    alert = get_alert(db, principal, alert_id, inbox_id)
    delivery = tenancy.get_owned(db, WebhookDelivery, delivery_id, principal.tenant_id,
                                 where=(WebhookDelivery.alert_id == alert.id,), message="No such delivery.",
                                 for_update=True)
    now = utcnow()
    db.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery.id).values(
        status="pending", next_attempt_at=now, claimed_by=None, claimed_until=None, updated_at=now))
    db.refresh(delivery)
    return delivery


# --- answers -----------------------------------------------------------------------------------
def alert_to_dict(alert: Alert, secret: str | None = None) -> dict[str, Any]:
    """The API's alert object; `secret` only in the answers that made it (create, rotate)."""
    delivery = ({"type": "webhook", "target": alert.target} if alert.delivery_type == "webhook"
                else {"type": "task", "summary": alert.task_summary})
    body = {"alert_id": alert.id, "inbox_id": alert.inbox_id, "events": list(alert.events), "delivery": delivery,
            "offset": ({"value": alert.offset_value, "unit": alert.offset_unit}
                       if alert.offset_value is not None else None),
            "filter": dict(alert.filter or {}), "threshold": alert.threshold, "retries": alert.retries,
            "backoff": alert.backoff, "enabled": alert.enabled, "disabled_reason": alert.disabled_reason,
            "secret_rotated_until": events.iso(alert.previous_secret_until),
            "failing_since": events.iso(alert.failing_since), "last_success_at": events.iso(alert.last_success_at),
            "created_at": events.iso(alert.created_at), "updated_at": events.iso(alert.updated_at)}
    if secret is not None:
        body["secret"] = secret
    return body


def delivery_to_dict(delivery: WebhookDelivery) -> dict[str, Any]:
    """The API's delivery attempt object (contract section 8)."""
    return {"delivery_id": delivery.id, "alert_id": delivery.alert_id, "event_id": delivery.event_id,
            "webhook_id": delivery.webhook_id, "attempt": delivery.attempt, "status": delivery.status,
            "response_status": delivery.response_status, "duration_ms": delivery.duration_ms,
            "error": delivery.error, "next_attempt_at": events.iso(delivery.next_attempt_at),
            "created_at": events.iso(delivery.created_at), "updated_at": events.iso(delivery.updated_at)}
