"""Issue 20 point 7 (sender rules, forwarding, sequences part): the sender-rules page of an inbox
saves both lists and the forwarding (errors as flash messages), the sequences pages create a
sequence from form rows, enroll a contact and cancel the enrollment, and delete the sequence; CSRF
on every form; another tenant's pages and forms are 404."""
from __future__ import annotations

from sqlalchemy import select

from appliance.models import InboxForwarding, SenderRules, Sequence, SequenceEnrollment
from tests.webui.conftest import text_of


def _one(store, model):  # noqa: ANN001, ANN202
    with store.session() as db:
        return db.scalar(select(model))


def test_sender_rules_and_forwarding_are_saved_from_the_page(web, web_for, world, store):
    owner = world.owner()
    inbox = world.inbox(owner, "desk@rules.example.com")
    web.sign_in(owner.email)
    assert "Sender rules of desk@rules.example.com" in text_of(web.get(f"/admin/inboxes/{inbox}/sender-rules/"))
    assert web.post(f"/admin/inboxes/{inbox}/sender-rules/", {"inbound_mode": "blocklist"},
                    csrf=False).status_code == 400
    saved = web.post(f"/admin/inboxes/{inbox}/sender-rules/", {
        "inbound_mode": "allowlist", "inbound_patterns": "@partner.example\r\n\r\n*.Vendor.example\r\n",
        "outbound_mode": "blocklist", "outbound_patterns": "boss@rival.example"})
    assert saved.status_code == 303 and "Saved the sender rules" in text_of(web.get(saved.headers["Location"]))
    rules = _one(store, SenderRules)
    assert (rules.inbound_mode, rules.inbound_patterns) == ("allowlist", ["@partner.example", "*.vendor.example"])
    assert (rules.outbound_mode, rules.outbound_patterns) == ("blocklist", ["boss@rival.example"])
    bad = web.post(f"/admin/inboxes/{inbox}/sender-rules/", {"inbound_mode": "allowlist",
                                                              "inbound_patterns": "nodots"})
    assert "inbound_patterns[0] is not an email address" in text_of(web.get(bad.headers["Location"]))
    assert _one(store, SenderRules).inbound_patterns == ["@partner.example", "*.vendor.example"]  # unchanged
    fwd = web.post(f"/admin/inboxes/{inbox}/forwarding/", {"default_address": "me@home.example", "enabled": "on"})
    assert "Saved the forwarding" in text_of(web.get(fwd.headers["Location"]))
    forwarding = _one(store, InboxForwarding)
    assert (forwarding.default_address, forwarding.enabled, forwarding.keep_copy) == ("me@home.example", True, False)
    stranger = web_for()
    stranger.sign_in(world.owner().email)
    assert stranger.get(f"/admin/inboxes/{inbox}/sender-rules/").status_code == 404
    assert stranger.post(f"/admin/inboxes/{inbox}/forwarding/", {"enabled": "on"}).status_code == 404


def test_a_sequence_is_made_from_rows_and_enrolls_a_contact(web, web_for, world, store, client):
    owner = world.owner()
    inbox = world.inbox(owner, "sales@seqpage.example.com")
    made = client.post("/v1/contacts/", json={"inbox_id": inbox, "full_name": "Carol Page",
                                              "emails": [{"address": "carol@far.example"}]}, headers=owner.auth)
    assert made.status_code == 201, made.get_json()
    web.sign_in(owner.email)
    assert "No sequences yet" in text_of(web.get(f"/admin/inboxes/{inbox}/sequences/"))
    bad = web.post(f"/admin/inboxes/{inbox}/sequences/", {"name": "Empty"})
    assert "emails" in text_of(web.get(bad.headers["Location"]))
    created = web.post(f"/admin/inboxes/{inbox}/sequences/", {
        "name": "Trial", "exit_on_reply": "on", "delay_0": "0", "subject_0": "Welcome", "body_0": "Hello",
        "delay_1": "2", "subject_1": "", "body_1": "Any questions?", "delay_2": "2", "subject_2": "", "body_2": ""})
    assert created.status_code == 303
    sequence = _one(store, Sequence)
    assert [(s["delay_days"], s["subject"]) for s in sequence.emails] == [(0, "Welcome"), (2, None)]
    page = text_of(web.get(created.headers["Location"]))
    assert "Trial" in page and "Nobody is enrolled yet" in page and "Carol Page" in page
    enrolled = web.post(f"/admin/sequences/{sequence.id}/enrollments/", {"contact_id": made.json["contact_id"]})
    assert "Enrolled the contact" in text_of(web.get(enrolled.headers["Location"]))
    enrollment = _one(store, SequenceEnrollment)
    assert enrollment.status == "active"
    stranger = web_for()
    stranger.sign_in(world.owner().email)
    assert stranger.get(f"/admin/sequences/{sequence.id}/").status_code == 404
    assert stranger.post(f"/admin/sequences/{sequence.id}/delete/", {"confirm": "yes"}).status_code == 404
    cancel = f"/admin/sequences/{sequence.id}/enrollments/{enrollment.id}/cancel/"
    assert web.post(cancel, {}, csrf=False).status_code == 400
    assert web.post(cancel, {}).status_code == 303
    assert _one(store, SequenceEnrollment).status == "cancelled"
    asked = web.post(f"/admin/sequences/{sequence.id}/delete/", {})
    assert asked.status_code == 200 and "active enrollments are cancelled" in text_of(asked)
    assert web.post(f"/admin/sequences/{sequence.id}/delete/", {"confirm": "yes"}).status_code == 303
    assert _one(store, Sequence) is None
