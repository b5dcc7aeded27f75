"""The optional TOTP second factor: enrolment with a server-made QR code, then required at sign-in."""
from __future__ import annotations

import base64
import re
import time
import urllib.parse

import pyotp
from sqlalchemy import select

from appliance.models import UserSession, UserTotp
from tests.webui.conftest import text_of
from tests.helpers import where_stored


def _code(secret: str, steps_ahead: int = 0) -> str:
    return pyotp.TOTP(secret).at(time.time() + 30 * steps_ahead)


def enrol(web) -> tuple[str, str]:  # noqa: ANN001
    """Start and confirm an enrolment through the pages; returns the secret the page showed and
    the code that confirmed it (used up: sign-ins take the next step's code)."""
    page = web.get("/admin/account/totp/")
    assert "Start" in text_of(page)
    assert web.post("/admin/account/totp/start/").status_code == 303
    page = text_of(web.get("/admin/account/totp/"))
    secret = re.search(r'id="totp-secret">([A-Z2-7]+)<', page).group(1)
    qr = re.search(r'<img class="qr" src="(data:image/svg\+xml[^"]+)"', page).group(1)
    svg = urllib.parse.unquote(qr.split(",", 1)[1]) if ";base64" not in qr else base64.b64decode(qr.split(",", 1)[1]).decode()
    assert svg.lstrip().startswith(("<?xml", "<svg")) and "<path" in svg
    used = _code(secret)
    resp = web.post("/admin/account/totp/confirm/", {"code": used}, follow_redirects=True)
    assert "Two-factor sign-in is on" in text_of(resp)
    return secret, used


def test_enrolment_then_sign_in_needs_a_code(web_for, world, operator, store):
    web = web_for()
    web.sign_in(operator)
    secret, _ = enrol(web)
    assert where_stored(store, secret) == set()  # sealed with the appliance key, never in clear
    web.post("/logout/")

    visitor = web_for()
    resp = visitor.post("/login/", {"email": operator, "password": "correct horse battery staple",
                                    "next": "/admin/account/"})
    assert resp.status_code == 303 and resp.headers["Location"].startswith("/login/code/")
    # The password alone grants nothing yet.
    assert visitor.get("/admin/account/").status_code == 302
    with store.session() as db:
        pending = db.scalars(select(UserSession).where(UserSession.kind == "web-2fa")).all()
    assert len(pending) == 1
    wrong = next(c for c in ("000000", "111111", "222222") if c not in {_code(secret, k) for k in (-1, 0, 1, 2)})
    resp = visitor.post("/login/code/", {"code": wrong,
                                         "next": "/admin/account/"})
    assert resp.status_code == 400 and "The code is not correct." in text_of(resp)
    before = visitor.cookie()
    resp = visitor.post("/login/code/", {"code": _code(secret, 1), "next": "/admin/account/"})
    assert resp.status_code == 303 and resp.headers["Location"] == "/admin/account/"
    assert visitor.cookie() != before
    assert "Two-factor sign-in" in text_of(visitor.get("/admin/account/"))
    with store.session() as db:
        assert db.scalars(select(UserSession.kind).where(UserSession.revoked_at.is_(None))).all().count("web") == 1


def test_a_code_works_once(web_for, world, operator, store):
    web = web_for()
    web.sign_in(operator)
    secret, used = enrol(web)
    web.post("/logout/")
    visitor = web_for()
    visitor.post("/login/", {"email": operator, "password": "correct horse battery staple"})
    resp = visitor.post("/login/code/", {"code": used})
    assert resp.status_code == 400  # the enrolment's code again: refused
    resp = visitor.post("/login/code/", {"code": _code(secret, 1)})  # the next step's code (drift allowed)
    assert resp.status_code == 303


def test_wrong_codes_are_throttled(web_for, world, operator, store):
    web = web_for()
    web.sign_in(operator)
    secret, _ = enrol(web)
    web.post("/logout/")
    visitor = web_for()
    visitor.post("/login/", {"email": operator, "password": "correct horse battery staple"})
    wrong = next(c for c in ("123456", "654321", "111111") if c not in {_code(secret, k) for k in (-1, 0, 1, 2)})
    for _ in range(10):
        assert visitor.post("/login/code/", {"code": wrong}).status_code == 400
    resp = visitor.post("/login/code/", {"code": _code(secret, 1)})
    assert resp.status_code == 429 and "Too many wrong codes" in text_of(resp)


def test_turning_it_off_needs_a_code_and_a_confirmation(web, operator, store):
    web.sign_in(operator)
    secret, _ = enrol(web)
    resp = web.post("/admin/account/totp/disable/", {"code": _code(secret, 1)})
    assert resp.status_code == 200 and "Please confirm" in text_of(resp)  # the confirmation page
    with store.session() as db:
        assert db.get(UserTotp, db.scalar(select(UserTotp.user_id))).enabled_at is not None
    resp = web.post("/admin/account/totp/disable/", {"code": _code(secret, 1), "confirm": "yes"},
                    follow_redirects=True)
    assert "Two-factor sign-in is off." in text_of(resp)
    with store.session() as db:
        assert db.scalar(select(UserTotp.user_id)) is None


def test_the_api_login_needs_the_code_too(web_for, world, operator, store, client):
    """Turning the second factor on in the web UI protects POST /auth/login/ as well: the password
    alone issues no session; a wrong or replayed code is refused; the current code works once."""
    web = web_for()
    web.sign_in(operator)
    secret, used = enrol(web)
    login = {"email": operator, "password": "correct horse battery staple"}
    with store.session() as db:
        before = db.scalars(select(UserSession.id)).all()

    resp = client.post("/auth/login/", json=login)
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "otp_required"
    resp = client.post("/auth/login/", json={**login, "otp": used})  # the enrolment's code: used up
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "otp_invalid"
    assert resp.get_json()["error"]["field"] == "otp"
    with store.session() as db:
        assert db.scalars(select(UserSession.id)).all() == before  # nothing issued by the failures

    code = _code(secret, 1)
    resp = client.post("/auth/login/", json={**login, "otp": code})
    assert resp.status_code == 200, resp.get_json()
    token = resp.get_json()["access_token"]
    me = client.get("/v1/users/me/", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.get_json()["email"] == operator
    resp = client.post("/auth/login/", json={**login, "otp": code})  # the same step again: replay
    assert resp.status_code == 401 and resp.get_json()["error"]["code"] == "otp_invalid"
