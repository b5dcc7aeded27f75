"""Issue 21 points 3, 4 and 6: enrichment runs in the worker after the mail is stored (never
before the 250), as the `enrichment` cursor of the event tailer, with a backlog gauge on /metrics;
the message API shows the verdict, its reasons and the next step; people's marks teach the
tenant's naive Bayes model, which then changes verdicts on similar mail of that tenant only."""
from __future__ import annotations

import itertools
import re
from pathlib import Path

from sqlalchemy import select

from appliance.models import Event, Inbox, Message, PhishingModel
from appliance.services.intelligence import enrich
from appliance.services.mail import inbound
from appliance.worker import Worker
from tests.integration.smtp_fixtures import client as smtp_client
from tests.integration.smtp_fixtures import smtp_listener, tls_files  # noqa: F401

CORPUS = Path(__file__).resolve().parents[1] / "data" / "phishing" / "mail"
_n = itertools.count(1)


def backlog(client) -> int:
    text = client.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).get_data(as_text=True)
    return int(re.search(r"^gentbox_enrichment_backlog (\d+)$", text, re.M).group(1))


def message(client, owner, inbox_id: str, message_id: str) -> dict:
    resp = client.get(f"/v1/messages/{message_id}/?inbox_id={inbox_id}", headers=owner.auth)
    assert resp.status_code == 200, resp.json
    return resp.json


def test_mail_is_judged_by_the_worker_after_the_250_and_shown_by_the_api(
        world, store, settings, client, smtp_listener) -> None:
    owner = world.owner()
    address = "desk@harborlight.example"
    inbox_id = world.inbox(owner, address)
    listener = smtp_listener()
    lure = (CORPUS / "001-phishing-brand-harvest.eml").read_bytes().split(b"\r\n", 1)[1]  # without our A-R line
    note = (b"From: Sam <sam@partner.example>\r\nTo: " + address.encode() + b"\r\nSubject: Lunch\r\n"
            b"Message-ID: <lunch.1@partner.example>\r\n\r\nHi, can we meet next Tuesday at 12:30 for lunch?\r\n")
    with smtp_client(listener) as smtp:
        assert smtp.sendmail("alert@acc-service-desk.top", [address], lure) == {}
        assert smtp.sendmail("sam@partner.example", [address], note) == {}
    with store.session() as db:  # stored and answered 250, not judged yet: that is the worker's job
        rows = list(db.scalars(select(Message).where(Message.inbox_id == inbox_id).order_by(Message.created_at)))
        assert [m.enrichment for m in rows] == [None, None]
        phish_id, note_id = rows[0].id, rows[1].id
    assert backlog(client) >= 2

    worker = Worker(store, settings)
    try:
        assert worker.enrich_received() >= 2
    finally:
        worker.close()
    assert backlog(client) == 0

    judged = message(client, owner, inbox_id, phish_id)["enrichment"]
    assert judged["phishing"]["verdict"] == "phishing" and judged["model"] == "builtin"
    codes = {r["code"] for r in judged["phishing"]["reasons"]}
    assert {"link_text_mismatch", "brand_in_display_name", "first_time_sender"} <= codes
    assert all(r["detail"] for r in judged["phishing"]["reasons"])
    assert judged["next_step"]["action"] == "review"
    assert "suspicious" in message(client, owner, inbox_id, phish_id)["labels"]

    plain = message(client, owner, inbox_id, note_id)
    assert plain["enrichment"]["phishing"]["verdict"] == "safe" and "suspicious" not in plain["labels"]
    assert plain["enrichment"]["next_step"]["action"] == "schedule"
    assert plain["enrichment"]["next_step"]["due"] is not None
    with store.session() as db:
        enriched = {e.resource_id: e.payload for e in db.scalars(select(Event).where(Event.type == "message.enriched"))}
    assert enriched[phish_id]["verdict"] == "phishing" and enriched[note_id]["next_step"] == "schedule"


def test_an_inbox_with_the_features_off_is_left_alone(world, store, settings, client) -> None:
    owner = world.owner()
    inbox_id = world.inbox(owner)
    with store.session() as db:
        db.get(Inbox, inbox_id).settings = {"enrichment": {"model": "builtin", "enabled_features": [],
                                                           "budget_limit": None}}
    message_id = _receive(store, inbox_id, _lure(1))
    with store.session() as db:
        assert enrich.tail(db) >= 1
    with store.session() as db:
        assert db.get(Message, message_id).enrichment is None
        assert enrich.backlog(db) == 0


# --- naive Bayes ------------------------------------------------------------------------------
LURE = ("You have a new voicemail message waiting, duration {n} seconds, caller ID withheld. The voicemail "
        "portal keeps recordings for seven days. Listen to the recording from your voicemail portal today.")
BULLETIN = ("Security bulletin {n}: please verify your account immediately, before your password expires. Our security "
            "team rotates credentials quarterly; the bulletin explains the rotation schedule and the helpdesk hours.")


