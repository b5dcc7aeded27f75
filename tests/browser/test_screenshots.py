"""Screenshots of the account and waitlist pages at desktop and phone widths (docs/screenshots/),
and the layout check behind them: no page scrolls sideways on a 375-pixel-wide phone."""
from __future__ import annotations

from appliance.services.identity import waitlist
from tests.browser.conftest import make_operator, sign_in

PAGES = {
    "sign-in": "/login/", "waitlist-request": "/waitlist/", "signup-invalid-link": "/signup/?email=a%40example.com&signup_token=x",
    "account": "/admin/account/", "two-factor": "/admin/account/totp/", "waitlist": "/admin/waitlist/",
    "waitlist-approved": "/admin/waitlist/?status=approved", "users": "/admin/users/?scope=all",
    "tenants": "/admin/tenants/",
}


def test_pages_fit_a_phone_and_are_photographed(live_server, new_page, screenshot):
    with live_server.store.session() as db:
        for address in ("ada@example.com", "bob@example.org", "carol.long.address@subdomain.example.net"):
            waitlist.request_access(db, address)
        waitlist.approve(db, live_server.settings, "bob@example.org", decided_by="operator@gentbox.test")
    live_server.world.owner("owner@team.example")
    operator = make_operator(live_server)
    signed_out = new_page()
    page = new_page()
    sign_in(page, operator)
    page.goto("/admin/account/totp/")
    page.get_by_role("button", name="Start").click()  # the enrolment page with its QR code
    for name, path in PAGES.items():
        visitor = signed_out if path.startswith(("/login/", "/waitlist/", "/signup/")) else page
        visitor.set_viewport_size({"width": 375, "height": 740})
        visitor.goto(path)
        overflow = visitor.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{path} is {overflow}px wider than a 375px phone"
        screenshot(visitor, name)
