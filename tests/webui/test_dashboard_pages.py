"""The dashboard: the owner's next step with a link to where it is done, domains needing attention,
the queue (the tenant's; the whole box's for operators), recent events, and for operators the
cheap health checks with every check behind a button."""
from __future__ import annotations

import datetime as dt

import pytest

from appliance.clock import utcnow
from appliance.heartbeat import Heartbeat
from appliance.ids import new_id
from appliance.models import Domain, OutboundQueue
from tests.webui.conftest import WebClient, make_operator, text_of


def _queue_row(store, tenant_id: str, status: str, age: dt.timedelta) -> None:
    now = utcnow()
    with store.session() as db:
        db.add(OutboundQueue(id=new_id("q"), tenant_id=tenant_id, domain="remote.example", status=status,
                             next_attempt_at=now + dt.timedelta(minutes=5), created_at=now - age,
                             expires_at=now + dt.timedelta(days=5)))


def test_signing_in_lands_on_the_dashboard_with_the_next_step(web, world, store):
    owner = world.owner()
    web.sign_in(owner.email)
    assert web.get("/admin/").headers["Location"] == "/admin/dashboard/"
    page = text_of(web.get("/admin/dashboard/"))
    assert "Next step" in page and 'href="/admin/domains/">Add a domain</a>' in page
    assert "POST /v1/domains/" in page
    assert "None: every domain is verified" in page and "user.signed_up" in page
    assert "Health" not in page.split("<main", 1)[1]  # operators only

    with store.session() as db:
        db.add(Domain(id=new_id("dom"), tenant_id=owner.tenant_id, name="fresh.example.com", status="pending",
                      created_at=utcnow(), verification_token="t"))
    page = text_of(web.get("/admin/dashboard/"))
    assert 'href="/admin/domains/fresh.example.com/">Publish the records and verify</a>' in page
    assert 'fresh.example.com</a>: not verified yet' in page

    world.agent(owner, world.inbox(owner), ["email:send"])
    page = text_of(web.get("/admin/dashboard/"))
    assert "Send a first message with the agent token." in page and "token.created" in page


def test_the_queue_is_the_tenants_own_and_the_whole_box_for_operators(web_for, world, store):
    owner = world.owner()
    stranger = world.owner()
    _queue_row(store, owner.tenant_id, "deferred", dt.timedelta(hours=3))
    _queue_row(store, owner.tenant_id, "queued", dt.timedelta(minutes=1))
    _queue_row(store, stranger.tenant_id, "deferred", dt.timedelta(hours=9))
    _queue_row(store, stranger.tenant_id, "done", dt.timedelta(hours=9))
    web = web_for()
    web.sign_in(owner.email)
    page = text_of(web.get("/admin/dashboard/"))
    assert 'data-figure="queue-waiting">2<' in page and "1 deferred; the oldest deferred since" in page
    assert "box-queue-waiting" not in page

    operator = web_for()
    operator.sign_in(make_operator(world))
    page = text_of(operator.get("/admin/dashboard/"))
    assert 'data-figure="box-queue-waiting">3<' in page and 'data-figure="queue-waiting">0<' in page


def test_operators_see_the_health_of_the_box(web, world, store, settings):
    Heartbeat(store, "web", settings.heartbeat_interval).beat()
    Heartbeat(store, "worker", settings.heartbeat_interval).beat()
    web.sign_in(make_operator(world))
    page = text_of(web.get("/admin/dashboard/"))
    assert '<li data-check="process.web"><span class="status status-pass">pass</span>' in page
    assert '<li data-check="process.smtp"><span class="status status-fail">fail</span>' in page
    assert "Fix: Start it: systemctl start gentbox-smtp.service" in page
    assert 'data-check="disk"' in page and 'data-check="queue"' in page and 'data-check="tls_certificate"' in page
    assert 'data-check="clock"' not in page  # the slow ones wait for the button
    assert 'href="/admin/health/">Run every check</a>' in page


@pytest.fixture
def quick_doctor_web(make_app, make_settings) -> WebClient:  # noqa: ANN001
    return WebClient(make_app(make_settings(doctor_timeout=0.5)).test_client())


def test_run_every_check_shows_the_doctors_full_report(quick_doctor_web, world_for):
    world = world_for(quick_doctor_web.client)
    quick_doctor_web.sign_in(make_operator(world))
    page = text_of(quick_doctor_web.get("/admin/health/"))
    for name in ("process.smtp", "disk", "database", "queue", "clock", "tls_certificate"):
        assert f'data-check="{name}"' in page, name
    assert '<h1>Health <span class="status status-fail">fail</span></h1>' in page  # no smtp process


def test_members_see_the_queue_but_not_the_managers_panels(web_for, world):
    owner = world.owner()
    member = web_for()
    member.sign_in(world.member(owner).email)
    page = text_of(member.get("/admin/dashboard/"))
    assert "Outbound queue" in page and "Next step" not in page and "Recent events" not in page
    assert member.get("/admin/health/").status_code == 403
