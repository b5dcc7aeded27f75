"""Issue 14, point 7 in the web UI: the sign-in page shares the API's growing delay (no lockout),
and a wrong current password on the account page counts like a failed sign-in."""
from __future__ import annotations

import datetime as dt

from appliance import clock
from tests.webui.conftest import text_of
from tests.world import PASSWORD


def test_the_sign_in_page_waits_out_the_delay_then_lets_the_owner_in(web, world, owner, settings):
    for n in range(settings.login_failures_account):
        resp = web.post("/login/", {"email": owner.email, "password": f"wrong {n}"},
                        environ_base={"REMOTE_ADDR": f"198.51.100.{n + 1}"})
        assert resp.status_code == 401
    resp = web.post("/login/", {"email": owner.email, "password": PASSWORD})
    assert resp.status_code == 429 and "Too many failed logins" in text_of(resp)
    clock.advance(dt.timedelta(seconds=int(resp.headers["Retry-After"])))
    web.sign_in(owner.email)  # 303 to the app: the owner is not locked out


def test_wrong_current_passwords_on_the_account_page_count_like_failed_sign_ins(web, world, owner, settings):
    web.sign_in(owner.email)
    form = {"current_password": "not mine", "new_password": "a brand new passphrase",
            "new_password_again": "a brand new passphrase"}
    for _ in range(settings.login_failures_account):
        page = web.post("/admin/account/password/", form, follow_redirects=True)
        assert "current_password is not correct" in text_of(page)
    page = web.post("/admin/account/password/", {**form, "current_password": PASSWORD}, follow_redirects=True)
    assert "Too many failed logins" in text_of(page) and "Retry after" in text_of(page)
    api = web.client.post("/auth/login/", json={"email": owner.email, "password": PASSWORD},
                          environ_base={"REMOTE_ADDR": "192.0.2.44"})
    assert api.status_code == 429
