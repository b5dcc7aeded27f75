"""The approvals page (issue 8.5): held sends of an agent whose token requires approval, pending
first, the full held message (its sanitised HTML only in the sandboxed frame), approve and reject
through a confirmation, and the pending count as the navigation's badge."""
from __future__ import annotations

import email
import email.policy
import re

from sqlalchemy import select

from appliance.models import Approval, Message, OutboundQueue, SystemMail
from tests.webui.conftest import text_of

HTML = '<p>Dear Ann,</p><script>document.title="pwned"</script><img src="http://203.0.113.9/x.png" onerror="x()">'


def _held(world, owner, client, subject: str = "Contract draft", **extra) -> str:  # noqa: ANN001
    if not hasattr(world, "_held_agent"):
        agent = world.sender(owner, f"agent@{owner.tenant_id.lower()[-8:]}-held.example")
        world._held_agent = world.agent(owner, agent.inbox_id, ["email:send", "email:read"],
                                        requires_approval=["email:send"])
    body = {"to": [{"email": "ann@partner.example", "name": "Ann"}], "subject": subject,
            "text_body": "Dear Ann,\nthe draft.\n", **extra}
    resp = client.post("/v1/messages/", json=body, headers=world._held_agent.auth)
    assert resp.status_code == 202, resp.get_data(as_text=True)
    return resp.json["approval_id"]


def _badge(body: str) -> str | None:
    found = re.search(r'Approvals <span class="badge"[^>]*>(\d+)</span>', body)
    return found.group(1) if found else None


def test_pending_first_with_a_badge_then_approve_after_confirmation(web, world, owner, client, store):  # noqa: ANN001
    web.sign_in(owner.email)
    assert "Nothing is waiting for approval" in text_of(web.get("/admin/approvals/"))
    assert _badge(text_of(web.get("/admin/approvals/"))) is None
    first = _held(world, owner, client, "First held")
    second = _held(world, owner, client, "Second held", html_body=HTML)
    web.post(f"/admin/approvals/{first}/reject/", {"confirm": "yes"})
    body = text_of(web.get("/admin/approvals/"))
    assert _badge(body) == "1"
    assert body.index(">Second held</a>") < body.index(">First held</a>")  # pending before decided
    assert "ann@partner.example" in body and "Dear Ann," in body

    page = web.get(f"/admin/approvals/{second}/")
    detail = text_of(page)
    assert page.status_code == 200 and "Second held" in detail and "Ann &lt;ann@partner.example&gt;" in detail
    assert "<script>document" not in detail and "x.png" not in detail
    frame = re.search(r'<iframe class="mailframe" src="([^"]+)" sandbox="([^"]*)"', detail)
    assert frame and "allow-scripts" not in frame.group(2) and "allow-same-origin" not in frame.group(2)
    inner = web.get(frame.group(1))
    assert "Dear Ann" in text_of(inner) and "<script" not in text_of(inner) and "onerror" not in text_of(inner)
    assert "default-src 'none'" in inner.headers["Content-Security-Policy"]

    asked = web.post(f"/admin/approvals/{second}/approve/")  # without JavaScript: a confirmation page first
    assert asked.status_code == 200 and "Please confirm" in text_of(asked)
    with store.session() as db:
        assert db.get(Approval, second).status == "pending"
    done = web.post(f"/admin/approvals/{second}/approve/", {"confirm": "yes"})
    assert done.status_code == 303
    follow = text_of(web.get(done.headers["Location"]))
    assert "Approved “Second held”: it is queued for delivery." in follow and _badge(follow) is None
    with store.session() as db:
        assert db.get(Approval, second).status == "approved"
        assert db.get(Approval, first).status == "rejected"
        message_id = db.get(Approval, second).resource_id
        assert db.get(Message, message_id).status == "queued"
        assert db.scalar(select(OutboundQueue.id).where(OutboundQueue.message_id == message_id)) is not None
        first_message = db.get(Approval, first).resource_id
        assert db.get(Message, first_message).status == "rejected"
        assert db.scalar(select(OutboundQueue.id).where(OutboundQueue.message_id == first_message)) is None


def test_a_decided_approval_cannot_be_decided_again(web, world, owner, client, store):  # noqa: ANN001
    approval_id = _held(world, owner, client)
    web.sign_in(owner.email)
    web.post(f"/admin/approvals/{approval_id}/reject/", {"confirm": "yes"})
    resp = web.post(f"/admin/approvals/{approval_id}/approve/", {"confirm": "yes"})
    assert "The approval was already rejected." in text_of(web.get(resp.headers["Location"]))
    with store.session() as db:
        assert db.get(Approval, approval_id).status == "rejected"


def test_members_and_other_tenants_see_nothing(web_for, world, owner, client, store):  # noqa: ANN001
    approval_id = _held(world, owner, client, "Secret plan")
    member = world.member(owner)
    web = web_for()
    web.sign_in(member.email)
    assert web.get("/admin/approvals/").status_code == 403
    assert "Approvals" not in text_of(web.get("/admin/account/"))
    stranger = world.owner()
    other = web_for()
    other.sign_in(stranger.email)
    assert _badge(text_of(other.get("/admin/approvals/"))) is None
    assert "Secret plan" not in text_of(other.get("/admin/approvals/"))
    for path in (f"/admin/approvals/{approval_id}/", f"/admin/approvals/{approval_id}/body/"):
        assert other.get(path).status_code == 404
    resp = other.post(f"/admin/approvals/{approval_id}/approve/", {"confirm": "yes"})
    assert "No such approval." in text_of(other.get(resp.headers["Location"]))
    with store.session() as db:
        assert db.get(Approval, approval_id).status == "pending"


def test_the_owner_is_mailed_a_link_when_something_starts_waiting(web, world, owner, client, store, settings):  # noqa: ANN001
    from appliance.services.mail.notices import HELD_KIND

    def notices() -> list[SystemMail]:
        with store.session() as db:
            rows = list(db.scalars(select(SystemMail).where(SystemMail.kind == HELD_KIND).order_by(SystemMail.id)))
            db.expunge_all()
            return rows

    first = _held(world, owner, client, "Needs a look")
    [mail] = notices()
    text = email.message_from_bytes(mail.raw, policy=email.policy.default)
    assert mail.rcpt_to == owner.email and mail.status == "queued"
    assert text["Subject"] == "An agent's message is waiting for your approval"
    link = f"{settings.base_url}/admin/approvals/{first}/"
    assert link in text.get_content() and "Subject: Needs a look" in text.get_content()
    _held(world, owner, client, "Another one")  # still one pending before it: no second email
    assert len(notices()) == 1
    web.sign_in(owner.email)
    assert web.get(link.removeprefix(settings.base_url)).status_code == 200  # the link opens the item
    for approval_id in (first, _approval_ids(store)[-1]):
        web.post(f"/admin/approvals/{approval_id}/reject/", {"confirm": "yes"})
    _held(world, owner, client, "After a quiet spell")  # nothing was pending: mailed again
    assert len(notices()) == 2


def _approval_ids(store) -> list[str]:  # noqa: ANN001
    with store.session() as db:
        return list(db.scalars(select(Approval.id).where(Approval.status == "pending").order_by(Approval.id)))
