"""Issue 21 point 7 (the message view): the verdict and its reasons, a banner for `phishing`, the
next-step chip, and the "This is phishing" / "Not phishing" buttons (CSRF-checked POSTs) that teach
the tenant's model; another tenant's message is a 404 page."""
from __future__ import annotations

from pathlib import Path

from appliance.models import Inbox, Message, PhishingModel
from appliance.services.intelligence import enrich
from appliance.services.mail import inbound
from tests.webui.conftest import text_of

LURE = (Path(__file__).resolve().parents[1] / "data" / "phishing" / "mail" / "001-phishing-brand-harvest.eml")
NOTE = (b"From: Sam <sam@partner.example>\r\nTo: desk@x.example\r\nSubject: Report\r\n"
        b"Message-ID: <report.1@partner.example>\r\n\r\nCould you send me the report?\r\n")


def _received(world, owner, raw: bytes) -> tuple[str, str]:  # noqa: ANN001
    inbox_id = world.inbox(owner)
    with world.store.session() as db:
        address = db.get(Inbox, inbox_id).address
        [stored] = inbound.receive(db, inbox_ids=[inbox_id], raw=raw, envelope_from="x@lure.example",
                                   envelope_to={inbox_id: address})
    with world.store.session() as db:
        enrich.tail(db)
    return inbox_id, stored.id


def test_a_phishing_message_shows_its_banner_reasons_and_buttons(web, world, owner) -> None:  # noqa: ANN001
    inbox_id, message_id = _received(world, owner, LURE.read_bytes())
    web.sign_in(owner.email)
    page = text_of(web.get(f"/admin/mail/{inbox_id}/messages/{message_id}/"))
    assert "This looks like phishing." in page and 'data-verdict="phishing"' in page
    assert "link_text_mismatch" in page and "login.microsoftonline.com" in page  # a reason with its detail
    assert 'data-action="review"' in page and "This is phishing" in page and "Not phishing" in page

    url = f"/admin/mail/{inbox_id}/messages/{message_id}/phishing/"
    assert web.post(url, {"mark": "safe"}, csrf=False).status_code == 400
    resp = web.post(url, {"mark": "safe"})
    assert resp.status_code == 303 and resp.headers["Location"].endswith(f"/messages/{message_id}/")
    with world.store.read_sessions() as db:
        message = db.get(Message, message_id)
        assert message.enrichment["mark"] == "safe" and "suspicious" not in message.labels
        assert db.get(PhishingModel, owner.tenant_id).safe_docs == 1
    page = text_of(web.get(f"/admin/mail/{inbox_id}/messages/{message_id}/"))
    assert "This looks like phishing." not in page and "marked by a person as not phishing" in page


def test_a_plain_message_has_no_banner_and_shows_its_next_step(web, world, owner) -> None:  # noqa: ANN001
    inbox_id, message_id = _received(world, owner, NOTE)
    web.sign_in(owner.email)
    page = text_of(web.get(f"/admin/mail/{inbox_id}/messages/{message_id}/"))
    assert "This looks like phishing." not in page and 'data-verdict="safe"' in page
    assert 'data-action="reply"' in page and "Could you send me the report?" in page


def test_another_tenant_cannot_mark_it(web, world, owner) -> None:  # noqa: ANN001
    inbox_id, message_id = _received(world, owner, NOTE)
    stranger = world.owner()
    mine = world.inbox(stranger)
    web.sign_in(stranger.email)
    for path in (f"/admin/mail/{inbox_id}/messages/{message_id}/phishing/",
                 f"/admin/mail/{mine}/messages/{message_id}/phishing/"):
        assert web.post(path, {"mark": "phishing"}).status_code == 404, path
    with world.store.read_sessions() as db:
        assert db.get(Message, message_id).enrichment.get("mark") is None
