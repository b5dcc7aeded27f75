"""The inboxes page: create on a verified domain, counts, pause/resume, delete with confirmation."""
from __future__ import annotations

from sqlalchemy import select

from appliance.clock import utcnow
from appliance.ids import new_id
from appliance.models import AgentToken, Domain, Inbox, Message
from tests.webui.conftest import text_of


def _inbox(store, address: str) -> Inbox | None:
    with store.session() as db:
        return db.scalar(select(Inbox).where(Inbox.address == address, Inbox.status != "deleted"))


def test_without_a_verified_domain_the_page_says_what_to_do_first(web, world, store):
    owner = world.owner()
    web.sign_in(owner.email)
    page = text_of(web.get("/admin/inboxes/"))
    assert "No inboxes yet" in page and "Add and verify a domain" in page
    with store.session() as db:  # a pending domain is not offered either
        db.add(Domain(id=new_id("dom"), tenant_id=owner.tenant_id, name="pending.example.com", status="pending",
                      created_at=utcnow(), verification_token="t"))
    page = text_of(web.get("/admin/inboxes/"))
    assert "@pending.example.com" not in page
    resp = web.post("/admin/inboxes/", {"local_part": "agent", "domain": "pending.example.com"}, follow_redirects=True)
    assert "pending.example.com is not verified yet" in text_of(resp)


def test_create_count_pause_resume_and_delete(web, world, store):
    owner = world.owner()
    first = world.inbox(owner, "first@mine.example.com")
    token = world.agent(owner, first, ["email:read"])
    with store.session() as db:
        for read in (False, True):
            db.add(Message(id=new_id("msg"), tenant_id=owner.tenant_id, inbox_id=first, direction="inbound",
                           is_read=read, created_at=utcnow(), thread_id=new_id("thr"), subject="hi",
                           from_email="a@b.example"))
    web.sign_in(owner.email)

    page = text_of(web.post("/admin/inboxes/", {"local_part": "Support", "domain": "mine.example.com",
                                                "display_name": "Support Agent"}, follow_redirects=True))
    assert "Created the inbox support@mine.example.com." in page
    assert _inbox(store, "support@mine.example.com").display_name == "Support Agent"
    row = page.split('data-inbox="first@mine.example.com"', 1)[1].split("</tr>", 1)[0]
    assert 'data-label="Messages">2<' in row and 'data-label="Unread">1<' in row

    page = text_of(web.post("/admin/inboxes/", {"local_part": "support", "domain": "mine.example.com"},
                            follow_redirects=True))
    assert "support@mine.example.com is already taken." in page

    resp = web.post(f"/admin/inboxes/{first}/pause/")
    assert resp.status_code == 200 and "Pause first@mine.example.com?" in text_of(resp)
    assert _inbox(store, "first@mine.example.com").status == "active"
    page = text_of(web.post(f"/admin/inboxes/{first}/pause/", {"confirm": "yes"}, follow_redirects=True))
    assert "first@mine.example.com is paused." in page
    assert _inbox(store, "first@mine.example.com").status == "paused"
    page = text_of(web.post(f"/admin/inboxes/{first}/resume/", follow_redirects=True))
    assert "first@mine.example.com is active again." in page
    assert _inbox(store, "first@mine.example.com").status == "active"

    resp = web.post(f"/admin/inboxes/{first}/delete/")
    assert "Delete the inbox first@mine.example.com?" in text_of(resp)
    assert _inbox(store, "first@mine.example.com") is not None
    page = text_of(web.post(f"/admin/inboxes/{first}/delete/", {"confirm": "yes"}, follow_redirects=True))
    assert "Deleted the inbox first@mine.example.com; its tokens are revoked." in page
    assert _inbox(store, "first@mine.example.com") is None
    with store.session() as db:
        assert db.get(AgentToken, token.token_id).status == "revoked"


def test_another_tenants_inbox_is_not_found(web_for, world, store):
    stranger = world.owner()
    theirs = world.inbox(stranger, "theirs@theirs.example.com")
    me = world.owner()
    world.inbox(me, "mine@mine.example.com")
    web = web_for()
    web.sign_in(me.email)
    page = text_of(web.get("/admin/inboxes/"))
    assert "mine@mine.example.com" in page and "theirs@" not in page and "@theirs.example.com" not in page
    for action in ("pause", "resume", "delete"):
        assert web.post(f"/admin/inboxes/{theirs}/{action}/", {"confirm": "yes"}).status_code == 404
    resp = web.post("/admin/inboxes/", {"local_part": "x", "domain": "theirs.example.com"}, follow_redirects=True)
    assert "theirs.example.com is not one of your domains" in text_of(resp)
    assert _inbox(store, "theirs@theirs.example.com").status == "active"
    assert _inbox(store, "x@theirs.example.com") is None
