"""Fixes from a review of the web UI (issue 6): NUL characters, owners' lockouts, client addresses
behind the proxy, and one TOTP code used by concurrent sign-ins."""
from __future__ import annotations

import threading
import time

import pyotp
import pytest
from sqlalchemy import select

from appliance.models import User
from appliance.services.identity import totp
from tests.webui.conftest import text_of
from tests.webui.test_totp import enrol
from tests.world import PASSWORD

NUL_GETS = ["/admin/mail/{inbox}/?q=%00", "/admin/mail/%00/", "/admin/mail/{inbox}/messages/%00/",
            "/admin/events/?before=%00", "/admin/approvals/?cursor=0.apr_%00", "/admin/approvals/%00/",
            "/admin/approvals/%00/body/", "/admin/domains/%00/"]
NUL_POSTS = ["/admin/queue/%00/retry/", "/admin/tokens/%00/pause/", "/admin/inboxes/%00/resume/",
             "/admin/users/%00/enable/", "/admin/users/%00/role/", "/admin/approvals/%00/approve/"]


def test_nul_anywhere_is_a_clear_400_page_not_a_500(web, world, owner):
    """PostgreSQL cannot compare text with NUL: before the check each of these was a 500 there."""
    inbox = world.inbox(owner)
    web.sign_in(owner.email)
    for path in NUL_GETS:
        resp = web.get(path.format(inbox=inbox))
        assert resp.status_code == 400, (path, resp.status_code)
        assert resp.mimetype == "text/html" and "NUL" in text_of(resp)
    for path in NUL_POSTS:
        resp = web.post(path, {"confirm": "yes", "role": "admin"})
        assert resp.status_code == 400, (path, resp.status_code)
    resp = web.post("/admin/tokens/", {"inbox_id": "\x00", "label": "x", "scopes": "email:read"})
    assert resp.status_code == 400
    # An approvals cursor must be one the list gave out, whatever the backend.
    resp = web.get("/admin/approvals/?cursor=0.apr_' OR 1=1")
    assert resp.status_code == 400


def test_an_admin_cannot_re_enable_an_owner_whom_an_owner_disabled(web_for, world, owner, store):
    co_owner, admin = world.member(owner, role="owner"), world.member(owner, role="admin")
    by_owner, by_admin = web_for(), web_for()
    by_owner.sign_in(owner.email)
    by_owner.post(f"/admin/users/{co_owner.user_id}/disable/", {"confirm": "yes"})
    with store.session() as db:
        assert db.get(User, co_owner.user_id).status == "disabled"

    by_admin.sign_in(admin.email)
    page = by_admin.post(f"/admin/users/{co_owner.user_id}/enable/", {"confirm": "yes"}, follow_redirects=True)
    assert "Only an owner may disable or re-enable an owner." in text_of(page)
    with store.session() as db:
        assert db.get(User, co_owner.user_id).status == "disabled"
    by_owner.post(f"/admin/users/{co_owner.user_id}/enable/", {"confirm": "yes"})
    with store.session() as db:
        assert db.get(User, co_owner.user_id).status == "active"


@pytest.mark.parametrize("hops", [0, 1])
def test_failed_sign_ins_count_against_the_real_client_behind_the_proxy(make_settings, make_app, world_for, hops):
    """Behind nginx every request comes from 127.0.0.1. With GENTBOX_PROXY_HOPS=1 one noisy client
    no longer locks everyone out; with 0 the header is ignored (a client cannot pick its address)."""
    settings = make_settings(login_failures_ip=3, proxy_hops=hops)
    app = make_app(settings)
    client = app.test_client()
    victim = world_for(client).owner()
    attacker = {"X-Forwarded-For": "203.0.113.66"}
    for n in range(3):
        resp = client.post("/auth/login/", json={"email": f"nobody{n}@example.com", "password": "wrong-password"},
                           headers=attacker)
        assert resp.status_code == 401
    resp = client.post("/auth/login/", json={"email": victim.email, "password": PASSWORD},
                       headers={"X-Forwarded-For": "198.51.100.7"})
    assert resp.status_code == (200 if hops else 429)
    resp = client.post("/auth/login/", json={"email": victim.email, "password": PASSWORD}, headers=attacker)
    assert resp.status_code == 429


def test_one_code_signs_in_once_even_when_sent_concurrently(web_for, world, operator, store, settings):
    """Two sign-ins carry the same code at once: the first has checked it but not yet committed
    when the second checks it. Only one may pass (before the fix both did: each read the old step)."""
    web = web_for()
    web.sign_in(operator)
    secret, _ = enrol(web)
    with store.session() as db:
        user_id = db.scalar(select(User.id).where(User.email == operator))
    code = pyotp.TOTP(secret).at(time.time() + 30)  # the next step's code: unused so far
    second: list[str] = []

    def other_sign_in() -> None:
        try:
            with store.session() as db, store.counter_sessions() as counters:
                totp.check_code(db, counters, settings, user_id, code)
                counters.commit()
            second.append("ok")
        except Exception as exc:  # noqa: BLE001 - the refusal is the point
            second.append(type(exc).__name__)

    with store.session() as first, store.counter_sessions() as counters:
        totp.check_code(first, counters, settings, user_id, code)  # passes; its transaction stays open
        thread = threading.Thread(target=other_sign_in)
        thread.start()
        thread.join(timeout=1.0)  # the other waits for the row (or, before the fix, passes at once)
    thread.join()
    assert second == ["ValidationError"], second


def test_turning_totp_on_ends_the_other_sessions(web_for, world, operator, store, client):
    """A session begun with the password alone (API tokens, another browser) ends when the second
    factor is turned on; the browser that turned it on stays signed in."""
    api = client.post("/auth/login/", json={"email": operator, "password": PASSWORD}).get_json()
    other_browser = web_for()
    other_browser.sign_in(operator)
    assert other_browser.get("/admin/account/").status_code == 200
    web = web_for()
    web.sign_in(operator)
    enrol(web)
    assert client.get("/v1/users/me/", headers={"Authorization": f"Bearer {api['access_token']}"}).status_code == 401
    assert client.post("/auth/refresh/", json={"refresh_token": api["refresh_token"]}).status_code == 401
    assert other_browser.get("/admin/account/").status_code == 302  # back to sign-in
    assert web.get("/admin/account/").status_code == 200
