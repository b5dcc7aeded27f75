"""Auto-contacts (issue 17 point 3): the inbox's sends make one contact per new recipient, however
many sends race; `auto_contacts` off makes none; `last_contacted_at` follows mail both ways, the
inbound side computed from the stored messages (nothing added to the SMTP transaction)."""
from __future__ import annotations

import threading
from email.message import EmailMessage

from sqlalchemy import func, select

from appliance.models import Contact, ContactEmail, Event, Inbox
from appliance.services.mail import inbound
from tests.api.test_send import sending_box

NEW = "New.Person@Remote.TEST"


def _box(world, address: str = "sales@alpha.test"):  # noqa: ANN001, ANN202
    box = sending_box(world, world.owner(), address)
    return box, world.agent(box.owner, box.inbox_id, ["contacts:read", "contacts:write"])


def _send(client, box, to: str, name: str = ""):  # noqa: ANN001, ANN202
    return client.post("/v1/messages/", json={"to": [{"email": to, "name": name}], "subject": "Hi", "text_body": "x"},
                       headers=box.auth)


def test_twenty_concurrent_sends_to_a_new_address_make_one_contact(app, world, store):
    box, _reader = _box(world)
    barrier, answers = threading.Barrier(20), []

    def one() -> None:
        client = app.test_client()
        barrier.wait(timeout=30)
        answers.append(_send(client, box, NEW, "New Person").status_code)

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert answers == [201] * 20
    with store.session() as db:
        rows = db.execute(select(Contact.id, Contact.full_name, Contact.origin).join(
            ContactEmail, ContactEmail.contact_id == Contact.id).where(
            Contact.inbox_id == box.inbox_id, ContactEmail.address == NEW.lower())).all()
        assert len(rows) == 1 and rows[0].full_name == "New Person" and rows[0].origin == {"source": "auto"}
        assert db.scalar(select(func.count()).select_from(Contact).where(Contact.inbox_id == box.inbox_id)) == 1
        created = db.scalar(select(func.count()).select_from(Event).where(Event.type == "contact.created",
                                                                          Event.inbox_id == box.inbox_id))
        assert created == 1


def test_auto_contacts_off_makes_none_but_known_contacts_stay_current(client, world, store):
    box, reader = _box(world)
    with store.session() as db:
        db.get(Inbox, box.inbox_id).settings = {"auto_contacts": False}
    known = client.post("/v1/contacts/", json={"full_name": "Known", "emails": [{"address": "known@remote.test"}]},
                        headers=reader.auth).get_json()
    assert known["last_contacted_at"] is None
    assert _send(client, box, "stranger@remote.test").status_code == 201
    assert _send(client, box, "Known@Remote.test").status_code == 201
    listed = client.get("/v1/contacts/", headers=reader.auth).get_json()
    assert [c["full_name"] for c in listed["results"]] == ["Known"]
    assert listed["results"][0]["last_contacted_at"] is not None


def test_last_contacted_at_follows_mail_in_both_directions(client, world, store):
    box, reader = _box(world)
    assert _send(client, box, NEW).status_code == 201
    contact = client.get("/v1/contacts/", headers=reader.auth).get_json()["results"][0]
    assert contact["full_name"] == NEW.lower() and contact["source"] == "auto"
    detail = client.get(f"/v1/contacts/{contact['contact_id']}/", headers=reader.auth).get_json()
    rel = detail["relationship"]
    assert rel["message_count"] == 1 and rel["last_inbound_at"] is None and rel["last_outbound_at"]
    assert detail["last_contacted_at"] == rel["last_outbound_at"] and 0 < rel["strength"] <= 1

    reply = EmailMessage()
    reply["From"], reply["To"], reply["Subject"] = f"New Person <{NEW}>", "sales@alpha.test", "Re: Hi"
    reply.set_content("thanks")
    with store.session() as db:
        [stored] = inbound.receive(db, inbox_ids=[box.inbox_id], raw=reply.as_bytes(), envelope_from=NEW,
                                   envelope_to={box.inbox_id: "sales@alpha.test"})
    detail = client.get(f"/v1/contacts/{contact['contact_id']}/", headers=reader.auth).get_json()
    rel = detail["relationship"]
    assert rel["message_count"] == 2 and rel["last_inbound_at"] is not None
    assert detail["last_contacted_at"] == max(rel["last_inbound_at"], rel["last_outbound_at"])
    assert rel["last_inbound_at"] >= rel["last_outbound_at"]