def _lure(n: int) -> bytes:
    host = f"vm{n}-portal{n % 7}.example"
    return (f"From: Voice Services <noreply@{host}>\r\nTo: desk@x.example\r\nSubject: Voicemail {n}\r\n"
            f"Message-ID: <vm{n}.{next(_n)}@{host}>\r\nContent-Type: text/plain\r\n\r\n{LURE.format(n=n)}\r\n"
            f"https://{host}/play/{n}\r\n").encode()


def _bulletin(n: int) -> bytes:
    return (f"From: Security Team <security{n}@bulletins{n}.example>\r\nTo: desk@x.example\r\n"
            f"Subject: Security bulletin {n}\r\nMessage-ID: <sb{n}.{next(_n)}@bulletins.example>\r\n"
            f"Content-Type: text/plain\r\n\r\n{BULLETIN.format(n=n)}\r\n").encode()


PASSED = {"spf": "pass", "dkim": "pass", "dmarc": "pass", "dmarc_aligned": True}


def _receive(store, inbox_id: str, raw: bytes, auth: dict | None = None) -> str:
    with store.session() as db:
        [stored] = inbound.receive(db, inbox_ids=[inbox_id], raw=raw, envelope_from="someone@example.net",
                                   envelope_to={inbox_id: "desk@x.example"}, authentication=auth)
        return stored.id


def _judge(store, *message_ids: str) -> list[str]:
    with store.session() as db:
        while enrich.tail(db) == enrich.BATCH:
            pass
    with store.session() as db:
        return [db.get(Message, m).enrichment["phishing"]["verdict"] for m in message_ids]


def test_marks_teach_the_tenants_model_and_leave_another_tenant_alone(world, store, client) -> None:
    owner_a, owner_b = world.owner(), world.owner()
    inbox_a, inbox_b = world.inbox(owner_a), world.inbox(owner_b)
    # Before any mark: the rules alone find the lure safe (it says little) and the bulletin suspicious.
    probe = [_receive(store, inbox_a, _lure(900)), _receive(store, inbox_a, _bulletin(900), PASSED),
             _receive(store, inbox_b, _lure(901)), _receive(store, inbox_b, _bulletin(901), PASSED)]
    assert _judge(store, *probe) == ["safe", "suspicious", "safe", "suspicious"]

    for n in range(20):  # 20 "phishing" and 20 "not phishing" marks by tenant A's people, over the API
        for raw, auth, mark in ((_lure(n), None, "phishing"), (_bulletin(n), PASSED, "safe")):
            message_id = _receive(store, inbox_a, raw, auth)
            resp = client.post(f"/v1/messages/{message_id}/phishing/?inbox_id={inbox_a}", headers=owner_a.auth,
                               json={"mark": mark})
            assert resp.status_code == 200, resp.json
            assert resp.json["enrichment"]["mark"] == mark
    with store.session() as db:
        model = db.get(PhishingModel, owner_a.tenant_id)
        assert (model.phishing_docs, model.safe_docs) == (20, 20)
        assert db.get(PhishingModel, owner_b.tenant_id) is None

    after = [_receive(store, inbox_a, _lure(950)), _receive(store, inbox_a, _bulletin(950), PASSED),
             _receive(store, inbox_b, _lure(951)), _receive(store, inbox_b, _bulletin(951), PASSED)]
    assert _judge(store, *after) == ["phishing", "safe", "safe", "suspicious"]
    with store.session() as db:
        reasons = db.get(Message, after[0]).enrichment["phishing"]["reasons"]
        assert "bayes" in [r["code"] for r in reasons]
        assert db.get(PhishingModel, owner_b.tenant_id) is None


def test_a_changed_mark_is_taken_back_and_marks_follow_tenancy(world, store, client) -> None:
    owner, other = world.owner(), world.owner()
    inbox_id = world.inbox(owner)
    message_id = _receive(store, inbox_id, _lure(1))
    url = f"/v1/messages/{message_id}/phishing/?inbox_id={inbox_id}"
    assert client.post(url, headers=owner.auth, json={"mark": "phishing"}).json["labels"] == ["suspicious"]
    changed = client.post(url, headers=owner.auth, json={"mark": "safe"}).json
    assert changed["enrichment"]["mark"] == "safe"
    with store.session() as db:
        model = db.get(PhishingModel, owner.tenant_id)
        assert (model.phishing_docs, model.safe_docs) == (0, 1)
        assert all(pair[0] == 0 for pair in model.tokens.values())
    assert client.post(url, headers=owner.auth, json={"mark": "spam"}).status_code == 400
    other_inbox = world.inbox(other)
    resp = client.post(f"/v1/messages/{message_id}/phishing/?inbox_id={other_inbox}", headers=other.auth,
                       json={"mark": "phishing"})
    assert resp.status_code == 404
