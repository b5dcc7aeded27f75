"""Browser scenario 2 (issue 6): the owner adds a domain and sees its five required records missing;
the test publishes what the page shows on the loopback DNS server (dnsmasq); "Verify now" turns
every badge green; the owner creates an inbox and a token; the token, shown once, works against
the API of the live server."""
from __future__ import annotations

from typing import Iterator

import pytest
import requests

from appliance.heartbeat import Heartbeat
from tests.browser.conftest import LiveServer, make_operator, make_owner, serve_live, sign_in

DOMAIN = "agents.test"
GREEN = "rgb(227, 244, 232)"  # .status-ok's background in gentbox.css


@pytest.fixture
def live_server(make_settings, make_store, dns_server) -> Iterator[LiveServer]:
    """The conftest's live server, its resolver pointed at the loopback DNS server."""
    with serve_live(make_settings, make_store, dns_servers=dns_server.address, dns_timeout=2.0,
                    doctor_timeout=1.0) as live:
        yield live


def _records(page) -> list[dict]:  # noqa: ANN001
    """The DNS records as the page shows them (type, host and value from their copy buttons)."""
    page.wait_for_load_state()  # the whole table, not only the part parsed so far
    out = []
    for row in page.locator("tr[data-purpose]").all():
        purpose = row.get_attribute("data-purpose")
        out.append({"purpose": purpose, "required": row.get_attribute("data-required") == "yes",
                    "type": row.locator("td[data-label=Type]").inner_text().strip(),
                    "host": row.get_by_role("button", name=f"Copy the host of the {purpose} record").get_attribute("data-copy"),
                    "value": row.get_by_role("button", name=f"Copy the value of the {purpose} record").get_attribute("data-copy"),
                    "status": row.locator("[data-record-status]").inner_text().strip()})
    return out


def _no_horizontal_scroll(page) -> bool:  # noqa: ANN001
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def _clipboard(page) -> str:  # noqa: ANN001
    return page.evaluate("navigator.clipboard.readText()")


