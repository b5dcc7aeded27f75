"""Web sign-ins: server-side sessions, revocation, throttling, CSRF and the security headers."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from appliance.models import UserSession
from appliance.services.identity.auth import authenticate
from tests.webui.conftest import WebClient, text_of
from tests.world import PASSWORD


def _web_sessions(store, user_email: str) -> list[UserSession]:
    from appliance.models import User
    with store.session() as db:
        user_id = db.scalar(select(User.id).where(User.email == user_email))
        return list(db.scalars(select(UserSession).where(UserSession.user_id == user_id,
                                                         UserSession.kind == "web")))


def test_sign_in_starts_a_server_side_session_and_a_new_cookie(web, store, owner):
    web.get("/login/")
    before = web.cookie()
    assert _web_sessions(store, owner.email) == []
    resp = web.sign_in(owner.email)
    assert resp.headers["Location"] == "/admin/"
    after = web.cookie()
    assert after and after != before
    set_cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Lax" in set_cookie and "Secure" not in set_cookie
    [session] = _web_sessions(store, owner.email)
    assert session.revoked_at is None and session.client_ip
    page = web.get("/admin/account/")
    assert page.status_code == 200 and owner.email in text_of(page)


def test_cookies_are_secure_behind_https(make_settings, make_app, world_for):
    app = make_app(make_settings(public_url="https://mail.example.com"))
    web = WebClient(app.test_client())
    resp = web.get("/login/", base_url="https://mail.example.com")
    assert "Secure" in resp.headers["Set-Cookie"]


def test_the_web_secret_is_not_an_api_token(web, store, owner, client):
    web.sign_in(owner.email)
    # The cookie is signed, not encrypted: its secret is visible to the browser. It is no bearer token.
    import base64
    import json
    import zlib
    raw = web.cookie().lstrip(".").split(".")[0]
    payload = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    data = json.loads(zlib.decompress(payload) if web.cookie().startswith(".") else payload)
    secret = data["_user_id"]
    assert secret.startswith("gsw_")
    resp = client.get("/v1/users/me/", headers={"Authorization": f"Bearer {secret}"})
    assert resp.status_code == 401


def test_logout_revokes_the_session_and_the_old_cookie_stops_working(web, store, owner):
    web.sign_in(owner.email)
    old = web.cookie()
    assert web.get("/admin/account/").status_code == 200
    resp = web.post("/logout/")
    assert resp.status_code == 200 and "Signed out" in text_of(resp)
    [session] = _web_sessions(store, owner.email)
    assert session.revoked_at is not None
    web.set_cookie(old)  # replaying the cookie from before the sign-out
    resp = web.get("/admin/account/")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/login/")


def test_a_second_app_on_the_same_store_sees_the_same_sessions(web, make_app, settings, owner):
    """Two gunicorn workers: sessions live in the store, not in one process's memory."""
    web.sign_in(owner.email)
    cookie = web.cookie()
    other = WebClient(make_app(settings).test_client())
    other.set_cookie(cookie)
    assert other.get("/admin/account/").status_code == 200
    web.post("/logout/")
    assert other.get("/admin/account/").status_code == 302


def test_changing_the_password_ends_every_other_session(web_for, world, store, owner):
    here, elsewhere = web_for(), web_for()
    here.sign_in(owner.email)
    elsewhere.sign_in(owner.email)
    api = world.login(owner.email)
    new_password = "a different long passphrase"
    resp = here.post("/admin/account/password/", {"current_password": PASSWORD, "new_password": new_password,
                                                   "new_password_again": new_password})
    assert resp.status_code == 303
    assert "Password changed" in text_of(here.get("/admin/account/"))
    assert elsewhere.get("/admin/account/").status_code == 302
    with store.session() as db:
        with pytest.raises(Exception, match="ended"):
            authenticate(db, api.access_token)
    fresh = web_for()
    assert fresh.post("/login/", {"email": owner.email, "password": PASSWORD}).status_code == 401
    fresh.sign_in(owner.email, new_password)


def test_a_wrong_current_password_is_flashed_from_the_typed_error(web, owner):
    web.sign_in(owner.email)
    resp = web.post("/admin/account/password/", {"current_password": "wrong", "new_password": "x" * 12,
                                                  "new_password_again": "x" * 12}, follow_redirects=True)
    assert "current_password is not correct" in text_of(resp)
    resp = web.post("/admin/account/password/", {"current_password": PASSWORD, "new_password": "password",
                                                  "new_password_again": "password"}, follow_redirects=True)
    assert "new_password must be 8 to 128 characters" in text_of(resp) or "too common" in text_of(resp)


