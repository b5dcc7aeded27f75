"""The mail pages: an inbox's list (newest first, unread marker, search, cursor pages) and one
message (headers, text, the sanitised HTML in a sandboxed frame served under its own strict CSP,
attachments, raw download, authentication results, delivery status of sent mail). Mail is stored
by the inbound service the SMTP listener calls; sent mail through the API's send path."""
from __future__ import annotations

import re

from sqlalchemy import select

from appliance.models import Inbox, Message
from tests.api.test_messages import build_mail, deliver
from tests.webui.conftest import text_of

HOSTILE = ('<p>Hi <b>there</b></p><script>document.title="pwned"</script>'
           '<img src="http://203.0.113.9/track.png" onerror="document.title=\'pwned\'">'
           '<a href="javascript:alert(1)">click</a>')


def _inbox(world, owner) -> tuple[str, str]:  # noqa: ANN001
    inbox_id = world.inbox(owner)
    with world.store.session() as db:
        return inbox_id, db.get(Inbox, inbox_id).address


def test_the_inbox_lists_newest_first_marks_unread_and_searches(web, world, owner):  # noqa: ANN001
    inbox_id, address = _inbox(world, owner)
    first = deliver(world, inbox_id, build_mail(subject="Quarterly invoice", to=address, text="Please pay."))
    second = deliver(world, inbox_id, build_mail(subject="Lunch plans", to=address, text="Noodles?"))
    web.sign_in(owner.email)
    body = text_of(web.get("/admin/mail/"))  # one inbox: straight to it
    page = web.get(f"/admin/mail/{inbox_id}/")
    assert page.status_code == 200
    body = text_of(page)
    assert body.index("Lunch plans") < body.index("Quarterly invoice")
    assert body.count('class="unread"') == 2 and 'for="f-q">Search this inbox' in body
    found = text_of(web.get(f"/admin/mail/{inbox_id}/?q=invoice"))
    assert "Quarterly invoice" in found and "Lunch plans" not in found
    assert "No messages match" in text_of(web.get(f"/admin/mail/{inbox_id}/?q=zebra"))
    # Opening a message marks it read; "Mark unread" undoes it.
    assert web.get(f"/admin/mail/{inbox_id}/messages/{first}/").status_code == 200
    assert text_of(web.get(f"/admin/mail/{inbox_id}/")).count('class="unread"') == 1
    resp = web.post(f"/admin/mail/{inbox_id}/messages/{first}/unread/")
    assert resp.status_code == 303
    with world.store.session() as db:
        assert db.get(Message, first).is_read is False and db.get(Message, second).is_read is False


def test_pages_follow_the_cursor(web, world, owner, monkeypatch):  # noqa: ANN001
    from webui.views.mail import mail
    monkeypatch.setattr(mail, "PAGE_SIZE", 2)
    inbox_id, address = _inbox(world, owner)
    for n in range(5):
        deliver(world, inbox_id, build_mail(subject=f"Note {n}", to=address))
    web.sign_in(owner.email)
    seen, url = [], f"/admin/mail/{inbox_id}/"
    while url:
        body = text_of(web.get(url))
        seen += re.findall(r"Note \d", body)
        nxt = re.search(r'href="([^"]*cursor=[^"]*)">Older', body)
        url = nxt.group(1).replace("&amp;", "&") if nxt else None
    assert seen == [f"Note {n}" for n in (4, 3, 2, 1, 0)]


def test_an_empty_inbox_says_so(web, world, owner):  # noqa: ANN001
    inbox_id, address = _inbox(world, owner)
    world.inbox(owner)  # two inboxes: the index lists them
    web.sign_in(owner.email)
    assert address in text_of(web.get("/admin/mail/"))
    assert f"No mail yet: messages sent to {address} appear here." in text_of(web.get(f"/admin/mail/{inbox_id}/"))


