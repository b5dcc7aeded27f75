"""GET /v1/users/me/: who the caller is and the one thing to do next."""
from __future__ import annotations

from sqlalchemy import exists, select, text
from sqlalchemy.orm import Session

from appliance.models import AgentToken, Domain, Inbox, Message
from appliance.services.automation.events import iso
from appliance.services.identity.auth import Principal


def _step(code: str, method: str, path: str, message: str) -> dict:
    return {"code": code, "method": method, "path": path, "message": message}


def next_step_for_user(db: Session, tenant_id: str) -> dict | None:
    """The owner's next step, computed from what the store holds (see contract section 1)."""
    domain = db.scalars(select(Domain).where(Domain.tenant_id == tenant_id).order_by(Domain.id)).first()
    if domain is None:
        return _step("add_domain", "POST", "/v1/domains/",
                     "Add the domain your agents will send from, e.g. {\"domain\": \"example.com\"}.")
    if not db.scalar(select(exists().where(Domain.tenant_id == tenant_id, Domain.status == "verified"))):
        return _step("verify_domain", "POST", f"/v1/domains/{domain.name}/verify/",
                     f"Publish the 5 DNS records listed at GET /v1/domains/{domain.name}/, then verify.")
    # The messages carry a body to send as it is (an agent follows next_step without a manual).
    inbox_id = db.scalar(select(Inbox.id).where(Inbox.tenant_id == tenant_id, Inbox.status != "deleted")
                         .order_by(Inbox.id).limit(1))
    if inbox_id is None:
        verified = db.scalar(select(Domain.name).where(Domain.tenant_id == tenant_id, Domain.status == "verified")
                             .order_by(Domain.id).limit(1))
        return _step("create_inbox", "POST", "/v1/inboxes/",
                     f"Create an inbox for your agent on the verified domain, e.g. "
                     f"{{\"address\": \"agent@{verified}\"}}.")
    if not db.scalar(select(exists().where(AgentToken.tenant_id == tenant_id, AgentToken.status == "active"))):
        return _step("create_token", "POST", "/v1/tokens/",
                     f"Create a scoped agent token for the inbox, e.g. {{\"inbox_id\": \"{inbox_id}\", \"scopes\": "
                     f"[\"email:send\", \"email:read\", \"email:write\"]}}; the raw token is shown once.")
    return _mail_steps(db, Message.tenant_id == tenant_id, can_send=True, can_read=True)[0]


def _mail_steps(db: Session, owner_clause, *, can_send: bool, can_read: bool,  # noqa: ANN001
                extra: tuple = ()) -> tuple[dict | None, tuple]:
    """The mail steps, with any extra columns fetched in the same single query."""
    sent = exists().where(owner_clause, Message.direction == "outbound")
    read = exists().where(owner_clause, Message.direction == "inbound", Message.is_read.is_(True))
    has_sent, has_read, *rest = db.execute(select(sent, read, *extra)).one()
    return _next_mail_step(can_send and not has_sent, can_read and not has_read), tuple(rest)


def _next_mail_step(should_send: bool, should_read: bool) -> dict | None:
    """The first mail step still to take: send a first message, then read the inbox."""
    if should_send:
        return _step("send_first_message", "POST", "/v1/messages/", "Send a first message with the agent token.")
    if should_read:
        return _step("read_inbox", "GET", "/v1/messages/", "Read the inbox's messages.")
    return None


# The hot path of agents checking in: one round trip, one SQL text compiled once (the same as
# _mail_steps builds, written out so that no statement is built or cache-keyed per call).
_AGENT_ME = text("SELECT EXISTS (SELECT 1 FROM messages WHERE inbox_id = :inbox_id AND direction = 'outbound'), "
                 "EXISTS (SELECT 1 FROM messages WHERE inbox_id = :inbox_id AND direction = 'inbound' "
                 "AND is_read), (SELECT address FROM inboxes WHERE id = :inbox_id)")


def _agent_steps(db: Session, token) -> tuple[dict | None, str]:  # noqa: ANN001 - an AgentToken
    has_sent, has_read, address = db.connection().execute(_AGENT_ME, {"inbox_id": token.inbox_id}).one()
    return _next_mail_step("email:send" in token.scopes and not has_sent,
                           "email:read" in token.scopes and not has_read), address


def describe_me(db: Session, principal: Principal) -> dict:
    if principal.is_agent:
        token = principal.token
        step, inbox_address = _agent_steps(db, token)
        return {"token_id": token.id, "inbox_id": token.inbox_id,
                "address": inbox_address, "scopes": list(token.scopes),
                "requires_approval": list(token.requires_approval), "next_step": step}
    user = principal.user
    return {"user_id": user.id, "email": user.email, "name": user.name, "role": user.role,
            "is_operator": user.is_operator, "tenant_id": user.tenant_id,
            "created_at": iso(user.created_at), "next_step": next_step_for_user(db, user.tenant_id)}
