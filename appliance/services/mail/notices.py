"""Mail the appliance sends people about their tenant (through the system mail queue, which the
delivery worker sends like sign-up links).

Held actions (issue 8.5): when something starts waiting for approval, the tenant's owner gets one
email with a link to the approvals page. Only when the tenant had nothing else pending: an agent
holding fifty sends makes one email, not fifty; once the queue of approvals is empty again, the
next held action mails again."""
from __future__ import annotations

from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.ids import new_id
from appliance.models import Approval, Inbox, SystemMail, User

HELD_KIND = "approval_held"


def approval_requested(db: Session, settings: Settings, approval: Approval) -> SystemMail | None:
    """Queue the owner's "something waits for your approval" email, unless one is already due."""
    db.flush()
    pending = db.scalar(select(func.count()).select_from(Approval).where(
        Approval.tenant_id == approval.tenant_id, Approval.status == "pending")) or 0
    if pending != 1:
        return None
    owner = db.scalars(select(User).where(User.tenant_id == approval.tenant_id, User.role == "owner",
                                          User.status == "active").order_by(User.created_at)).first()
    if owner is None:
        return None
    inbox = db.get(Inbox, approval.inbox_id)
    summary = approval.summary or {}
    sender = f"no-reply@{settings.hostname}"
    msg = EmailMessage()
    msg["From"] = formataddr(("Gentbox", sender))
    msg["To"] = owner.email
    msg["Subject"] = "An agent's message is waiting for your approval"
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=settings.hostname)
    msg["Auto-Submitted"] = "auto-generated"
    lines = [f"{inbox.address if inbox else 'An inbox'} holds an action for your decision "
             f"({approval.action_type}, by the token \"{approval.token_label}\").", ""]
    if summary.get("subject") is not None:
        lines += [f"Subject: {summary.get('subject') or '(no subject)'}",
                  f"To: {', '.join(summary.get('recipients') or [])}", ""]
    lines += ["Nothing is sent until you approve it. Review it here:", "",
              f"{settings.base_url}/admin/approvals/{approval.id}/", "",
              f"If nobody decides, it expires at {approval.expires_at:%Y-%m-%d %H:%M} UTC and is never sent."]
    msg.set_content("\n".join(lines) + "\n")
    mail = SystemMail(id=new_id("sml"), kind=HELD_KIND, mail_from=sender, rcpt_to=owner.email, raw=msg.as_bytes(),
                      status="queued", created_at=utcnow(), meta={"approval_id": approval.id})
    db.add(mail)
    return mail


ALERT_DISABLED_KIND = "alert_disabled"


def alert_disabled(db: Session, settings: Settings, alert, reason: str) -> SystemMail | None:  # noqa: ANN001
    """Queue the owner's "an alert was turned off" email (issue 15: 410, or 5 days of failures)."""
    owner = db.scalars(select(User).where(User.tenant_id == alert.tenant_id, User.role == "owner",
                                          User.status == "active").order_by(User.created_at)).first()
    if owner is None:
        return None
    inbox = db.get(Inbox, alert.inbox_id)
    sender = f"no-reply@{settings.hostname}"
    msg = EmailMessage()
    msg["From"] = formataddr(("Gentbox", sender))
    msg["To"] = owner.email
    msg["Subject"] = "An alert was disabled: its webhook keeps failing"
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=settings.hostname)
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content("\n".join([
        f"The alert {alert.id} of {inbox.address if inbox else 'an inbox'} was disabled: {reason}.",
        f"Target: {_without_query(alert.target) if alert.target else '(a task alert)'}", "",
        "No more events are sent to it. Fix the receiver, then enable the alert again here:", "",
        f"{settings.base_url}/admin/alerts/{alert.id}/", "",
        "Events missed meanwhile can be read with GET /v1/events/?after=<the last seq you handled>."]) + "\n")
    mail = SystemMail(id=new_id("sml"), kind=ALERT_DISABLED_KIND, mail_from=sender, rcpt_to=owner.email,
                      raw=msg.as_bytes(), status="queued", created_at=utcnow(), meta={"alert_id": alert.id})
    db.add(mail)
    return mail


def _without_query(url: str) -> str:
    """A URL without its query and fragment (a receiver's token often rides there)."""
    return url.split("?", 1)[0].split("#", 1)[0]


CAP_REACHED_KIND = "cap_reached"


def cap_reached(db: Session, settings: Settings, tenant_id: str, payload: dict) -> SystemMail | None:
    """Queue the owner's "a cap reached a threshold" email (issue 22; once per threshold and period)."""
    owner = db.scalars(select(User).where(User.tenant_id == tenant_id, User.role == "owner",
                                          User.status == "active").order_by(User.created_at)).first()
    if owner is None:
        return None
    sender = f"no-reply@{settings.hostname}"
    msg = EmailMessage()
    msg["From"] = formataddr(("Gentbox", sender))
    msg["To"] = owner.email
    what = f"{payload['level']} {payload['cap']} cap"
    msg["Subject"] = f"Your {what} is at {payload['threshold']}%"
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=settings.hostname)
    msg["Auto-Submitted"] = "auto-generated"
    per = f" this {payload['window']}" if payload["cap"] == "sends" else ""
    msg.set_content("\n".join([
        f"The {what} of {payload['id']} reached {payload['threshold']}% of its limit{per}: "
        f"{payload['used']} of {payload['limit']} {payload['unit'] if payload['unit'] != 'sends' else 'sends'}.",
        "", "Usage and caps:", "", f"{settings.base_url}/admin/usage/"]) + "\n")
    mail = SystemMail(id=new_id("sml"), kind=CAP_REACHED_KIND, mail_from=sender, rcpt_to=owner.email,
                      raw=msg.as_bytes(), status="queued", created_at=utcnow(), meta=dict(payload))
    db.add(mail)
    return mail
