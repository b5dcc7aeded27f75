"""Web sessions under `gentbox web` (gunicorn, two worker processes): a sign-in made in one worker is
honoured by the other, and a sign-out in one is refused by both at once, because the session lives
in the store. The browser signs in; then plain HTTP requests on fresh connections (spread over the
workers by the kernel) carry its cookie."""
from __future__ import annotations

import requests

from appliance.config import Settings
from appliance.db import Store
from appliance.services.identity import accounts
from tests.integration.test_readme_flow import web_server  # noqa: F401 - the fixture
from tests.world import PASSWORD

ROUNDS = 20


def _status_with(base: str, cookie: str, path: str = "/admin/account/") -> int:
    resp = requests.get(base + path, cookies={"gentbox_session": cookie}, allow_redirects=False,
                        headers={"Connection": "close"}, timeout=10)
    return resp.status_code


def test_two_gunicorn_workers_share_sign_ins_and_sign_outs(web_server, new_page):  # noqa: F811
    settings: Settings = web_server["settings"]
    store = Store(settings)
    try:
        with store.session() as db:
            accounts.create_operator(db, "operator@gentbox.test", PASSWORD, "Operator")
    finally:
        store.dispose()
    base = web_server["base"]
    page = new_page(base_url=base)
    page.goto(base + "/login/")
    page.get_by_label("Email").fill("operator@gentbox.test")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()
    cookie = next(c["value"] for c in page.context.cookies() if c["name"] == "gentbox_session")

    assert [_status_with(base, cookie) for _ in range(ROUNDS)] == [200] * ROUNDS
    page.get_by_role("button", name="Sign out").click()
    page.get_by_role("heading", name="Signed out").wait_for()
    assert [_status_with(base, cookie) for _ in range(ROUNDS)] == [302] * ROUNDS
