"""The app passwords page (issue 25 point 2): a person creates one for an inbox they use (shown
once, never in a cookie), sees it listed with the client settings, revokes it with confirmation;
a member sees only the inboxes granted to them, and another person's is 404."""
from __future__ import annotations

import re

from appliance.errors import UnauthorizedError
from appliance.services.identity import app_passwords
from tests.webui.conftest import text_of

RAW = re.compile(r'<code class="raw-token" id="raw-token">(gapp_[^<]+)</code>')


def _sign_in(store, settings, address: str, password: str):  # noqa: ANN001, ANN202
    with store.session() as db, store.counter_sessions() as counters:
        login = app_passwords.authenticate(db, counters, settings, address, password, "192.0.2.8")
        counters.commit()
        return login


def test_create_use_and_revoke_an_app_password(web, world, store, settings):
    owner = world.owner()
    inbox_id = world.inbox(owner, "desk@mine.example.com")
    web.sign_in(owner.email)
    page = text_of(web.get("/admin/app-passwords/"))
    assert "No app passwords yet" in page and "desk@mine.example.com" in page and "STARTTLS" in page
    assert web.post("/admin/app-passwords/", {"inbox_id": inbox_id, "label": "Laptop"}, csrf=False).status_code == 400
    resp = web.post("/admin/app-passwords/", {"inbox_id": inbox_id, "label": "Laptop"})
    assert resp.status_code == 200
    page = text_of(resp)
    raw = RAW.search(page).group(1)
    assert "shown only this once" in page and raw not in resp.headers.get("Set-Cookie", "")
    assert _sign_in(store, settings, "desk@mine.example.com", raw).inbox.id == inbox_id
    listing = text_of(web.get("/admin/app-passwords/"))
    assert "Laptop" in listing and raw not in listing
    row_id = re.search(r'data-app-password="(app_[^"]+)"', listing).group(1)
    assert "Revoke this app password?" in text_of(web.post(f"/admin/app-passwords/{row_id}/revoke/"))
    done = text_of(web.post(f"/admin/app-passwords/{row_id}/revoke/", {"confirm": "yes"}, follow_redirects=True))
    assert "Revoked the app password." in done and "No app passwords yet" in done
    try:
        _sign_in(store, settings, "desk@mine.example.com", raw)
        raise AssertionError("a revoked app password signed in")
    except UnauthorizedError:
        pass


def test_a_member_sees_only_granted_inboxes_and_not_others_app_passwords(web, world, store, client):
    owner = world.owner()
    granted, hidden = world.inbox(owner, "granted@team.example.com"), world.inbox(owner, "hidden@team.example.com")
    member = world.member(owner)
    assert client.put(f"/v1/inboxes/{granted}/members/", json={"user_ids": [member.user_id]},
                      headers=owner.auth).status_code == 200
    theirs = client.post("/v1/app-passwords/", json={"inbox_id": hidden}, headers=owner.auth).get_json()
    web.sign_in(member.email)
    page = text_of(web.get("/admin/app-passwords/"))
    assert "granted@team.example.com" in page and "hidden@team.example.com" not in page
    refused = text_of(web.post("/admin/app-passwords/", {"inbox_id": hidden}, follow_redirects=True))
    assert "No such inbox." in refused and not RAW.search(refused)
    gone = text_of(web.post(f"/admin/app-passwords/{theirs['app_password_id']}/revoke/", {"confirm": "yes"},
                            follow_redirects=True))
    assert "No such app password." in gone
    assert client.get("/v1/app-passwords/", headers=owner.auth).get_json()["results"][0]["app_password_id"] \
        == theirs["app_password_id"]  # still live
