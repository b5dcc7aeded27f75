"""The users page (roles, disable) for a tenant's owners and admins, and the operators' tenants list."""
from __future__ import annotations

from sqlalchemy import select

from appliance.models import User, UserSession
from appliance.services.identity.auth import authenticate
from tests.webui.conftest import text_of


def _user(store, email: str) -> User:
    with store.session() as db:
        return db.scalar(select(User).where(User.email == email))


def test_an_owner_sees_and_manages_the_tenants_users_only(web, world, store):
    owner = world.owner()
    member = world.member(owner)
    stranger = world.owner()
    web.sign_in(owner.email)
    page = text_of(web.get("/admin/users/"))
    assert owner.email in page and member.email in page and stranger.email not in page
    resp = web.post(f"/admin/users/{member.user_id}/role/", {"role": "admin"}, follow_redirects=True)
    assert f"{member.email} is now admin." in text_of(resp)
    assert _user(store, member.email).role == "admin"
    resp = web.post(f"/admin/users/{stranger.user_id}/role/", {"role": "member"}, follow_redirects=True)
    assert "No such user." in text_of(resp)
    assert _user(store, stranger.email).role == "owner"
    resp = web.post(f"/admin/users/{owner.user_id}/role/", {"role": "member"}, follow_redirects=True)
    assert "You cannot change your own role or status here." in text_of(resp)
    resp = web.post(f"/admin/users/{member.user_id}/role/", {"role": "emperor"}, follow_redirects=True)
    assert "role must be one of owner, admin, member" in text_of(resp)


def test_disabling_asks_first_and_ends_every_session_at_once(web_for, world, store):
    owner = world.owner()
    member = world.member(owner)  # logged in through the API
    member_web = web_for()
    member_web.sign_in(member.email)
    web = web_for()
    web.sign_in(owner.email)
    resp = web.post(f"/admin/users/{member.user_id}/disable/")
    assert resp.status_code == 200 and f"Disable {member.email}?" in text_of(resp)
    assert _user(store, member.email).status == "active"
    resp = web.post(f"/admin/users/{member.user_id}/disable/", {"confirm": "yes"}, follow_redirects=True)
    assert f"{member.email} is disabled." in text_of(resp)
    assert member_web.get("/admin/account/").status_code == 302
    with store.session() as db:
        assert db.scalars(select(UserSession.revoked_at).where(UserSession.user_id == member.user_id)).all()
        assert all(db.scalars(select(UserSession.revoked_at).where(UserSession.user_id == member.user_id)))
        try:
            authenticate(db, member.access_token)
            raise AssertionError("the API session survived")
        except Exception as exc:  # noqa: BLE001
            assert "ended" in str(exc) or "disabled" in str(exc)
    assert member_web.post("/login/", {"email": member.email, "password": "correct horse battery staple"}).status_code == 401
    resp = web.post(f"/admin/users/{member.user_id}/enable/", follow_redirects=True)
    assert f"{member.email} is enabled again." in text_of(resp)
    member_web.sign_in(member.email)


def test_an_admin_cannot_touch_ownership_and_the_last_owner_stays(web_for, world, store):
    owner = world.owner()
    admin = world.member(owner, role="admin")
    web = web_for()
    web.sign_in(admin.email)
    resp = web.post(f"/admin/users/{owner.user_id}/role/", {"role": "member"}, follow_redirects=True)
    assert "Only an owner may grant or take ownership." in text_of(resp)
    resp = web.post(f"/admin/users/{owner.user_id}/disable/", {"confirm": "yes"}, follow_redirects=True)
    assert "Only an owner may disable or re-enable an owner." in text_of(resp)
    assert _user(store, owner.email).status == "active"


def test_operators_see_every_tenant_and_every_user(web, world, operator):
    first, second = world.owner(), world.owner()
    world.inbox(first)
    web.sign_in(operator)
    page = text_of(web.get("/admin/tenants/"))
    assert first.email in page and second.email in page and first.tenant_id in page
    mine = text_of(web.get("/admin/users/"))
    assert operator in mine and first.email not in mine
    everyone = text_of(web.get("/admin/users/?scope=all"))
    assert first.email in everyone and second.email in everyone
    # An operator acts across tenants (disabling an abusive account).
    member = world.member(first)
    resp = web.post(f"/admin/users/{member.user_id}/disable/", {"confirm": "yes", "next": "/admin/users/?scope=all"},
                    follow_redirects=True)
    assert f"{member.email} is disabled." in text_of(resp)


def test_pages_show_empty_states(web, operator):
    web.sign_in(operator)
    assert "No pending requests." in text_of(web.get("/admin/waitlist/"))
    assert "No approved requests." in text_of(web.get("/admin/waitlist/?status=approved"))
