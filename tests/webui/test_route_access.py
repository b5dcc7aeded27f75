"""Every web UI route declares who may open it, and the walk proves it, over the app's URL map (so
pages added later are covered without editing this file):
- signed-out visitors are sent to the sign-in page from every non-public page;
- a member gets 403 on manager and operator pages;
- a tenant owner reaches nothing of another tenant's (their ids in paths and forms are 404s or
  refused, their names appear on no page) and nothing operator-only (403), and no POST changes
  the other tenant's state.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select

from appliance.models import AgentToken, Attachment, Domain, Inbox, Message, User
from tests.api.test_messages import build_mail, deliver
from tests.webui.conftest import WebClient
from tests.world import Person, World
from webui.auth import ACCESS_ATTR

ACCESS = {"public", "user", "manager", "operator"}
PUBLIC_PATHS = ("/login/", "/logout/", "/waitlist/", "/signup/", "/admin/", "/u/")  # /u/: one-click unsubscribe


def web_rules(app) -> list[tuple[str, str, str]]:  # noqa: ANN001
    """(endpoint, method, rule) of every web UI rule but its static files."""
    out = []
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("webui.") or rule.endpoint == "webui.static":
            continue
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            out.append((rule.endpoint, method, rule.rule))
    return out


def access_of(app, endpoint: str) -> str | None:  # noqa: ANN001
    return getattr(app.view_functions[endpoint], ACCESS_ATTR, None)


@dataclass
class Tenant:
    """Another tenant's people and resources, and what identifies them on a page."""

    owner: Person
    member_id: str
    member_email: str
    inbox_id: str
    address: str
    domain: str
    token_id: str
    message_id: str
    thread_id: str
    attachment_id: str
    subject: str

    def values(self) -> dict[str, str]:
        return {"user_id": self.member_id, "inbox_id": self.inbox_id, "token_id": self.token_id,
                "domain": self.domain, "name": self.domain, "domain_name": self.domain,
                "email": self.member_email, "address": self.address, "tenant_id": self.owner.tenant_id,
                "message_id": self.message_id, "thread_id": self.thread_id, "attachment_id": self.attachment_id}

    def markers(self) -> set[str]:
        return {self.owner.email, self.member_email, self.address, self.domain, self.owner.tenant_id,
                self.inbox_id, self.token_id, self.member_id, self.owner.user_id, self.message_id,
                self.thread_id, self.attachment_id, self.subject}


def _tenant(world: World) -> Tenant:
    owner = world.owner()
    member = world.member(owner)
    inbox = world.inbox(owner)
    token = world.agent(owner, inbox, ["email:read"])
    with world.store.session() as db:
        address = db.get(Inbox, inbox).address
    subject = f"Confidential plans of {owner.tenant_id}"
    message_id = deliver(world, inbox, build_mail(subject=subject, to=address,
                                                  attachments=(("plans.txt", "text/plain", b"secret"),)))
    with world.store.session() as db:
        thread_id = db.get(Message, message_id).thread_id
        attachment_id = db.scalar(select(Attachment.id).where(Attachment.message_id == message_id))
    return Tenant(owner, member.user_id, member.email, inbox, address, address.split("@", 1)[1], token.token_id,
                  message_id, thread_id, attachment_id, subject)


def _snapshot(store, tenant_id: str) -> dict:
    with store.session() as db:
        return {
            "users": sorted(db.execute(select(User.id, User.role, User.status, User.password_hash)
                                       .where(User.tenant_id == tenant_id)).all()),
            "inboxes": sorted(db.execute(select(Inbox.id, Inbox.status, Inbox.display_name)
                                         .where(Inbox.tenant_id == tenant_id)).all()),
            "tokens": sorted(db.execute(select(AgentToken.id, AgentToken.status, AgentToken.scopes)
                                        .where(AgentToken.tenant_id == tenant_id)).all()),
            "domains": sorted(db.execute(select(Domain.id, Domain.status, Domain.name)
                                         .where(Domain.tenant_id == tenant_id)).all()),
            "messages": sorted(db.execute(select(Message.id, Message.is_read, Message.labels)
                                          .where(Message.tenant_id == tenant_id)).all()),
        }


