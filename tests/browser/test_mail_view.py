"""Browser scenario 3 (issue 6): a message whose HTML carries a <script>, onerror= attributes and
remote images is shown inert. It arrives through the real SMTP listener (port 0), the owner opens
it in Debian's chromium, and:
- no script runs: the scripts would set the title, log to the console and call a tracker; none did;
- no remote request is made: every image and call points at a local HTTP server on port 0 that
  counts hits, and it counts zero (the test checks the counter works first); Playwright's request
  events show no request leaving the appliance's origin.
A second test stores the hostile HTML unsanitised (as if the sanitiser had a bug): the sandboxed
frame and its CSP alone still keep it inert."""
from __future__ import annotations

import smtplib
import threading
import urllib.request
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

import pytest
from sqlalchemy import select, update

from appliance.models import Inbox, Message
from smtp.server import Listener
from tests.browser.conftest import make_owner, sign_in


class Tracker:
    """A local "remote" server: records every request it gets."""

    def __init__(self) -> None:
        hits = self.hits = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Type", "image/gif")
                self.end_headers()
                self.wfile.write(b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")

            do_POST = do_GET  # noqa: N815

            def log_message(self, *args) -> None:  # noqa: ANN002
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tracker() -> Iterator[Tracker]:
    t = Tracker()
    urllib.request.urlopen(t.base + "/self-check", timeout=5).read()  # the counter counts
    assert t.hits == ["/self-check"]
    t.hits.clear()
    yield t
    t.close()


def hostile_html(base: str) -> str:
    run = f"document.title='pwned';console.log('SCRIPT RAN');fetch('{base}/fetch');new Image().src='{base}/js'"
    return (f"<p>Quarterly numbers attached.</p>"
            f"<script>{run}</script>"
            f'<img src="{base}/remote.png" alt="remote image">'
            f'<img src="x" onerror="{run}">'
            f'<img src="{base}/onload.png" onload="{run}">'
            f'<div style="background:url({base}/css.png)">styled</div>'
            f'<svg onload="{run}"><image href="{base}/svg.png"/></svg>'
            f'<iframe src="{base}/frame"></iframe><object data="{base}/object"></object>'
            f'<link rel="stylesheet" href="{base}/style.css"><a href="javascript:{run}">a link</a>')


@pytest.fixture
def mailbox(live_server):  # noqa: ANN001, ANN201
    owner = make_owner(live_server)
    inbox_id = live_server.world.inbox(owner)
    with live_server.store.session() as db:
        address = db.get(Inbox, inbox_id).address
    listener = Listener(live_server.store, live_server.settings, host="127.0.0.1", port=0)
    host, port = listener.start()
    yield owner, inbox_id, address, (host, port)
    listener.stop()


def send_over_smtp(smtp_address, to: str, html: str) -> None:  # noqa: ANN001
    msg = EmailMessage()
    msg["From"] = "Mallory <mallory@sender.example>"
    msg["To"] = to
    msg["Subject"] = "Hostile newsletter"
    msg.set_content("Quarterly numbers attached (text).")
    msg.add_alternative(html, subtype="html")
    with smtplib.SMTP(*smtp_address, local_hostname="client.example", timeout=30) as smtp:
        smtp.send_message(msg, from_addr="mallory@sender.example", to_addrs=[to])


def open_message(live_server, new_page, owner, inbox_id: str, message_id: str, shoot=None):  # noqa: ANN001, ANN201
    page = new_page()
    requests, console = {}, []
    page.on("request", lambda r: requests.setdefault(r.url, "requested"))
    page.on("requestfailed", lambda r: requests.__setitem__(r.url, f"failed: {r.failure}"))
    page.on("requestfinished", lambda r: requests.__setitem__(r.url, "finished"))
    page.on("console", lambda m: console.append(m.text))
    sign_in(page, owner.email)
    page.goto(f"/admin/mail/{inbox_id}/")
    if shoot:
        shoot(page, "mail-inbox")
    page.get_by_role("link", name="Hostile newsletter").click()
    page.get_by_role("heading", name="Hostile newsletter").wait_for()
    frame = page.frame_locator("iframe.mailframe")
    frame.get_by_text("Quarterly numbers attached.").wait_for()  # the HTML did render
    page.wait_for_timeout(1500)  # time for anything that would load or run
    return page, requests, console


def assert_inert(live_server, page, requests: dict, console: list, tracker: Tracker) -> None:  # noqa: ANN001
    assert tracker.hits == [], tracker.hits
    # Chromium reports a load it refuses under the CSP as a request that failed before leaving.
    outside = {url: fate for url, fate in requests.items() if not url.startswith(live_server.base_url)}
    assert all(fate == "failed: csp" for fate in outside.values()), outside
    assert not any("SCRIPT RAN" in line for line in console), console
    assert page.title() != "pwned"
    inner = [f for f in page.frames if f != page.main_frame]
    assert inner and all(f.evaluate("document.title") != "pwned" for f in inner)


def test_a_hostile_message_is_shown_inert(live_server, new_page, tracker, mailbox, screenshot):  # noqa: ANN001
    owner, inbox_id, address, smtp_address = mailbox
    send_over_smtp(smtp_address, address, hostile_html(tracker.base))
    with live_server.store.session() as db:
        message_id, stored = db.execute(select(Message.id, Message.html_body)
                                        .where(Message.inbox_id == inbox_id)).one()
    assert "/remote.png" in stored  # the sanitiser keeps remote images: the frame must block them
    page, requests, console = open_message(live_server, new_page, owner, inbox_id, message_id, screenshot)
    assert_inert(live_server, page, requests, console, tracker)
    body = page.frame_locator("iframe.mailframe").locator("body")
    assert body.locator("img[alt='remote image']").evaluate("i => i.naturalWidth") == 0  # blocked, not loaded
    screenshot(page, "mail-message")


def test_unsanitised_html_stays_inert_in_the_sandboxed_frame(live_server, new_page, tracker, mailbox):  # noqa: ANN001
    owner, inbox_id, address, smtp_address = mailbox
    send_over_smtp(smtp_address, address, "<p>placeholder</p>")
    raw_html = hostile_html(tracker.base)
    with live_server.store.session() as db:  # as if the sanitiser let everything through
        message_id = db.scalar(select(Message.id).where(Message.inbox_id == inbox_id))
        db.execute(update(Message).where(Message.id == message_id).values(html_body=raw_html))
    page, requests, console = open_message(live_server, new_page, owner, inbox_id, message_id)
    assert_inert(live_server, page, requests, console, tracker)
    frame = page.frame_locator("iframe.mailframe")
    assert frame.locator("script").count() == 1  # the script is there, and did not run
