"""A test world: builds tenants, users, inboxes and tokens through the real services."""
from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

from sqlalchemy import select

from appliance.config import Settings
from appliance.db import Store
from appliance.dns import Answer, Outcome
from appliance.models import DkimKey, Domain, Inbox, User
from appliance.services.domains import dkim, dnsrecords, domains
from appliance.services.identity import accounts, inboxes, tokens, waitlist
from appliance.services.identity.auth import authenticate

PASSWORD = "correct horse battery staple"
_counter = itertools.count(1)


@dataclass
class Person:
    user_id: str
    tenant_id: str
    email: str
    access_token: str
    refresh_token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


@dataclass
class Agent:
    token_id: str
    inbox_id: str
    raw: str
    scopes: list[str]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.raw}"}


class World:
    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings

    def signup_link(self, email: str) -> str:
        """The raw sign-up token of a fresh approval of email."""
        with self.store.session() as db:
            waitlist.request_access(db, email)
        with self.store.session() as db:
            approval = waitlist.approve(db, self.settings, email, decided_by="test")
        return parse_qs(urlparse(approval.signup_url).query)["signup_token"][0]

    def owner(self, email: str | None = None) -> Person:
        """A signed-up owner of a new tenant, logged in."""
        email = email or f"owner{next(_counter)}@example.com"
        raw = self.signup_link(email)
        with self.store.session() as db:
            accounts.sign_up(db, email, raw, PASSWORD, "Owner")
        return self.login(email)

    def member(self, owner: Person, role: str = "member") -> Person:
        email = f"{role}{next(_counter)}@example.com"
        with self.store.session() as db:
            # No service adds a member yet (invitations come with a later issue): the sign-up's own.
            accounts._create_user(db, email, PASSWORD, role.title(), role=role, tenant_id=owner.tenant_id)
        return self.login(email)

    def login(self, email: str, password: str = PASSWORD) -> Person:
        with self.store.session() as db, self.store.counter_sessions() as counters:
            issued = accounts.log_in(db, counters, self.settings, email, password, "127.0.0.9")
            counters.commit()
            user = db.get(User, issued.session.user_id)
        return Person(user.id, user.tenant_id, user.email, issued.access_token, issued.refresh_token)

    def inbox(self, owner: Person, address: str | None = None) -> str:
        """An active inbox on a verified domain of the owner's tenant (domain made if needed), made
        by the services as the API would: add_domain, verify_domain (DNS answered by `_Published`,
        as if the owner had published every record), create_inbox; so `inbox.created` and
        `domain.verified` are in the event log."""
        address = address or f"agent{next(_counter)}@{owner.tenant_id.lower()[-8:]}.example.com"
        domain_name = address.split("@", 1)[1]
        with self.store.session() as db:
            principal = authenticate(db, owner.access_token)
            domain = db.scalar(select(Domain).where(Domain.name == domain_name, Domain.tenant_id == owner.tenant_id))
            if domain is None:
                domain = domains.add_domain(db, self.settings, principal, domain_name)
            if domain.status != "verified":
                records = dnsrecords.build_records(domains._spec(db, domain), self.settings)
                domains.verify_domain(db, self.settings, principal, domain_name,
                                      resolver=_Published(records, domain_name))
            inbox = inboxes.create_inbox(db, principal, address, display_name="Agent")
        return inbox.id

    def signing_key(self, domain_name: str, selector: str = "gent1") -> tuple[str, str]:
        """An active DKIM key for a hosted domain: (selector, the p= value to publish)."""
        with self.store.session() as db:
            domain = db.query(Domain).filter_by(name=domain_name, status="verified").one()
            existing = db.query(DkimKey).filter_by(domain_id=domain.id, status="active", algorithm="rsa").one_or_none()
            key = existing or dkim.new_key(db, self.settings, domain, selector, "active")
            return key.selector, key.public_key

    def sender(self, owner: Person, address: str | None = None,
               scopes: tuple[str, ...] = ("email:send", "email:read")) -> Agent:
        """An inbox on a verified domain with an active DKIM key, and its agent's token."""
        inbox_id = self.inbox(owner, address)
        with self.store.session() as db:
            domain_name = db.get(Inbox, inbox_id).address.split("@", 1)[1]
        self.signing_key(domain_name)
        return self.agent(owner, inbox_id, list(scopes))

    def agent(self, owner: Person, inbox_id: str, scopes: list[str],
              requires_approval: list[str] | None = None,
              expires_at: dt.datetime | None = None) -> Agent:
        with self.store.session() as db:
            principal = authenticate(db, owner.access_token)
            issued = tokens.create_token(db, principal, inbox_id=inbox_id, label="test agent",
                                         scopes=scopes, requires_approval=requires_approval or [],
                                         expires_at=expires_at)
        return Agent(issued.token.id, inbox_id, issued.raw, list(issued.token.scopes))


class _Published:
    """A resolver that answers as DNS would once every record of a domain is published (the
    check itself is tested against dnsmasq in tests/integration/test_dkim_dns.py and
    tests/api/test_domains.py); every other name has no records."""

    def __init__(self, records: list[dnsrecords.Record], domain: str) -> None:
        self.answers: dict[tuple[str, str], list[str]] = {}
        for record in records:
            self.answers.setdefault((record.fqdn(domain), record.type), []).append(record.value)

    def query(self, name: str, rdtype: str) -> Answer:
        found = self.answers.get((name, rdtype))
        return Answer(Outcome.ANSWER, tuple(found)) if found else Answer(Outcome.NXDOMAIN)
