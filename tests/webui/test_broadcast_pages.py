"""Issue 16 point 2, the Broadcasts page of an inbox: the form sends one message per contact of a
label and the page lists its status; another tenant's inbox is a 404."""
from __future__ import annotations

from sqlalchemy import func, select

from appliance.models import Label, OutboundQueue
from tests.webui.conftest import text_of


def test_the_form_broadcasts_to_a_label_and_the_page_shows_its_status(web, web_for, world, store):
    owner = world.owner()
    inbox = world.sender(owner, "news@alpha.test").inbox_id
    web.sign_in(owner.email)
    for address in ("ann@example.org", "bo@example.org"):
        web.post(f"/admin/inboxes/{inbox}/contacts/", {"full_name": address, "emails": address, "labels": "vip"})
    assert "Broadcasts" in text_of(web.get(f"/admin/inboxes/{inbox}/contacts/"))
    with store.session() as db:
        label_id = db.scalar(select(Label.id).where(Label.inbox_id == inbox, Label.name == "vip"))
    resp = web.post(f"/admin/inboxes/{inbox}/broadcasts/", {"label_id": label_id, "subject": "News",
                                                             "text_body": "Hello.\n"})
    assert resp.status_code == 303
    page = text_of(web.get(resp.headers["Location"]))
    assert "Broadcast queued: 2 messages, 0 addresses skipped" in page and "News" in page
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(OutboundQueue)) == 2
    stranger = world.owner()
    other = web_for()
    other.sign_in(stranger.email)
    assert other.get(f"/admin/inboxes/{inbox}/broadcasts/").status_code == 404
