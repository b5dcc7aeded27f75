"""Signing in and out in a real browser against the app on a loopback port."""
from __future__ import annotations

from tests.browser.conftest import make_operator, sign_in, sign_in_operator, sign_in_owner
from tests.world import PASSWORD


def test_an_operator_signs_in_and_sees_the_admin_layout(live_server, browser_page):
    page = browser_page
    email = make_operator(live_server)

    page.goto("/admin/account/")  # not signed in: sent to the sign-in page, with the way back
    assert page.url.startswith(live_server.url("/login/?next="))
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_role("alert").inner_text().startswith("The email or password is incorrect.")

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Account").wait_for()
    assert page.url == live_server.url("/admin/account/")
    assert page.get_by_role("navigation", name="Main").get_by_role("link", name="Account").is_visible()
    assert page.get_by_text("operator", exact=True).is_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "gentbox_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]  # plain http here

    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Signed out").wait_for()
    page.goto("/admin/account/")
    assert page.url.startswith(live_server.url("/login/"))


def test_sign_in_helpers(live_server, browser_page, new_page):
    sign_in(browser_page, make_operator(live_server))
    assert browser_page.url.startswith(live_server.url("/admin/"))
    operator = new_page()
    assert sign_in_operator(operator, live_server) == "operator@gentbox.test"  # the same operator
    owner_page = new_page()
    owner = sign_in_owner(owner_page, live_server)
    owner_page.goto("/admin/account/")
    assert owner_page.get_by_text(owner.email).first.is_visible()
    assert not owner_page.get_by_role("link", name="Waitlist").count()  # operators only