def test_domain_setup_inbox_and_token(live_server, new_page, dns_server, screenshot):
    console: list[str] = []
    page = new_page(permissions=["clipboard-read", "clipboard-write"])
    page.on("console", lambda m: console.append(m.text) if m.type in ("error", "warning") else None)
    owner = make_owner(live_server)
    sign_in(page, owner.email)
    nav = page.get_by_role("navigation", name="Main")

    page.get_by_role("heading", name="Dashboard").wait_for()  # where signing in lands
    assert page.get_by_role("link", name="Add a domain").is_visible()  # the owner's next step
    screenshot(page, "dashboard")
    nav.get_by_role("link", name="Domains").click()
    page.get_by_text("No domains yet: add one to start.").wait_for()
    page.get_by_label("Domain name").fill(DOMAIN)
    page.get_by_role("button", name="Add domain").click()
    page.get_by_role("heading", name=DOMAIN).wait_for()

    records = _records(page)
    required = [r for r in records if r["required"]]
    assert len(required) == 5, records
    assert [r["status"] for r in required] == ["missing"] * 5
    assert {r["purpose"] for r in required} == {"mx", "spf", "dkim", "dmarc", "verification"}
    screenshot(page, "domain-records-missing")

    # The copy button puts the exact value on the clipboard (gentbox.js, no inline script).
    page.get_by_role("button", name="Copy the value of the dkim record").first.click()  # RSA; Ed25519's follows
    page.wait_for_function("(v) => navigator.clipboard.readText().then(t => t === v)",
                           arg=next(r["value"] for r in records if r["purpose"] == "dkim"))

    # Publish exactly what the page asked for, as the owner would at their DNS provider.
    dns_server.publish_domain_records(DOMAIN, records)
    page.get_by_role("button", name="Verify now").click()
    page.get_by_text(f"{DOMAIN} is verified: every required record is published.").wait_for()
    after = _records(page)
    assert [r["status"] for r in after] == ["ok"] * len(records)
    badges = page.locator("tr[data-purpose] [data-record-status]")
    colours = badges.evaluate_all("els => els.map(e => getComputedStyle(e).backgroundColor)")
    assert colours == [GREEN] * len(records)
    assert page.locator("#domain-status").inner_text() == "verified"
    screenshot(page, "domain-records-verified")

    page.set_viewport_size({"width": 375, "height": 740})  # the records table at phone width
    assert _no_horizontal_scroll(page)
    page.set_viewport_size({"width": 1280, "height": 800})

    nav.get_by_role("link", name="Inboxes").click()
    page.get_by_label("Address name").fill("agent")
    page.get_by_label("Domain", exact=True).select_option(DOMAIN)
    page.get_by_label("Display name (optional)").fill("Support Agent")
    page.get_by_role("button", name="Create inbox").click()
    page.get_by_text(f"Created the inbox agent@{DOMAIN}.").wait_for()
    screenshot(page, "inboxes")

    nav.get_by_role("link", name="Tokens").click()
    page.get_by_label("Inbox", exact=True).select_option(label=f"agent@{DOMAIN}")
    page.get_by_label("Label", exact=True).fill("support-bot")
    page.get_by_label("email:read", exact=True).check()
    page.get_by_label("email:send", exact=True).check()
    page.get_by_role("button", name="Create token").click()
    page.get_by_role("heading", name="Token created").wait_for()
    raw = page.locator("#raw-token").inner_text().strip()
    assert raw.startswith("gent_")
    screenshot(page, "token-created")
    page.get_by_role("button", name="Copy token").click()
    page.wait_for_function("(v) => navigator.clipboard.readText().then(t => t === v)", arg=raw)

    # The token works against the live server's API, over real HTTP.
    auth = {"Authorization": f"Bearer {raw}"}
    listed = requests.get(live_server.url("/v1/messages/"), headers=auth, timeout=10)
    assert listed.status_code == 200, listed.text
    assert listed.json()["results"] == []
    me = requests.get(live_server.url("/v1/users/me/"), headers=auth, timeout=10).json()
    assert me["address"] == f"agent@{DOMAIN}" and me["scopes"] == ["email:read", "email:send"]

    # Never shown again: not on the list, not after going back to the page.
    page.get_by_role("link", name="Done").click()
    page.get_by_role("heading", name="Agent tokens").wait_for()
    assert raw not in page.content()
    row = page.get_by_role("row").filter(has_text="support-bot")
    assert row.get_by_text("active").is_visible()
    assert "never" not in row.locator("td[data-label='Last used']").inner_text()
    screenshot(page, "tokens")

    nav.get_by_role("link", name="Events").click()
    page.get_by_role("heading", name="Events").wait_for()
    for kind in ("token.created", "inbox.created", "domain.verified", "user.signed_up"):
        assert page.get_by_role("row").filter(has_text=kind).count() == 1, kind
    screenshot(page, "events")
    assert not [m for m in console if "Content Security Policy" in m], console


def test_the_operator_dashboard_shows_health_and_runs_every_check(live_server, new_page, screenshot):
    for kind in ("web", "smtp", "worker"):
        Heartbeat(live_server.store, kind, live_server.settings.heartbeat_interval).beat()
    page = new_page(viewport={"width": 375, "height": 740})
    sign_in(page, make_operator(live_server))
    page.get_by_role("heading", name="Dashboard").wait_for()
    health = page.locator("section", has=page.get_by_role("heading", name="Health"))
    for kind in ("web", "smtp", "worker"):
        assert health.locator(f"[data-check='process.{kind}'] .status").inner_text() == "pass"
    assert page.get_by_role("heading", name="The whole box's queue").is_visible()
    assert _no_horizontal_scroll(page)
    screenshot(page, "dashboard-operator")
    page.get_by_role("link", name="Run every check").click()
    page.get_by_role("heading", name="Health").wait_for()
    for name in ("port", "outbound", "disk", "database", "queue", "clock"):
        assert page.locator(f"[data-check^={name!r}]").count() >= 1, name
    assert _no_horizontal_scroll(page)
    screenshot(page, "health")
