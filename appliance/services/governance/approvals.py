"""Approvals (issue 8): agent actions held until a person, or a reviewing token, decides.

A token's `requires_approval` lists scopes whose calls are held. The service that carries out
such an action asks `required(principal, action_type)` at the one place the action happens (for
`email:send`: `outbound.send`, whatever the edge), parks what it built, and files
`request_approval(...)`.
Each action type registers how it is released on approval and discarded on rejection or expiry
(`register_action`); the API refuses, fail-closed, any route whose scope is held but that cannot
hold (api/framework.py), so a scope listed in requires_approval is never carried out unheld.

Who decides: a session of the tenant's owner or an admin, or a reviewing agent token: one with
approvals:write whose own actions are not held, bound to another inbox than the held action's.
An agent never decides its own inbox's held actions, whatever its scopes. Deciding is a
conditional UPDATE on a pending row: of two concurrent decisions exactly one wins.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable

from sqlalchemy import and_, case, func, or_, select, update
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.errors import ForbiddenError, InvalidRequestError, NotFoundError, ValidationError
from appliance.ids import has_prefix, new_id
from appliance.models import APPROVAL_STATUSES, Approval, Inbox, Message
from appliance.services import tenancy
from appliance.services.automation import events
from appliance.services.governance import usage
from appliance.services.identity.auth import Principal, require_manager
from appliance.services.mail import notices

DECIDED = ("approved", "rejected", "expired")
EXPIRE_BATCH = 500


@dataclass(frozen=True)
class ActionHandler:
    """How a held action goes ahead (release) or is dropped (discard, with the final status)."""

    release: Callable[[Session, Settings, Approval, Principal, dt.datetime], None]
    discard: Callable[[Session, Approval, str, dt.datetime], None]


_ACTIONS: dict[str, ActionHandler] = {}


def register_action(action_type: str, handler: ActionHandler) -> None:
    """Called at start (appliance.services.register_handlers) for each service that holds actions."""
    _ACTIONS[action_type] = handler


def _handler(action_type: str) -> ActionHandler:
    try:
        return _ACTIONS[action_type]
    except KeyError:
        raise RuntimeError(f"no approval handler for {action_type!r}: the process did not call "
                           "appliance.services.register_handlers() at start") from None


# --- holding --------------------------------------------------------------------------------
def required(principal: Principal | None, action_type: str) -> bool:
    """Does this caller's action_type need a person's approval? (Agent tokens only.)"""
    return bool(principal is not None and action_type in principal.requires_approval)


def request_approval(db: Session, settings: Settings, principal: Principal, inbox: Inbox, action_type: str, *,
            resource_id: str | None, summary: dict, payload: dict, now: dt.datetime) -> Approval:
    """File a pending approval for a held action (and its approval.requested event)."""
    if action_type not in _ACTIONS:  # pragma: no cover - a programming error, never user input
        raise RuntimeError(f"no approval handler for {action_type}")
    approval = Approval(id=new_id("apr"), tenant_id=inbox.tenant_id, inbox_id=inbox.id, action_type=action_type,
                        resource_id=resource_id, token_id=principal.token.id if principal.is_agent else None,
                        token_label=(principal.token.label if principal.is_agent else "")[:200],
                        summary=summary, payload=payload, status="pending", queued_at=now,
                        expires_at=now + dt.timedelta(seconds=settings.approval_ttl))
    db.add(approval)
    usage.record(db, inbox.tenant_id, usage.APPROVALS, inbox_id=inbox.id, now=now)
    events.emit(db, "approval.requested", tenant_id=inbox.tenant_id, inbox_id=inbox.id, resource_id=approval.id,
                actor=principal.id, payload={"action_type": action_type, "resource_id": resource_id,
                                             "expires_at": events.iso(approval.expires_at), "summary": summary})
    notices.approval_requested(db, settings, approval)  # the owner hears of it (web UI issue 8.5)
    return approval


def approval_of(db: Session, resource_id: str) -> Approval | None:
    """The approval that holds this resource (e.g. a held message), if any."""
    return db.scalar(select(Approval).where(Approval.resource_id == resource_id).order_by(Approval.id.desc()))


# --- reading --------------------------------------------------------------------------------
def _is_reviewer(principal: Principal) -> bool:
    """Reviewers see the tenant's approvals; other agent tokens only their own inbox's."""
    if not principal.is_agent:
        return True
    return principal.has_scope("approvals:write") and not principal.token.requires_approval


def _visible(principal: Principal):  # noqa: ANN202 - a SQL condition
    if not principal.is_agent:
        require_manager(principal)  # members do not see the tenant's held actions
    where = tenancy.tenant_clause(Approval, principal.tenant_id)
    if not _is_reviewer(principal):
        where = and_(where, Approval.inbox_id == principal.token.inbox_id)
    return where


def get_approval(db: Session, principal: Principal, approval_id: str, inbox_id: str | None = None) -> Approval:
    """One approval the caller may see (of the inbox named, when one is); 404 for another
    tenant's, or another inbox's for a non-reviewing agent token."""
    where = (Approval.inbox_id == inbox_id,) if inbox_id else ()
    approval = db.scalar(select(Approval).where(Approval.id == approval_id, _visible(principal), *where))
    if approval is None:
        raise NotFoundError("No such approval.")
    return approval


def list_approvals(db: Session, principal: Principal, *, status: str | None = None, inbox_id: str | None = None,
                   limit: int = 50, cursor: str | None = None) -> tuple[list[Approval], str | None]:
    """One page: with status, those newest first; without, pending ones first, then the rest,
    each newest first. The cursor is opaque (`<rank>.<approval id>`)."""
    if status is not None and status not in APPROVAL_STATUSES:
        raise ValidationError(f"status must be one of {', '.join(APPROVAL_STATUSES)}", field="status")
    query = select(Approval).where(_visible(principal))
    if inbox_id:
        query = query.where(Approval.inbox_id == inbox_id)
    if status:
        query = query.where(Approval.status == status)
    rank = case((Approval.status == "pending", 0), else_=1)
    if cursor:
        last_rank, last_id = _parse_cursor(cursor)
        query = query.where(or_(rank > last_rank, and_(rank == last_rank, Approval.id < last_id)))
    rows = list(db.scalars(query.order_by(rank, Approval.id.desc()).limit(limit + 1)))
    page = rows[:limit]
    after = None
    if len(rows) > limit:
        last = page[-1]
        after = f"{0 if last.status == 'pending' else 1}.{last.id}"
    return page, after


def _parse_cursor(cursor: str) -> tuple[int, str]:
    rank, _, last_id = cursor.partition(".")
    if rank not in ("0", "1") or not has_prefix(last_id, "apr") \
            or not set(last_id[4:]) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ"):
        raise ValidationError("cursor is not one this list gave out", field="cursor",
                              fix="Pass the cursor of the previous page unchanged.")
    return int(rank), last_id


def held_message(db: Session, principal: Principal, approval_id: str) -> Message | None:
    """The message a visible email:send approval holds (for a full preview), or None."""
    approval = get_approval(db, principal, approval_id)
    if approval.action_type != "email:send" or not approval.resource_id:
        return None
    return tenancy.find_owned(db, Message, approval.tenant_id, Message.id == approval.resource_id,
                              Message.inbox_id == approval.inbox_id)


def pending_count(db: Session, principal: Principal) -> int:
    """How many held actions await the caller's decision (the web UI's badge)."""
    return int(db.scalar(select(func.count()).select_from(Approval)
                         .where(_visible(principal), Approval.status == "pending")) or 0)


# --- deciding -------------------------------------------------------------------------------
def approve(db: Session, settings: Settings, principal: Principal, approval_id: str,
            now: dt.datetime | None = None, inbox_id: str | None = None) -> Approval:
    """Let the held action go ahead (a held send: DKIM-signed and queued exactly as held)."""
    now = now or utcnow()
    approval = _decide(db, principal, approval_id, "approved", now, inbox_id)
    _announce(db, approval, "approval.approved", principal.id)
    _handler(approval.action_type).release(db, settings, approval, principal, now)
    return approval


def reject(db: Session, settings: Settings, principal: Principal, approval_id: str,
           now: dt.datetime | None = None, inbox_id: str | None = None) -> Approval:
    """Drop the held action for good (a held send is never delivered; its status says rejected)."""
    now = now or utcnow()
    approval = _decide(db, principal, approval_id, "rejected", now, inbox_id)
    _handler(approval.action_type).discard(db, approval, "rejected", now)
    _announce(db, approval, "approval.rejected", principal.id)
    return approval


def _decide(db: Session, principal: Principal, approval_id: str, status: str, now: dt.datetime,
            inbox_id: str | None = None) -> Approval:
    approval = get_approval(db, principal, approval_id, inbox_id)
    if principal.kind not in ("user", "agent"):  # a held action waits for a person or a reviewer
        raise ForbiddenError("Only a person or a reviewing agent token may decide a held action.")
    if principal.is_agent:
        if not principal.has_scope("approvals:write"):
            raise ForbiddenError("The token lacks the approvals:write scope.", code="insufficient_scope",
                                 fix="Ask the inbox owner for a token with the approvals:write scope.")
        if principal.token.inbox_id == approval.inbox_id:
            raise ForbiddenError("An agent token cannot decide its own inbox's held actions.",
                                 fix="A person (the inbox owner or an admin) or a reviewer of another inbox "
                                     "must decide.")
        if principal.token.requires_approval:
            raise ForbiddenError("A token whose own actions are held cannot approve or reject.",
                                 fix="Use a reviewing token without requires_approval, or a person's session.")
    _check_pending(approval, now)
    # Only a pending row changes: of two concurrent decisions, the second matches nothing.
    changed = db.execute(update(Approval).where(Approval.id == approval.id, Approval.status == "pending")
                         .values(status=status, decided_by=principal.id, decided_at=now)
                         .execution_options(synchronize_session=False)).rowcount
    db.refresh(approval)
    if changed != 1:
        _check_pending(approval, now)
        raise InvalidRequestError("The approval was decided at the same time by someone else.",
                                  code="approval_decided")
    return approval


def _check_pending(approval: Approval, now: dt.datetime) -> None:
    if approval.status == "expired" or (approval.status == "pending" and now >= approval.expires_at):
        raise InvalidRequestError(f"The approval expired at {events.iso(approval.expires_at)}.",
                                  code="approval_expired", fix="Ask the agent to make the request again.")
    if approval.status != "pending":
        raise InvalidRequestError(f"The approval was already {approval.status}.", code="approval_decided")


def _announce(db: Session, approval: Approval, type_: str, actor: str | None) -> None:
    events.emit(db, type_, tenant_id=approval.tenant_id, inbox_id=approval.inbox_id, resource_id=approval.id,
                actor=actor, payload={"action_type": approval.action_type, "resource_id": approval.resource_id,
                                      "decided_by": approval.decided_by})


def expire_approvals(db: Session, now: dt.datetime | None = None) -> int:
    """The worker's sweep: pending approvals past their expiry become expired, their actions
    are discarded (never carried out); returns how many."""
    now = now or utcnow()
    query = (select(Approval).where(Approval.status == "pending", Approval.expires_at <= now)
             .order_by(Approval.expires_at, Approval.id).limit(EXPIRE_BATCH))
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    expired = 0
    for approval in db.scalars(query).all():
        changed = db.execute(update(Approval).where(Approval.id == approval.id, Approval.status == "pending")
                             .values(status="expired", decided_at=now)
                             .execution_options(synchronize_session=False)).rowcount
        if changed != 1:
            continue
        db.refresh(approval)
        _handler(approval.action_type).discard(db, approval, "expired", now)
        _announce(db, approval, "approval.expired", Principal.system(approval.tenant_id, "worker").id)
        expired += 1
    return expired


# --- rendering ------------------------------------------------------------------------------
def approval_to_dict(approval: Approval) -> dict:
    return {"approval_id": approval.id, "inbox_id": approval.inbox_id, "action_type": approval.action_type,
            "token_label": approval.token_label, "summary": dict(approval.summary or {}),
            "status": approval.status, "queued_at": events.iso(approval.queued_at),
            "expires_at": events.iso(approval.expires_at), "decided_by": approval.decided_by,
            "decided_at": events.iso(approval.decided_at)}
