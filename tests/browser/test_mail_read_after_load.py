"""Issue 14.9 (a) in Chromium: opening an unread message leaves the GET without effect, and the
page's static script (CSP: no inline script) marks it read with a CSRF-carrying POST after load."""
from __future__ import annotations

import time

from sqlalchemy import select

from appliance.models import Inbox, Message
from tests.api.test_messages import build_mail, deliver
from tests.browser.conftest import make_owner, sign_in


def _is_read(store, message_id: str) -> bool:  # noqa: ANN001
    with store.read_sessions() as db:
        return db.scalar(select(Message.is_read).where(Message.id == message_id))


def test_the_page_marks_the_message_read_after_load(live_server, new_page):  # noqa: ANN001
    owner = make_owner(live_server)
    inbox_id = live_server.world.inbox(owner)
    with live_server.store.session() as db:
        address = db.get(Inbox, inbox_id).address
    message_id = deliver(live_server.world, inbox_id, build_mail(subject="Invoice", to=address, text="Pay."))
    page = new_page()
    posts, errors = [], []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" and "/read/" in r.url else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    sign_in(page, owner.email)
    page.goto(f"/admin/mail/{inbox_id}/messages/{message_id}/")
    page.get_by_role("heading", name="Invoice").wait_for()
    deadline = time.monotonic() + 15
    while not _is_read(live_server.store, message_id):
        assert time.monotonic() < deadline, f"not marked read after load; posts {posts}, errors {errors}"
        page.wait_for_timeout(100)
    assert posts == [live_server.url(f"/admin/mail/{inbox_id}/messages/{message_id}/read/")] and errors == []
    page.get_by_role("button", name="Mark read").wait_for(state="detached")
