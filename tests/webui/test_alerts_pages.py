"""Issue 15, the Alerts page of an inbox: create (the webhook secret shown once), disable and
enable, rotate the secret and delete with confirmation, the delivery log with response codes and
errors and a Redeliver button; failing alerts on the dashboard; another tenant's alerts are 404s."""
from __future__ import annotations

import datetime as dt
import logging
import re

from sqlalchemy import select

from appliance import clock
from appliance.models import Alert, WebhookDelivery
from tests.webui.conftest import text_of

SECRET = re.compile(r'<code class="raw-token" id="raw-secret">(whsec_[^<]+)</code>')
TARGET = "https://93.184.215.14/hooks/in"


def _create(web, inbox_id: str, **fields):
    data = {"events": ["message.received", "message.sent"], "delivery_type": "webhook", "target": TARGET,
            "retries": "4", "backoff": "fixed", **fields}
    return web.post(f"/admin/inboxes/{inbox_id}/alerts/", data)


def _alert(store) -> Alert:
    with store.session() as db:
        return db.scalar(select(Alert))


def test_create_shows_the_secret_once(web, world, store, client, caplog):
    caplog.set_level(logging.DEBUG)
    owner = world.owner()
    inbox = world.inbox(owner, "hooks@mine.example.com")
    web.sign_in(owner.email)
    page = text_of(web.get(f"/admin/inboxes/{inbox}/alerts/"))
    assert "No alerts yet" in page and 'name="events" value="message.received"' in page
    assert 'value="domain.verified"' in page  # owners may subscribe to admin-only types
    resp = _create(web, inbox)
    assert resp.status_code == 200 and resp.headers["Cache-Control"] == "no-store"
    page = text_of(resp)
    assert "shown only this once" in page and "hooks@mine.example.com" in page
    secret = SECRET.search(page).group(1)
    assert secret not in resp.headers.get("Set-Cookie", "")
    assert not [r for r in caplog.records if secret in r.getMessage()]
    alert = _alert(store)
    assert (alert.events, alert.target, alert.retries, alert.backoff) == (
        ["message.received", "message.sent"], TARGET, 4, "fixed")
    listing = text_of(web.get(f"/admin/inboxes/{inbox}/alerts/"))
    assert secret not in listing and alert.id in listing and TARGET in listing
    assert secret not in text_of(web.get(f"/admin/alerts/{alert.id}/"))


def test_a_refused_target_is_a_message_on_the_page(web, world, store):
    owner = world.owner()
    inbox = world.inbox(owner)
    web.sign_in(owner.email)
    resp = _create(web, inbox, target="https://10.0.0.7/in")
    assert resp.status_code == 303
    page = text_of(web.get(resp.headers["Location"]))
    assert "not a public address" in page and _alert(store) is None


def test_disable_enable_rotate_delete(web, world, store):
    owner = world.owner()
    inbox = world.inbox(owner)
    web.sign_in(owner.email)
    first = SECRET.search(text_of(_create(web, inbox))).group(1)
    alert_id = _alert(store).id
    assert web.post(f"/admin/alerts/{alert_id}/disable/").status_code == 303
    assert _alert(store).enabled is False and "disabled" in text_of(web.get(f"/admin/inboxes/{inbox}/alerts/"))
    web.post(f"/admin/alerts/{alert_id}/enable/")
    assert _alert(store).enabled is True

    asked = text_of(web.post(f"/admin/alerts/{alert_id}/rotate/"))
    assert "keeps signing for 24 hours" in asked and _alert(store).previous_secret_sealed is None
    rotated = text_of(web.post(f"/admin/alerts/{alert_id}/rotate/", {"confirm": "yes"}))
    second = SECRET.search(rotated).group(1)
    assert second != first and "keeps signing too until" in rotated

    assert "cannot be undone" in text_of(web.post(f"/admin/alerts/{alert_id}/delete/"))
    assert _alert(store) is not None
    web.post(f"/admin/alerts/{alert_id}/delete/", {"confirm": "yes"})
    assert _alert(store) is None


def test_the_delivery_log_and_redeliver(web, world, store):
    owner = world.owner()
    inbox = world.inbox(owner)
    web.sign_in(owner.email)
    _create(web, inbox)
    alert_id = _alert(store).id
    assert web.post(f"/admin/alerts/{alert_id}/test/").status_code == 303
    with store.session() as db:  # as the engine leaves a failed attempt
        row = db.scalar(select(WebhookDelivery))
        row.status, row.attempt, row.response_status, row.error = "failed", 2, 503, "HTTP 503: maintenance"
        row.next_attempt_at = clock.utcnow() + dt.timedelta(hours=5)
        db.commit()
        delivery_id = row.id
    page = text_of(web.get(f"/admin/alerts/{alert_id}/"))
    assert "HTTP 503" in page and "maintenance" in page and "Redeliver" in page
    assert web.post(f"/admin/alerts/{alert_id}/deliveries/{delivery_id}/retry/").status_code == 303
    with store.session() as db:
        row = db.get(WebhookDelivery, delivery_id)
        assert row.status == "pending" and row.next_attempt_at <= clock.utcnow()


def test_the_dashboard_lists_failing_alerts(web, world, store):
    owner = world.owner()
    inbox = world.inbox(owner)
    web.sign_in(owner.email)
    _create(web, inbox)
    assert "Alerts failing" not in text_of(web.get("/admin/dashboard/"))
    with store.session() as db:
        db.scalar(select(Alert)).failing_since = clock.utcnow() - dt.timedelta(hours=3)
        db.commit()
    page = text_of(web.get("/admin/dashboard/"))
    assert "Alerts failing" in page and TARGET in page


def test_another_tenants_alerts_are_404(web, world, store):
    other = world.owner()
    other_inbox = world.inbox(other)
    web.sign_in(other.email)
    _create(web, other_inbox)
    alert_id = _alert(store).id
    web.post("/logout/")
    me = world.owner()
    world.inbox(me)
    web.sign_in(me.email)
    for path in (f"/admin/alerts/{alert_id}/", f"/admin/inboxes/{other_inbox}/alerts/"):
        assert web.get(path).status_code == 404
    for action in ("disable", "rotate", "delete", "test"):
        assert web.post(f"/admin/alerts/{alert_id}/{action}/", {"confirm": "yes"}).status_code == 404
    assert _create(web, other_inbox).status_code == 404
    assert _alert(store).enabled is True