def test_a_message_shows_headers_auth_attachments_and_its_html_only_in_a_sandboxed_frame(web, world, owner):  # noqa: ANN001
    inbox_id, address = _inbox(world, owner)
    raw = build_mail(subject="Hostile", to=address, text="Plain words.", html=HOSTILE,
                     attachments=(("report.html", "text/html", b"<script>alert(1)</script>"),))
    with world.store.session() as db:
        from appliance.services.mail import inbound
        [stored] = inbound.receive(db, inbox_ids=[inbox_id], raw=raw, envelope_from="a@sender.example",
                                   envelope_to={}, authentication={"spf": "pass", "dkim": "fail", "dmarc": "none",
                                                                   "dmarc_aligned": False})
        message_id = stored.message_id if hasattr(stored, "message_id") else stored.id
    web.sign_in(owner.email)
    page = web.get(f"/admin/mail/{inbox_id}/messages/{message_id}/")
    body = text_of(page)
    assert page.status_code == 200
    assert "alice@sender.example" in body and "Plain words." in body and "report.html" in body
    assert re.search(r"SPF</dt><dd><span[^>]*>pass", body) and re.search(r"DKIM</dt><dd><span[^>]*>fail", body)
    assert "DMARC aligned</dt><dd>no" in body
    assert "<script>document" not in body and "track.png" not in body and "onerror" not in body
    frame = re.search(r'<iframe class="mailframe" src="([^"]+)" sandbox="([^"]*)"', body)
    assert frame and "allow-scripts" not in frame.group(2) and "allow-same-origin" not in frame.group(2)
    assert "frame-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"

    inner = web.get(frame.group(1))
    csp = inner.headers["Content-Security-Policy"]
    assert inner.status_code == 200 and inner.mimetype == "text/html"
    for directive in ("default-src 'none'", "script-src 'none'", "img-src data: cid:", "connect-src 'none'",
                      "frame-ancestors 'self'", "sandbox"):
        assert directive in csp, csp
    assert inner.headers["X-Frame-Options"] == "SAMEORIGIN"
    html = text_of(inner)
    assert "<b>there</b>" in html and "<script" not in html and "onerror" not in html and "javascript:" not in html

    raw_resp = web.get(f"/admin/mail/{inbox_id}/messages/{message_id}/raw/")
    assert raw_resp.mimetype == "message/rfc822" and raw_resp.data.endswith(raw[-200:])
    assert raw_resp.headers["Content-Disposition"].startswith("attachment;")
    link = re.search(r'href="([^"]+/attachments/[^"]+)" download>report.html', body).group(1)
    att = web.get(link)
    assert att.data == b"<script>alert(1)</script>" and att.headers["Content-Disposition"].startswith("attachment;")
    assert "sandbox" in att.headers["Content-Security-Policy"]


def test_sent_mail_shows_delivery_per_recipient(web, world, owner, client):  # noqa: ANN001
    agent = world.sender(owner, "bot@sent-mail.example")
    resp = client.post("/v1/messages/", headers=agent.auth, json={
        "to": [{"email": "ann@far.example"}, {"email": "bo@other.example"}], "subject": "Report",
        "text_body": "Attached."})
    assert resp.status_code == 201
    web.sign_in(owner.email)
    body = text_of(web.get(f"/admin/mail/{agent.inbox_id}/messages/{resp.json['message_id']}/"))
    assert "Delivery" in body and "ann@far.example" in body and "bo@other.example" in body
    assert body.count('data-label="Status"><span class="status status-queued">queued</span>') == 2


def test_another_tenants_message_is_not_found(web, world, owner):  # noqa: ANN001
    inbox_id, address = _inbox(world, owner)
    message_id = deliver(world, inbox_id, build_mail(subject="Private", to=address))
    stranger = world.owner()
    mine = world.inbox(stranger)
    web.sign_in(stranger.email)
    for path in (f"/admin/mail/{inbox_id}/", f"/admin/mail/{inbox_id}/messages/{message_id}/",
                 f"/admin/mail/{mine}/messages/{message_id}/", f"/admin/mail/{mine}/messages/{message_id}/body/",
                 f"/admin/mail/{mine}/messages/{message_id}/raw/"):
        resp = web.get(path)
        assert resp.status_code == 404 and "Private" not in text_of(resp), path
    with world.store.session() as db:
        assert db.scalar(select(Message.is_read).where(Message.id == message_id)) is False
