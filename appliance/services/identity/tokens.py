"""Agent tokens: bound to one inbox, with scopes; only their digests are stored."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.errors import NotFoundError, ValidationError
from appliance.ids import new_id
from appliance.models import AgentToken
from appliance.security import AGENT_TOKEN_PREFIX, digest, new_secret
from appliance.services.automation import events
from appliance.services.identity.auth import SCOPES, Principal, inbox_for, require_manager
from appliance.services.validation import reject_control_chars


@dataclass(frozen=True)
class IssuedToken:
    token: AgentToken
    raw: str | None  # present only when a secret was just created


def _check_scopes(scopes: list[str], field: str) -> list[str]:
    unknown = [s for s in scopes if s not in SCOPES]
    if unknown:
        raise ValidationError(f"{field} has unknown scopes: {', '.join(unknown)}", field=field,
                              fix="Valid scopes: " + ", ".join(SCOPES))
    return sorted(set(scopes), key=SCOPES.index)


def create_token(db: Session, principal: Principal, *, inbox_id: str, label: str, scopes: list[str],
                 requires_approval: list[str], expires_at: dt.datetime | None) -> IssuedToken:
    """Issue a token for one of the tenant's inboxes."""
    require_manager(principal)
    inbox = inbox_for(db, principal, inbox_id)
    reject_control_chars(label, "label")
    scopes = _check_scopes(scopes, "scopes")
    if not scopes:
        raise ValidationError("scopes must name at least one scope", field="scopes",
                              fix="Valid scopes: " + ", ".join(SCOPES))
    held = _check_scopes(requires_approval, "requires_approval")
    if set(held) - set(scopes):
        raise ValidationError("requires_approval may only list scopes the token has",
                              field="requires_approval")
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise ValidationError("expires_at needs a time zone, e.g. 2030-01-01T00:00:00Z", field="expires_at")
        if expires_at <= utcnow():
            raise ValidationError("expires_at must be in the future", field="expires_at")
    raw = new_secret(AGENT_TOKEN_PREFIX)
    token = AgentToken(id=new_id("tok"), tenant_id=inbox.tenant_id, inbox_id=inbox.id,
                       label=label.strip(), token_hash=digest(raw), scopes=scopes,
                       requires_approval=held, status="active", created_by=principal.user.id,
                       created_at=utcnow(), expires_at=expires_at)
    db.add(token)
    events.emit(db, "token.created", tenant_id=inbox.tenant_id, inbox_id=inbox.id,
                resource_id=token.id, actor=principal.id, payload={"label": token.label, "scopes": scopes})
    return IssuedToken(token, raw)


def list_tokens(db: Session, principal: Principal, inbox_id: str | None, *, after: str | None,
                limit: int) -> list[AgentToken]:
    require_manager(principal)
    query = select(AgentToken).where(AgentToken.tenant_id == principal.tenant_id,
                                     AgentToken.status != "revoked")
    if inbox_id:
        query = query.where(AgentToken.inbox_id == inbox_for(db, principal, inbox_id).id)
    if after:
        query = query.where(AgentToken.id > after)
    return list(db.scalars(query.order_by(AgentToken.id).limit(limit)))


def get_token(db: Session, principal: Principal, token_id: str) -> AgentToken:
    require_manager(principal)
    token = db.get(AgentToken, token_id) if isinstance(token_id, str) else None
    if token is None or token.tenant_id != principal.tenant_id or token.status == "revoked":
        raise NotFoundError("No such token.")
    return token


def update_token(db: Session, principal: Principal, token_id: str, *, action: str | None,
                 scopes: list[str] | None) -> IssuedToken:
    """Pause, resume, rotate (a new secret, returned once) or narrow the scopes."""
    token = get_token(db, principal, token_id)
    if (action is None) == (scopes is None):
        raise ValidationError("send exactly one of action or scopes", field="action",
                              fix="action is pause, resume or rotate; scopes narrows the token.")
    raw = None
    if scopes is not None:
        narrowed = _check_scopes(scopes, "scopes")
        if not narrowed or set(narrowed) - set(token.scopes):
            raise ValidationError("scopes may only narrow the token's current scopes", field="scopes",
                                  fix="Current scopes: " + ", ".join(token.scopes))
        token.scopes = narrowed
        token.requires_approval = [s for s in token.requires_approval if s in narrowed]
        kind = "token.narrowed"
    elif action == "pause":
        token.status, kind = "paused", "token.paused"
    elif action == "resume":
        token.status, kind = "active", "token.resumed"
    elif action == "rotate":
        raw = new_secret(AGENT_TOKEN_PREFIX)
        token.token_hash, kind = digest(raw), "token.rotated"
    else:
        raise ValidationError("action must be pause, resume or rotate", field="action")
    events.emit(db, kind, tenant_id=token.tenant_id, inbox_id=token.inbox_id,
                resource_id=token.id, actor=principal.id)
    return IssuedToken(token, raw)


def revoke_token(db: Session, principal: Principal, token_id: str) -> None:
    token = get_token(db, principal, token_id)
    token.status, token.revoked_at = "revoked", utcnow()
    events.emit(db, "token.revoked", tenant_id=token.tenant_id, inbox_id=token.inbox_id,
                resource_id=token.id, actor=principal.id)


def token_to_dict(token: AgentToken, raw: str | None = None) -> dict:
    body = {"token_id": token.id, "label": token.label, "inbox_id": token.inbox_id,
            "scopes": list(token.scopes), "requires_approval": list(token.requires_approval),
            "status": token.status, "created_at": events.iso(token.created_at),
            "expires_at": events.iso(token.expires_at), "last_used_at": events.iso(token.last_used_at)}
    if raw is not None:
        body["token"] = raw
    return body
