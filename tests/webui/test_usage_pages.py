"""The usage page (issue 22): the month's figures, server-drawn SVG charts (no script, no CDN),
the caps editor per level (CSRF-protected forms through the same services as the API), the banner
on every page while a cap is past its first threshold, and the operators' per-tenant table."""
from __future__ import annotations

import re

from sqlalchemy import select

from appliance.models import UsageCap
from tests.webui.conftest import text_of


def _send(client, agent, n: int = 1) -> None:  # noqa: ANN001
    for _ in range(n):
        resp = client.post("/v1/messages/", json={"to": [{"email": "x@example.org"}], "text_body": "hi"},
                           headers=agent.auth)
        assert resp.status_code in (201, 429), resp.get_data(as_text=True)


def test_usage_page_shows_figures_and_svg_charts(web, world, owner, client):  # noqa: ANN001
    agent = world.sender(owner, "charts@usage.example")
    _send(client, agent, 3)
    web.sign_in(owner.email)
    page = web.get("/admin/usage/")
    body = text_of(page)
    assert page.status_code == 200 and "charts@usage.example" in body
    assert body.count("<svg") == 4 and "<rect" in body and "Sends (per recipient) <span class=\"muted\">(3)" in body
    assert "<script src=\"http" not in body and "cdn" not in body.lower()
    assert web.get("/admin/usage/?interval=day").status_code == 200


def test_caps_editor_sets_each_level_and_the_banner_appears(web, world, owner, client, store):  # noqa: ANN001
    agent = world.sender(owner, "edit@usage.example")
    web.sign_in(owner.email)
    assert web.post("/admin/usage/caps/sends/", {"level": "token", "token_id": agent.token_id, "per_hour": "5"},
                    csrf=False).status_code == 400  # no CSRF token: refused
    resp = web.post("/admin/usage/caps/sends/", {"level": "token", "token_id": agent.token_id, "per_hour": "5"})
    assert resp.status_code == 303
    web.post("/admin/usage/caps/sends/", {"level": "inbox", "inbox_id": agent.inbox_id, "per_day": "100"})
    web.post("/admin/usage/caps/storage/", {"kind": "mailbox", "inbox_id": agent.inbox_id, "limit_gb": "1.5",
                                            "mode": "enforce", "alert_thresholds": "50, 90"})
    bad = web.post("/admin/usage/caps/sends/", {"level": "tenant", "per_hour": "lots"}, follow_redirects=True)
    assert "must be a whole number" in text_of(bad)
    with store.session() as db:
        rows = {(c.kind, c.level): c for c in db.scalars(select(UsageCap))}
    assert rows[("sends", "token")].per_hour == 5 and rows[("sends", "inbox")].per_day == 100
    assert rows[("mailbox", "inbox")].limit_bytes == 1_500_000_000 and rows[("mailbox", "inbox")].alert_thresholds == [50, 90]
    assert "cap-banner" not in text_of(web.get("/admin/usage/"))
    _send(client, agent, 4)  # 4 of 5: past 80%
    home = text_of(web.get("/admin/domains/"))
    banner = re.search(r'<p class="flash flash-error cap-banner"[^>]*>([^<]*)', home)
    assert banner and "token sends cap" in banner.group(1) and "80%" in banner.group(1)
    web.post("/admin/usage/caps/sends/", {"level": "token", "token_id": agent.token_id})  # all empty: removed
    assert "cap-banner" not in text_of(web.get("/admin/usage/"))


def test_members_cannot_edit_caps_and_operators_see_every_tenant(web, web_for, world, owner, client, operator):  # noqa: ANN001
    agent = world.sender(owner, "ops@usage.example")
    _send(client, agent, 2)
    member = world.member(owner)
    web.sign_in(member.email)
    assert web.get("/admin/usage/").status_code in (403, 404)
    assert web.post("/admin/usage/caps/sends/", {"level": "tenant", "per_hour": "1"}).status_code in (403, 404)
    ops = web_for()
    ops.sign_in(operator)
    table = text_of(ops.get("/admin/usage/tenants/"))
    assert owner.tenant_id in table and 'id="tenant-usage"' in table
    row = table[table.index(owner.tenant_id):]
    assert re.search(r'data-label="Sends">2<', row)


def test_cap_forms_refuse_what_the_api_refuses_and_store_nothing(web, world, store):
    """inf, nan, a huge number and a superscript digit: 400-style messages, no 500, no NaN cap."""
    from appliance.models import UsageCap
    from sqlalchemy import func, select
    owner = world.owner()
    web.sign_in(owner.email)
    for path, data in (("/admin/usage/caps/mailbox/", {"limit_gb": "inf"}), ("/admin/usage/caps/mailbox/", {"limit_gb": "nan"}),
                       ("/admin/usage/caps/spend/", {"monthly_limit": "nan"}),
                       ("/admin/usage/caps/sends/", {"level": "tenant", "per_hour": "99999999999999999999999"}),
                       ("/admin/usage/caps/sends/", {"level": "tenant", "per_hour": "\u00b2"})):
        resp = web.post(path, data)
        assert resp.status_code < 500, (path, data, resp.status_code)
    with store.session() as db:
        assert db.scalar(select(func.count()).select_from(UsageCap)) == 0