def fill(rule: str, values: dict[str, str]) -> str:
    """The rule with each <param> replaced: a value given for its name, else a plausible one."""
    def value(match: re.Match) -> str:
        name = match.group(1)
        if name in values:
            return values[name]
        stem = name.removesuffix("_id")
        return f"{stem[:3]}_01J00000000000000000000000" if name.endswith("_id") else "x1"
    return re.sub(r"<(?:\w+:)?(\w+)>", value, rule)


def names_known(rule: str, values: dict[str, str]) -> bool:
    """Whether every path parameter of rule got one of the given (real) values."""
    return all(name in values for name in re.findall(r"<(?:\w+:)?(\w+)>", rule))


def test_every_web_route_declares_its_access(app):
    rules = web_rules(app)
    assert len(rules) >= 20
    undeclared = [f"{m} {r} ({e})" for e, m, r in rules if access_of(app, e) not in ACCESS]
    assert not undeclared, f"web UI views without public_page/login_required_page/manager_required/" \
                           f"operator_required: {undeclared}"
    public = [r for e, m, r in rules if access_of(app, e) == "public"]
    assert all(r.startswith(PUBLIC_PATHS) for r in public), public
    assert not any(r.startswith("/admin/") and r != "/admin/" for r in public), public


def test_signed_out_visitors_are_sent_to_sign_in(app, web, world):
    other = _tenant(world)
    for endpoint, method, rule in web_rules(app):
        if access_of(app, endpoint) == "public":
            continue
        path = fill(rule, other.values())
        resp = web.get(path) if method == "GET" else web.post(path, {"confirm": "yes"})
        assert resp.status_code == 302 and resp.headers["Location"].startswith("/login/?next="), \
            (method, path, resp.status_code)


def test_a_member_gets_403_on_manager_and_operator_pages(app, web, world):
    owner = world.owner()
    member = world.member(owner)
    web.sign_in(member.email)
    walked = 0
    for endpoint, method, rule in web_rules(app):
        if access_of(app, endpoint) not in ("manager", "operator"):
            continue
        path = fill(rule, {})
        resp = web.get(path) if method == "GET" else web.post(path, {"confirm": "yes"})
        assert resp.status_code == 403 and resp.mimetype == "text/html", (method, path, resp.status_code)
        walked += 1
    assert walked >= 5
    assert web.get("/admin/account/").status_code == 200


def test_a_tenant_owner_reaches_nothing_of_another_tenant_and_nothing_operator_only(app, web_for, world, store):
    other = _tenant(world)
    before = _snapshot(store, other.owner.tenant_id)
    me = world.owner()
    world.inbox(me)  # something of its own on its pages
    web = web_for()
    web.sign_in(me.email)
    problems: list[str] = []
    fields = {**other.values(), "confirm": "yes", "role": "member", "status": "disabled", "code": "000000",
              "action": "revoke", "next": "/admin/account/"}

    for endpoint, method, rule in web_rules(app):
        access = access_of(app, endpoint)
        if endpoint in ("webui.logout", "webui.change_password"):
            continue  # they act on the caller only (and would end this walk's session)
        path = fill(rule, other.values())
        resp = web.get(path) if method == "GET" else web.post(path, fields)
        body = resp.get_data().decode("utf-8", "replace")  # a download (the audit bundle's zip) is bytes
        what = f"{method} {path} [{access}]"
        if resp.status_code >= 500:
            problems.append(f"{what}: server error {resp.status_code}")
        elif access == "operator" and resp.status_code != 403:
            problems.append(f"{what}: an operator page answered {resp.status_code}, not 403")
        elif "<" in rule and method == "GET" and resp.status_code not in (403, 404) and (
                names_known(rule, other.values()) or resp.status_code != 400):
            problems.append(f"{what}: another tenant's resource answered {resp.status_code}, not 404")
        leaked = sorted(m for m in other.markers() if m in body)
        if leaked:
            problems.append(f"{what}: shows the other tenant's {leaked}")
        if web.get("/admin/account/").status_code != 200:  # a POST ended the session: sign in again
            web.sign_in(me.email)

    assert not problems, "\n".join(problems)
    assert _snapshot(store, other.owner.tenant_id) == before
