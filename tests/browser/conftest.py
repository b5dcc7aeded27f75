"""Browser fixtures: the app served by a real HTTP server on a loopback port, and Debian's chromium
driven by Playwright (headless; no browser is downloaded).

Reuse them from any test under tests/browser/:
- `live_server`: a LiveServer (base_url, store, settings, world) on this test's fresh store
  (SQLite and PostgreSQL, through the `backend` fixture).
- `browser_page`: a new page in a fresh browser context (no cookies) whose relative URLs resolve
  against live_server.base_url; `new_page()` gives further independent pages (other visitors).
- `sign_in(page, email, password)`, `make_operator(live_server)`, `make_owner(live_server)`,
  `sign_in_operator(page, live_server)`, `sign_in_owner(page, live_server)`.
- `screenshot(page, name)`: the page rendered at desktop and phone widths; written to
  docs/screenshots/ when GENTBOX_SCREENSHOTS=1 (on the SQLite backend: one set per run), so an
  ordinary run leaves the committed pictures alone:
  `GENTBOX_SCREENSHOTS=1 .venv/bin/pytest -n 2 tests/browser -k sqlite`.
"""
from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest
from werkzeug.serving import make_server

from appliance.config import Settings
from appliance.db import Store
from appliance.services.identity import accounts
from tests.world import PASSWORD, Person, World

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 15_000
SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
WIDTHS = {"desktop": (1280, 800), "phone": (375, 740)}


@dataclass
class LiveServer:
    base_url: str
    store: Store
    settings: Settings
    world: World
    app: object

    def url(self, path: str) -> str:
        return self.base_url + path


class _LateApp:
    """A WSGI callable whose app is set once the port, and so the public URL, is known."""

    app = None

    def __call__(self, environ, start_response):  # noqa: ANN001, ANN204
        return self.app(environ, start_response)


@contextlib.contextmanager
def serve_live(make_settings, make_store, **overrides) -> Iterator[LiveServer]:  # noqa: ANN001, ANN003
    """The app on a real HTTP server on a loopback port (0: the kernel picks), with these settings'
    overrides; its public_url is the server's address, known only once it is bound."""
    from api.app import create_app

    late = _LateApp()
    server = make_server("127.0.0.1", 0, late, threaded=True)
    base_url = f"http://127.0.0.1:{server.server_port}"
    settings = make_settings(public_url=base_url, **overrides)
    store = make_store(settings)
    late.app = create_app(settings, store)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield LiveServer(base_url, store, settings, World(store, settings), late.app)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def live_server(make_settings, make_store) -> Iterator[LiveServer]:
    with serve_live(make_settings, make_store) as live:
        yield live


@pytest.fixture(scope="module")
def browser():
    """One headless chromium per test module. Not per session: while Playwright's sync API is
    running it marks the worker's thread as inside an event loop, so asyncio.run() in any other
    test the same xdist worker runs next (the SMTP data reader's, say) would fail. pytest tears a
    module's fixtures down as soon as its worker moves on to another module."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (scripts/test-services.sh does)")
    from playwright.sync_api import sync_playwright

    playwright = sync_playwright().start()
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    yield browser
    browser.close()
    playwright.stop()


@pytest.fixture
def new_page(browser, request: pytest.FixtureRequest) -> Iterator[Callable]:
    """A factory of pages, each in its own browser context (its own cookies): one per visitor.
    Relative URLs resolve against live_server's (started on first use) unless base_url is given."""
    contexts = []

    def factory(**options):  # noqa: ANN003, ANN202
        if "base_url" not in options:
            options["base_url"] = request.getfixturevalue("live_server").base_url
        context = browser.new_context(**options)
        context.set_default_timeout(TIMEOUT_MS)
        contexts.append(context)
        return context.new_page()
    yield factory
    for context in contexts:
        context.close()


@pytest.fixture
def browser_page(new_page):  # noqa: ANN001, ANN201
    return new_page()


def sign_in(page, email: str, password: str = PASSWORD) -> None:  # noqa: ANN001
    """Sign in through the sign-in form (no second factor) and wait for the signed-in layout."""
    page.goto("/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Sign out").wait_for()


def make_operator(live_server: LiveServer, email: str = "operator@gentbox.test") -> str:
    """An appliance operator, made as `gentbox admin create` makes one; returns its address."""
    with live_server.store.session() as db:
        accounts.create_operator(db, email, PASSWORD, "Operator")
    return email


def make_owner(live_server: LiveServer, email: str | None = None) -> Person:
    """A signed-up owner of a new tenant (through the waitlist and sign-up services)."""
    return live_server.world.owner(email)


@pytest.fixture
def screenshot(backend: str) -> Callable:
    """screenshot(page, name): full-page PNGs of the page as it is now, at desktop and phone widths."""
    write = os.environ.get("GENTBOX_SCREENSHOTS") == "1" and backend == "sqlite"

    def take(page, name: str) -> None:  # noqa: ANN001
        size = page.viewport_size
        for label, (width, height) in WIDTHS.items():
            page.set_viewport_size({"width": width, "height": height})
            png = page.screenshot(full_page=True)
            assert png.startswith(b"\x89PNG")
            if write:
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                (SCREENSHOTS / f"{name}-{label}.png").write_bytes(png)
        if size:
            page.set_viewport_size(size)
    return take


def sign_in_operator(page, live_server: LiveServer) -> str:  # noqa: ANN001
    """Make the appliance operator (once per store) and sign the page in as it; its address."""
    from sqlalchemy import select

    from appliance.models import User
    with live_server.store.session() as db:
        existing = db.scalar(select(User.email).where(User.is_operator.is_(True)))
    email = existing or make_operator(live_server)
    sign_in(page, email)
    return email


def sign_in_owner(page, live_server: LiveServer, email: str | None = None) -> Person:  # noqa: ANN001
    """Sign the page in as the owner of a new tenant (signed up through the waitlist services)."""
    owner = make_owner(live_server, email)
    sign_in(page, owner.email)
    return owner
