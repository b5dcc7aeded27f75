"""Security in a real browser: sign-out ends the server-side session (the old cookie is refused),
forms without the CSRF token are refused, the CSP blocks inline scripts, TOTP enrolment and
sign-in, and destructive actions ask first (a <dialog>, or a page without JavaScript)."""
from __future__ import annotations

import time

import pyotp
import pytest

from appliance.services.identity import waitlist
from tests.browser.conftest import make_operator, sign_in
from tests.world import PASSWORD


def test_after_sign_out_the_old_cookie_is_refused(live_server, new_page):
    page = new_page()
    sign_in(page, make_operator(live_server))
    old_cookies = page.context.cookies()
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Signed out").wait_for()

    replay = new_page()
    replay.context.add_cookies(old_cookies)
    replay.goto("/admin/account/")
    assert replay.url.startswith(live_server.url("/login/"))
    replay.get_by_role("heading", name="Sign in").wait_for()


def test_a_post_without_the_csrf_token_is_refused(live_server, new_page):
    page = new_page()
    sign_in(page, make_operator(live_server))
    with live_server.store.session() as db:
        waitlist.request_access(db, "applicant@example.com")
    # The browser's own cookies, a form post from outside the page: no token.
    resp = page.request.post(live_server.url("/admin/waitlist/approve/"), form={"email": "applicant@example.com"})
    assert resp.status == 400 and "form expired or was not sent from this site" in resp.text()
    page.goto("/admin/waitlist/")
    assert page.get_by_role("row").filter(has_text="applicant@example.com").is_visible()


def test_security_headers_and_the_csp_blocks_inline_scripts(live_server, new_page):
    page = new_page()
    resp = page.goto("/login/")
    headers = resp.headers
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-frame-options"] == "DENY" and headers["x-content-type-options"] == "nosniff"
    with pytest.raises(Exception):
        page.add_script_tag(content="window.injected = 1")  # what an injected <script> would do
    assert page.evaluate("typeof window.injected") == "undefined"
    assert page.evaluate("getComputedStyle(document.body).fontFamily") != ""  # the stylesheet applies


def test_totp_enrolment_then_sign_in_with_a_code(live_server, new_page):
    page = new_page()
    email = make_operator(live_server)
    sign_in(page, email)
    page.goto("/admin/account/")
    page.get_by_role("link", name="Set up two-factor sign-in").click()
    page.get_by_role("button", name="Start").click()
    qr = page.get_by_role("img", name=f"QR code holding the two-factor key for {email}")
    qr.wait_for()
    assert qr.evaluate("img => img.complete && img.naturalWidth > 0")
    secret = page.locator("#totp-secret").inner_text()
    used = pyotp.TOTP(secret).now()
    page.get_by_label("Code").fill(used)
    page.get_by_role("button", name="Turn on").click()
    page.get_by_text("Two-factor sign-in is on.").wait_for()
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Signed out").wait_for()

    page.goto("/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Enter your code").wait_for()
    page.goto("/admin/account/")  # the password alone grants nothing
    assert page.url.startswith(live_server.url("/login/"))
    page.goto("/login/code/")
    page.get_by_label("Code").fill(used)  # already used for the enrolment: refused
    page.get_by_role("button", name="Verify").click()
    page.get_by_role("alert").filter(has_text="The code is not correct.").wait_for()
    page.get_by_label("Code").fill(pyotp.TOTP(secret).at(time.time() + 30))
    page.get_by_role("button", name="Verify").click()
    page.get_by_role("button", name="Sign out").wait_for()


@pytest.mark.parametrize("javascript", [True, False], ids=["dialog", "no-js"])
def test_rejecting_asks_for_confirmation(live_server, new_page, javascript):
    with live_server.store.session() as db:
        waitlist.request_access(db, "applicant@example.com")
    page = new_page(java_script_enabled=javascript)
    sign_in(page, make_operator(live_server))
    page.goto("/admin/waitlist/")
    page.get_by_role("row").filter(has_text="applicant@example.com").get_by_role("button", name="Reject").click()
    if javascript:
        dialog = page.get_by_role("dialog")
        dialog.get_by_text("Reject the request of applicant@example.com?").wait_for()
        dialog.get_by_role("button", name="Yes, continue").click()
    else:
        page.get_by_role("heading", name="Please confirm").wait_for()
        page.get_by_role("button", name="Reject").click()
    page.get_by_text("Rejected applicant@example.com.").wait_for()
