"""Approvals in a real browser (issue 8): an agent whose token requires approval for email:send
sends through the API of the live server: held, nothing reaches the remote MX. The owner sees the
badge in the navigation, opens the approvals page and the preview, approves (confirming in the
dialog), and the real Worker delivers the message over SMTP to the remote MX (aiosmtpd on
127.0.0.x found through MX records in dnsmasq, as in tests/integration/test_approvals_delivery.py)."""
from __future__ import annotations

import json
import urllib.request

from sqlalchemy import update

from appliance.models import SystemMail
from appliance.worker import Worker
from tests.browser.conftest import make_owner, sign_in
from tests.integration.remote_mail import remote_world  # noqa: F401
from tests.integration.test_outbound_delivery import delivery_settings

SENDER = "agent@approvals-browser.example"


def api_send(base_url: str, token: str, body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(base_url + "/v1/messages/", data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return resp.status, json.loads(resp.read())


def test_the_owner_approves_a_held_message_in_the_browser_and_it_is_delivered(
        live_server, new_page, remote_world, make_settings, screenshot):  # noqa: ANN001, F811
    world = live_server.world
    owner = make_owner(live_server)
    agent = world.sender(owner, SENDER)
    held = world.agent(owner, agent.inbox_id, ["email:send", "email:read"], requires_approval=["email:send"])
    selector, public = world.signing_key("approvals-browser.example")
    remote_world.dns.publish(f"{selector}._domainkey.approvals-browser.example", "TXT", f"v=DKIM1; k=rsa; p={public}")
    first, second = remote_world.receivers
    remote_world.domain("partner.example", mx=[(10, first), (20, second)])
    with live_server.store.session() as db:  # the owner's own sign-up email is not what this test watches
        db.execute(update(SystemMail).values(status="sent", raw=b""))
    worker = Worker(live_server.store, delivery_settings(make_settings, remote_world))
    try:
        status, answer = api_send(live_server.base_url, held.raw, {
            "to": [{"email": "ann@partner.example", "name": "Ann Example"}], "subject": "Contract for signature",
            "text_body": "Hello Ann,\n\nPlease sign the attached contract.\n",
            "html_body": "<p>Hello Ann,</p><p>Please <b>sign</b> the attached contract.</p>"})
        assert status == 202 and answer["queued"] is True
        worker.run_until_idle()
        assert [d for r in remote_world.receivers for d in r.deliveries] == []  # held: nothing left the box

        page = new_page()
        sign_in(page, owner.email)
        nav = page.get_by_role("navigation", name="Main")
        approvals_link = nav.get_by_role("link", name="Approvals")
        assert approvals_link.locator(".badge").inner_text() == "1"
        approvals_link.click()
        page.get_by_role("heading", name="Approvals").wait_for()
        assert page.get_by_text("Please sign the attached contract.").is_visible()
        page.get_by_role("link", name="Contract for signature").click()
        page.get_by_role("heading", name="Contract for signature").wait_for()
        assert page.get_by_text("Ann Example <ann@partner.example>").is_visible()
        preview = page.frame_locator("iframe.mailframe")
        preview.get_by_text("sign").first.wait_for()
        assert preview.locator("b").inner_text() == "sign"
        screenshot(page, "approval")

        page.get_by_role("button", name="Approve").click()
        dialog = page.get_by_role("dialog")
        assert "It is signed and sent exactly as shown." in dialog.inner_text()
        dialog.get_by_role("button", name="Yes, continue").click()
        page.get_by_text("Approved “Contract for signature”: it is queued for delivery.").wait_for()
        assert nav.get_by_role("link", name="Approvals").locator(".badge").count() == 0
        nav.get_by_role("link", name="Queue").click()  # approved: queued, not yet delivered
        page.get_by_role("cell", name="ann@partner.example queued").wait_for()
        screenshot(page, "queue")

        worker.run_until_idle()
        [delivery] = first.wait_for(1)
        assert delivery.mail_from == SENDER and delivery.rcpt_tos == ("ann@partner.example",)
        message = delivery.message()
        assert message["Subject"] == "Contract for signature" and delivery.data.startswith(b"DKIM-Signature:")
        assert "Please sign the attached contract." in message.get_body(("plain",)).get_content()
        nav.get_by_role("link", name="Approvals").click()
        page.get_by_role("link", name="Approved").click()
        page.get_by_role("link", name="Contract for signature").wait_for()
    finally:
        worker.close()
