"""Issue 27, point 5: the tenant's settings page (owners and admins) and an inbox's settings page,
posting through the same services as the API: the API's messages as flashes, nothing written on a
bad value, CSRF required."""
from __future__ import annotations

import html

from appliance.models import Inbox, Tenant
from tests.webui.conftest import text_of

INBOX_FORM = {"display_name": "Front Desk", "default_timezone": "Europe/Berlin", "signature_text": "Ann\r\nDesk",
              "signature_html": "<b>Ann</b><script>alert(1)</script>", "auto_contacts": "on",
              "webhook_events": ["message.received"], "auto_reply_enabled": "on", "auto_reply_subject": "Away",
              "auto_reply_text_body": "Back Monday.", "auto_reply_until": "2099-01-05T09:00"}


def _inbox(store, inbox_id: str) -> Inbox:
    with store.session() as db:
        return db.get(Inbox, inbox_id)


def test_the_inbox_settings_page_saves_what_the_api_shows(web, world, store, client) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "desk@pages.test")
    web.sign_in(owner.email)
    assert "Settings of desk@pages.test" in text_of(web.get(f"/admin/inboxes/{inbox_id}/settings/"))
    page = text_of(web.post(f"/admin/inboxes/{inbox_id}/settings/", INBOX_FORM, follow_redirects=True))
    assert "Saved the inbox" in page and 'value="2099-01-05T09:00"' in page  # shown back in the inbox's zone
    api = client.get(f"/v1/inboxes/{inbox_id}/settings/", headers=owner.auth).json
    assert api["display_name"] == "Front Desk" and api["signature_text"] == "Ann\nDesk"
    assert api["signature_html"] == "<b>Ann</b>" and api["webhook_events"] == ["message.received"]
    assert api["auto_reply"] == {"enabled": True, "subject": "Away", "text_body": "Back Monday.",
                                 "until": "2099-01-05T08:00:00+00:00"}


def test_a_bad_value_shows_the_api_message_and_writes_nothing(web, world, store) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner, "desk@pages.test")
    web.sign_in(owner.email)
    for change, message in ((("default_timezone", "Mars/Base"), "default_timezone: 'Mars/Base' is not an IANA time zone"),
                            (("auto_reply_until", "2001-01-01T00:00"), "auto_reply.until: is in the past")):
        form = {**INBOX_FORM, change[0]: change[1]}
        page = html.unescape(text_of(web.post(f"/admin/inboxes/{inbox_id}/settings/", form, follow_redirects=True)))
        assert message in page
        inbox = _inbox(store, inbox_id)
        assert inbox.display_name == "Agent" and inbox.settings == {}
    assert web.post(f"/admin/inboxes/{inbox_id}/settings/", INBOX_FORM, csrf=False).status_code == 400
    assert _inbox(store, inbox_id).settings == {}


def test_the_tenant_settings_page_is_for_owners_and_admins(web, web_for, world, store) -> None:
    owner = world.owner()
    web.sign_in(owner.email)
    page = text_of(web.post("/admin/settings/", {"name": "Acme", "default_timezone": "Asia/Tokyo",
                                                 "notify_address": "ops@acme.example", "llm_consent": "on",
                                                 "default_signature_text": "The Acme team",
                                                 "default_auto_contacts": "on"}, follow_redirects=True))
    assert "Saved the tenant" in page
    with store.session() as db:
        tenant = db.get(Tenant, owner.tenant_id)
        assert tenant.name == "Acme" and tenant.settings["llm_consent"] is True
        assert tenant.settings["default_inbox_settings"] == {"signature_text": "The Acme team", "auto_contacts": True}
    bad = html.unescape(text_of(web.post("/admin/settings/", {"name": "Acme", "default_timezone": "Asia/Atlantis"},
                                         follow_redirects=True)))
    assert "default_timezone: 'Asia/Atlantis' is not an IANA time zone" in bad
    member = world.member(owner)
    visitor = web_for()
    visitor.sign_in(member.email)
    assert visitor.get("/admin/settings/").status_code in (403, 404)
    assert visitor.post("/admin/settings/", {"name": "Taken over"}).status_code in (403, 404)
    with store.session() as db:
        assert db.get(Tenant, owner.tenant_id).name == "Acme"
