"""The waitlist: public requests for access, decided by an operator, redeemed at sign-up."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formataddr, formatdate, make_msgid
from urllib.parse import urlencode

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.errors import InvalidRequestError, NotFoundError
from appliance.ids import new_id
from appliance.models import SignupToken, SystemMail, WaitlistEntry
from appliance.security import digest, new_secret
from appliance.services.automation import events
from appliance.services.validation import normalize_email

STATUSES = ("pending", "approved", "rejected", "redeemed")


@dataclass(frozen=True)
class Approval:
    entry: WaitlistEntry
    signup_url: str
    mail_id: str


def request_access(db: Session, email: str, client_ip: str = "") -> None:
    """Add or refresh a request. Says nothing about the address's state (no enumeration)."""
    email = normalize_email(email)
    # One atomic upsert: two requests for a new address at once must both succeed (a
    # read-then-insert lets the second fail on the unique email, answering differently).
    insert = postgresql.insert if db.get_bind().dialect.name == "postgresql" else sqlite.insert
    db.execute(insert(WaitlistEntry)
               .values(id=new_id("wl"), email=email, status="pending", request_count=1,
                       requested_at=utcnow(), client_ip=client_ip[:64])
               .on_conflict_do_update(index_elements=["email"],
                                      set_={"request_count": WaitlistEntry.request_count + 1}))


def list_entries(db: Session, status: str | None = None) -> list[WaitlistEntry]:
    query = select(WaitlistEntry).order_by(WaitlistEntry.requested_at)
    if status:
        query = query.where(WaitlistEntry.status == status)
    return list(db.scalars(query))


def _entry(db: Session, email: str) -> WaitlistEntry:
    entry = db.scalar(select(WaitlistEntry).where(WaitlistEntry.email == normalize_email(email)))
    if entry is None:
        raise NotFoundError(f"{email} is not on the waitlist.")
    return entry


def approve(db: Session, settings: Settings, email: str, decided_by: str) -> Approval:
    """Approve (or re-send): a fresh single-use link replaces any earlier one, and is mailed."""
    entry = _entry(db, email)
    if entry.status == "redeemed":
        raise InvalidRequestError(f"{entry.email} has already signed up.")
    now = utcnow()
    db.execute(update(SignupToken).where(SignupToken.waitlist_entry_id == entry.id,
                                         SignupToken.redeemed_at.is_(None),
                                         SignupToken.invalidated_at.is_(None))
               .values(invalidated_at=now))
    raw = new_secret("")
    db.add(SignupToken(id=new_id("sut"), waitlist_entry_id=entry.id, token_hash=digest(raw),
                       created_at=now, expires_at=now + dt.timedelta(seconds=settings.signup_token_ttl)))
    entry.status, entry.decided_at, entry.decided_by = "approved", now, decided_by
    url = f"{settings.base_url}/signup/?{urlencode({'email': entry.email, 'signup_token': raw})}"
    mail = _signup_mail(settings, entry.email, url)
    db.add(mail)
    events.emit(db, "waitlist.approved", tenant_id=None, resource_id=entry.id,
                payload={"email": entry.email})
    return Approval(entry=entry, signup_url=url, mail_id=mail.id)


def reject(db: Session, email: str, decided_by: str) -> WaitlistEntry:
    entry = _entry(db, email)
    if entry.status == "redeemed":
        raise InvalidRequestError(f"{entry.email} has already signed up.")
    now = utcnow()
    db.execute(update(SignupToken).where(SignupToken.waitlist_entry_id == entry.id,
                                         SignupToken.redeemed_at.is_(None))
               .values(invalidated_at=now))
    entry.status, entry.decided_at, entry.decided_by = "rejected", now, decided_by
    events.emit(db, "waitlist.rejected", tenant_id=None, resource_id=entry.id,
                payload={"email": entry.email})
    return entry


def check_signup_token(db: Session, email: str, raw_token: str) -> tuple[WaitlistEntry, SignupToken]:
    """The entry and token for a sign-up link, or a 400 saying why it cannot be used."""
    email = normalize_email(email)
    row = db.execute(select(WaitlistEntry, SignupToken)
                     .join(SignupToken, SignupToken.waitlist_entry_id == WaitlistEntry.id)
                     .where(SignupToken.token_hash == digest(raw_token or ""))).first()
    if row is None or row[0].email != email or row[1].invalidated_at is not None:
        raise InvalidRequestError("This sign-up link is not valid.", code="signup_token_invalid",
                                  field="signup_token", fix="Use the latest link from your approval email.")
    entry, token = row
    if token.redeemed_at is not None:
        raise InvalidRequestError("This sign-up link was already used.", code="signup_token_redeemed",
                                  field="signup_token", fix="Log in at POST /auth/login/ instead.")
    if token.expires_at <= utcnow():
        raise InvalidRequestError("This sign-up link has expired.", code="signup_token_expired",
                                  field="signup_token", fix="Ask for access again; an admin re-sends the link.")
    return entry, token


def redeem(db: Session, entry: WaitlistEntry, token: SignupToken) -> None:
    """Mark the token used, atomically: of two concurrent redemptions exactly one succeeds."""
    now = utcnow()
    result = db.execute(update(SignupToken).where(SignupToken.id == token.id,
                                                  SignupToken.redeemed_at.is_(None),
                                                  SignupToken.invalidated_at.is_(None))
                        .values(redeemed_at=now))
    if result.rowcount != 1:
        raise InvalidRequestError("This sign-up link was already used.", code="signup_token_redeemed",
                                  field="signup_token")
    db.execute(update(WaitlistEntry).where(WaitlistEntry.id == entry.id).values(status="redeemed"))


def _signup_mail(settings: Settings, email: str, url: str) -> SystemMail:
    sender = f"no-reply@{settings.hostname}"
    msg = EmailMessage()
    msg["From"] = formataddr(("Gentbox", sender))
    msg["To"] = email
    msg["Subject"] = "Your Gentbox sign-up link"
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=settings.hostname)
    msg.set_content(
        "Your request for access to Gentbox was approved.\n\n"
        f"Finish signing up here (the link works once and expires in "
        f"{settings.signup_token_ttl // 86400 or 1} day(s)):\n\n{url}\n")
    return SystemMail(id=new_id("sml"), kind="signup_link", mail_from=sender, rcpt_to=email,
                      raw=msg.as_bytes(), status="queued", created_at=utcnow(), meta={})