def test_failed_sign_ins_are_throttled_like_the_api(make_settings, make_app, world_for):
    app = make_app(make_settings(login_failures_account=3))
    world = world_for(app.test_client())
    owner = world.owner()
    web = WebClient(app.test_client())
    for _ in range(3):
        resp = web.post("/login/", {"email": owner.email, "password": "wrong"})
        assert resp.status_code == 401 and "incorrect" in text_of(resp)
    resp = web.post("/login/", {"email": owner.email, "password": PASSWORD})
    assert resp.status_code == 429 and "Too many failed logins" in text_of(resp)
    assert int(resp.headers["Retry-After"]) > 0
    # The same counters as POST /auth/login/: the API refuses too.
    api = app.test_client().post("/auth/login/", json={"email": owner.email, "password": PASSWORD})
    assert api.status_code == 429


def test_a_form_post_without_the_csrf_token_is_refused(web, world, operator):
    web.sign_in(operator)
    with world.store.session() as db:
        from appliance.services.identity import waitlist
        waitlist.request_access(db, "applicant@example.com")
    resp = web.post("/admin/waitlist/approve/", {"email": "applicant@example.com"}, csrf=False)
    assert resp.status_code == 400 and resp.mimetype == "text/html"
    assert "form expired or was not sent from this site" in text_of(resp)
    resp = web.post("/admin/waitlist/approve/", {"email": "applicant@example.com", "csrf_token": "forged"}, csrf=False)
    assert resp.status_code == 400
    assert "No approved requests" in text_of(web.get("/admin/waitlist/?status=approved"))
    assert web.post("/logout/", csrf=False).status_code == 400  # not even a sign-out
    assert web.get("/admin/account/").status_code == 200


def test_the_api_takes_no_csrf_token(client):
    assert client.post("/v1/waitlist/", json={"email": "x@example.com"}).status_code == 202


@pytest.mark.parametrize("path", ["/login/", "/waitlist/", "/signup/?email=a@example.com&signup_token=x",
                                  "/admin/account/", "/admin/no-such-page/", "/logout/"])
def test_web_pages_carry_the_security_headers(web, owner, path):
    web.sign_in(owner.email)
    resp = web.get(path)
    assert resp.mimetype == "text/html"
    csp = dict(part.strip().split(" ", 1) for part in resp.headers["Content-Security-Policy"].split(";"))
    assert csp["script-src"] == "'self'" and csp["style-src"] == "'self'"
    assert "'unsafe-inline'" not in resp.headers["Content-Security-Policy"]
    assert csp["frame-ancestors"] == "'none'" and csp["object-src"] == "'none'"
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script>" not in text_of(resp) and "style=" not in text_of(resp)


def test_errors_are_html_on_web_paths_and_json_on_the_api(web, client):
    resp = web.get("/admin/no-such-page/")
    assert resp.status_code == 404 and resp.mimetype == "text/html" and "There is no page here." in text_of(resp)
    resp = web.client.delete("/login/")
    assert resp.status_code == 405 and resp.mimetype == "text/html"
    resp = client.get("/v1/no-such-page/")
    assert resp.status_code == 404 and resp.mimetype == "application/json"
    assert resp.get_json()["error"]["code"] == "not_found"
    assert "Content-Security-Policy" not in resp.headers


def test_next_only_leads_to_this_site(web, owner):
    resp = web.post("/login/", {"email": owner.email, "password": PASSWORD, "next": "//evil.example/x"})
    assert resp.status_code == 303 and resp.headers["Location"] == "/admin/"
    web.post("/logout/")
    resp = web.post("/login/", {"email": owner.email, "password": PASSWORD, "next": "/admin/account/"})
    assert resp.headers["Location"] == "/admin/account/"


def test_a_web_session_ends_after_its_lifetime(make_settings, make_app, world_for):
    import datetime as dt

    from appliance import clock
    app = make_app(make_settings(web_session_ttl=600))
    world = world_for(app.test_client())
    owner = world.owner()
    web = WebClient(app.test_client())
    web.sign_in(owner.email)
    clock.advance(dt.timedelta(seconds=590))
    assert web.get("/admin/account/").status_code == 200
    clock.advance(dt.timedelta(seconds=20))
    resp = web.get("/admin/account/")
    assert resp.status_code == 302 and resp.headers["Location"].startswith("/login/")


def test_safe_next_refuses_every_way_off_the_site():
    from webui.auth import safe_next
    for target in ("//evil.example/", "/\\evil.example", "\\\\evil.example", "/\t/evil.example", "/\n/evil.example",
                   "https://evil.example/", "evil.example", "", None, "/\x00/x"):
        assert safe_next(target) is None, target
    assert safe_next("/admin/waitlist/?status=approved") == "/admin/waitlist/?status=approved"
