"""Issue 16.5 and 16.6 in the web UI (no browser: Flask's test client, SQLite and PostgreSQL):
the distribution lists page creates and deletes a list and adds and removes members, every form
with its CSRF token; an owner grants a member specific inboxes on the inbox's Members page, and
the member's session then sees exactly those on the Mail pages."""
from __future__ import annotations

from sqlalchemy import select

from appliance.models import DistributionList, DistributionListMember
from tests.api.test_messages import build_mail, deliver
from tests.webui.conftest import text_of


def _list(store, address: str) -> DistributionList | None:
    with store.session() as db:
        return db.scalar(select(DistributionList).where(DistributionList.address == address))


def _members(store, list_id: str) -> set[str]:
    with store.session() as db:
        return set(db.scalars(select(DistributionListMember.inbox_id).where(DistributionListMember.list_id == list_id)))


def test_an_owner_creates_a_list_adds_and_removes_members_and_deletes_it(web, world, store):
    owner = world.owner()
    ann, bob = world.inbox(owner, "ann@alpha.test"), world.inbox(owner, "bob@alpha.test")
    web.sign_in(owner.email)
    page = text_of(web.get("/admin/lists/"))
    assert "No lists yet" in page and 'value="alpha.test"' in page
    page = text_of(web.post("/admin/lists/", {"local_part": "team", "domain": "alpha.test", "name": "Team"},
                            follow_redirects=True))
    assert "Created the list team@alpha.test." in page
    dl = _list(store, "team@alpha.test")
    for inbox_id in (ann, bob):
        web.post(f"/admin/lists/{dl.id}/members/", {"inbox_id": inbox_id})
    assert _members(store, dl.id) == {ann, bob}
    page = text_of(web.get("/admin/lists/"))
    assert 'data-member="ann@alpha.test"' in page and 'data-member="bob@alpha.test"' in page
    page = text_of(web.post("/admin/lists/", {"local_part": "ann", "domain": "alpha.test"}, follow_redirects=True))
    assert "ann@alpha.test is already taken" in page
    web.post(f"/admin/lists/{dl.id}/members/{ann}/remove/")
    assert _members(store, dl.id) == {bob}
    asked = web.post(f"/admin/lists/{dl.id}/delete/")
    assert asked.status_code == 200 and "Delete the list team@alpha.test?" in text_of(asked)
    assert _list(store, "team@alpha.test") is not None
    page = text_of(web.post(f"/admin/lists/{dl.id}/delete/", {"confirm": "yes"}, follow_redirects=True))
    assert "Deleted the list team@alpha.test." in page and _list(store, "team@alpha.test") is None


def test_list_forms_need_the_csrf_token_and_another_tenants_list_is_404(web, world, store):
    owner, other = world.owner(), world.owner()
    world.inbox(owner, "ann@alpha.test")
    theirs = world.inbox(other, "eve@beta.test")
    web.sign_in(owner.email)
    assert web.post("/admin/lists/", {"local_part": "team", "domain": "alpha.test"}, csrf=False).status_code == 400
    assert _list(store, "team@alpha.test") is None
    web.post("/admin/lists/", {"local_part": "team", "domain": "alpha.test"})
    dl = _list(store, "team@alpha.test")
    page = text_of(web.post(f"/admin/lists/{dl.id}/members/", {"inbox_id": theirs}, follow_redirects=True))
    assert "inbox_id is not an inbox of your tenant" in page and _members(store, dl.id) == set()
    web_other = web.__class__(web.client.application.test_client())
    web_other.sign_in(other.email)
    assert web_other.post(f"/admin/lists/{dl.id}/delete/", {"confirm": "yes"}).status_code == 404
    assert web_other.post(f"/admin/lists/{dl.id}/members/", {"inbox_id": theirs}).status_code in (303, 404)
    assert _members(store, dl.id) == set() and _list(store, "team@alpha.test") is not None
    assert "team@alpha.test" not in text_of(web_other.get("/admin/lists/"))


def test_a_member_sees_exactly_the_inboxes_an_owner_grants_in_the_web_ui(web, web_for, world, store):
    owner = world.owner()
    sales, ops = world.inbox(owner, "sales@alpha.test"), world.inbox(owner, "ops@alpha.test")
    deliver(world, sales, build_mail(subject="For sales", to="sales@alpha.test"))
    deliver(world, ops, build_mail(subject="For ops", to="ops@alpha.test"))
    member = world.member(owner)
    web.sign_in(owner.email)
    assert f"/admin/inboxes/{sales}/members/" in text_of(web.get("/admin/inboxes/"))
    page = text_of(web.get(f"/admin/inboxes/{sales}/members/"))
    assert member.email in page and "checked" not in page
    assert web.post(f"/admin/inboxes/{sales}/members/", {"user_id": member.user_id}, csrf=False).status_code == 400
    page = text_of(web.post(f"/admin/inboxes/{sales}/members/", {"user_id": member.user_id}, follow_redirects=True))
    assert "1 member(s) may use this inbox now." in page and "checked" in page

    seen = web_for()
    seen.sign_in(member.email)
    assert seen.get("/admin/inboxes/").status_code == 403  # granting is for owners and admins
    assert seen.get(f"/admin/inboxes/{sales}/members/").status_code == 403
    mail = seen.get("/admin/mail/", follow_redirects=True)  # one inbox: straight to it
    assert mail.status_code == 200 and "For sales" in text_of(mail) and "For ops" not in text_of(mail)
    assert seen.get(f"/admin/mail/{ops}/").status_code == 404
    # The grant taken away (no box ticked): the member sees none.
    web.post(f"/admin/inboxes/{sales}/members/", {})
    assert seen.get(f"/admin/mail/{sales}/").status_code == 404
    assert "sales@alpha.test" not in text_of(seen.get("/admin/mail/"))
