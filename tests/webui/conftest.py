"""Web UI tests with Flask's test client: an app per test on a fresh store (SQLite and PostgreSQL).

`web` is a WebClient: a test client that keeps its cookies like a browser and posts forms with the
CSRF token a page of the same session rendered. `web_for()` makes further independent visitors.
"""
from __future__ import annotations

import re
from typing import Callable

import pytest

from appliance.services.identity import accounts
from tests.world import PASSWORD, Person, World

CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')


class WebClient:
    """One visitor: its own cookies, and forms posted with a valid CSRF token unless told not to."""

    def __init__(self, client) -> None:  # noqa: ANN001
        self.client = client

    def get(self, path: str, **kw):  # noqa: ANN003, ANN201
        return self.client.get(path, **kw)

    def csrf_token(self) -> str:
        html = self.client.get("/logout/").get_data(as_text=True)  # a public page with a form
        return CSRF_FIELD.search(html).group(1)

    def post(self, path: str, data: dict | None = None, *, csrf: bool = True, **kw):  # noqa: ANN003, ANN201
        data = dict(data or {})
        if csrf:
            data.setdefault("csrf_token", self.csrf_token())
        return self.client.post(path, data=data, **kw)

    def sign_in(self, email: str, password: str = PASSWORD):  # noqa: ANN201
        resp = self.post("/login/", {"email": email, "password": password})
        assert resp.status_code == 303, resp.get_data(as_text=True)[:500]
        return resp

    def cookie(self) -> str | None:
        cookie = self.client.get_cookie("gentbox_session")
        return cookie.value if cookie else None

    def set_cookie(self, value: str) -> None:
        self.client.set_cookie("gentbox_session", value)


@pytest.fixture
def web_for(app) -> Callable[[], WebClient]:  # noqa: ANN001
    return lambda: WebClient(app.test_client())


@pytest.fixture
def web(web_for) -> WebClient:  # noqa: ANN001
    return web_for()


def make_operator(world: World, email: str = "operator@gentbox.test") -> str:
    with world.store.session() as db:
        accounts.create_operator(db, email, PASSWORD, "Operator")
    return email


@pytest.fixture
def operator(world: World) -> str:
    return make_operator(world)


@pytest.fixture
def owner(world: World) -> Person:
    return world.owner()


def text_of(resp) -> str:  # noqa: ANN001
    return resp.get_data(as_text=True)
