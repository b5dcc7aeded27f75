"""Browser scenario 1 (issue 6): a visitor asks for access on the waitlist page; the operator signs
in and approves; the sign-up email is found in the outbound store; the visitor opens its link,
signs up, and signs in through the API."""
from __future__ import annotations

import email
import email.policy
import re

import requests
from sqlalchemy import select

from appliance.models import SystemMail
from tests.browser.conftest import make_operator, sign_in

VISITOR = "visitor@example.com"
PASSWORD = "a long and unusual passphrase"


def _signup_link(store, address: str) -> str:
    with store.session() as db:
        [mail] = db.scalars(select(SystemMail).where(SystemMail.rcpt_to == address,
                                                     SystemMail.kind == "signup_link")).all()
        assert mail.status == "queued"
    msg = email.message_from_bytes(mail.raw, policy=email.policy.default)
    assert msg["Subject"] == "Your Gentbox sign-up link"
    return re.search(r"(http\S+/signup/\?\S+)", msg.get_body().get_content()).group(1)


def _no_horizontal_scroll(page) -> bool:  # noqa: ANN001
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_waitlist_approval_signup_and_api_login(live_server, new_page):
    csp_problems: list[str] = []
    visitor = new_page(viewport={"width": 375, "height": 740})  # a phone
    visitor.on("console", lambda m: csp_problems.append(m.text) if "Content Security Policy" in m.text else None)

    visitor.goto("/waitlist/")
    assert _no_horizontal_scroll(visitor)
    visitor.get_by_label("Email").fill(VISITOR)
    visitor.get_by_role("button", name="Request access").click()
    visitor.get_by_role("heading", name="Request received").wait_for()

    operator = new_page()
    operator.on("console", lambda m: csp_problems.append(m.text) if "Content Security Policy" in m.text else None)
    sign_in(operator, make_operator(live_server))
    operator.get_by_role("navigation", name="Main").get_by_role("link", name="Waitlist").click()
    operator.get_by_role("heading", name="Waitlist").wait_for()
    assert operator.get_by_role("navigation", name="Main").get_by_text("1", exact=True).is_visible()  # badge
    row = operator.get_by_role("row").filter(has_text=VISITOR)
    row.get_by_role("button", name=f"Approve {VISITOR}").click()
    operator.get_by_text(f"Approved {VISITOR}").wait_for()
    assert operator.get_by_text("No pending requests.").is_visible()

    link = _signup_link(live_server.store, VISITOR)
    assert link.startswith(live_server.base_url + "/signup/?")
    visitor.goto(link)
    visitor.get_by_role("heading", name="Create your account").wait_for()
    assert visitor.get_by_label("Email").input_value() == VISITOR
    visitor.get_by_label("Your name (optional)").fill("Visitor")
    visitor.get_by_label("Password", exact=True).fill(PASSWORD)
    visitor.get_by_label("Password again").fill(PASSWORD)
    assert _no_horizontal_scroll(visitor)
    visitor.get_by_role("button", name="Create account").click()
    visitor.get_by_role("heading", name="Welcome to Gentbox").wait_for()

    # The link works once: opened again it says so.
    visitor.goto(link)
    visitor.get_by_role("heading", name="This link was already used").wait_for()

    login = requests.post(live_server.url("/auth/login/"), json={"email": VISITOR, "password": PASSWORD}, timeout=10)
    assert login.status_code == 200, login.text
    me = requests.get(live_server.url("/v1/users/me/"), timeout=10,
                      headers={"Authorization": f"Bearer {login.json()['access_token']}"})
    assert me.status_code == 200 and me.json()["email"] == VISITOR and me.json()["role"] == "owner"
    assert me.json()["next_step"]["code"] == "add_domain"

    operator.goto("/admin/waitlist/?status=redeemed")
    assert operator.get_by_role("row").filter(has_text=VISITOR).is_visible()
    assert csp_problems == []
