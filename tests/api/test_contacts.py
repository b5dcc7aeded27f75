"""Contract section 11, contacts (issue 17 points 1 and 6): CRUD, normalised addresses, search on
both backends, labels, exact offset pages, and the computed relationship."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from appliance.models import Label
from tests.helpers import assert_error
from tests.world import Agent, World

SCOPES = ["contacts:read", "contacts:write"]


@pytest.fixture
def agent(world: World) -> Agent:
    owner = world.owner()
    return world.agent(owner, world.inbox(owner), SCOPES)


def _create(client, agent: Agent, **fields):  # noqa: ANN001, ANN202
    return client.post("/v1/contacts/", json=fields, headers=agent.auth)


def test_create_read_update_delete_a_contact(client, agent, store):
    resp = _create(client, agent, full_name="Zoë Brandt", company="Acme",
                   emails=[{"label": "work", "address": "Zoe.Brandt@EXAMPLE.org"}],
                   phones=[{"label": "cell", "number": "+41 44 123 45 67"}], labels=["friends"],
                   anniversaries=[{"type": "birthday", "date": "--02-29"}], notes="met at FOSDEM")
    assert resp.status_code == 201, resp.get_json()
    body = resp.get_json()
    cid = body["contact_id"]
    assert cid.startswith("ctc_") and body["emails"] == [{"label": "work", "address": "zoe.brandt@example.org"}]
    assert body["active_sequences"] == [] and body["relationship"]["message_count"] == 0
    assert body["source"] == "manual" and body["last_contacted_at"] is None
    with store.session() as db:  # the label name is registered as a contact label
        assert db.scalar(select(Label.type).where(Label.inbox_id == agent.inbox_id, Label.name == "friends")) == "contact"
    got = client.get(f"/v1/contacts/{cid}/", headers=agent.auth).get_json()
    assert got["full_name"] == "Zoë Brandt" and got["anniversaries"] == [{"type": "birthday", "date": "--02-29"}]
    patched = client.patch(f"/v1/contacts/{cid}/", json={"company": "Initech", "labels": []}, headers=agent.auth)
    assert patched.status_code == 200 and patched.get_json()["company"] == "Initech"
    assert patched.get_json()["emails"][0]["address"] == "zoe.brandt@example.org"
    assert client.delete(f"/v1/contacts/{cid}/", headers=agent.auth).status_code == 204
    assert_error(client.get(f"/v1/contacts/{cid}/", headers=agent.auth), 404, "not_found")


def test_an_address_on_another_contact_is_409_naming_it_whatever_its_spelling(client, agent):
    first = _create(client, agent, full_name="Ann", emails=[{"address": "ann@bücher.example"}]).get_json()
    assert first["emails"][0]["address"] == "ann@xn--bcher-kva.example"
    for spelling in ("ANN@BÜCHER.EXAMPLE", "ann@xn--bcher-kva.example"):
        err = assert_error(_create(client, agent, full_name="Ann 2", emails=[{"address": spelling}]), 409, "conflict")
        assert first["contact_id"] in err["message"]
    other = _create(client, agent, full_name="Bob", emails=[{"address": "bob@example.org"}]).get_json()
    err = assert_error(client.patch(f"/v1/contacts/{other['contact_id']}/", json={
        "emails": [{"address": "Ann@bücher.example"}]}, headers=agent.auth), 409, "conflict")
    assert first["contact_id"] in err["message"]


def test_bad_input_is_400_naming_the_field(client, agent):
    assert_error(_create(client, agent, emails=[{"address": "not an address"}]), 400, "validation_error",
                 "emails[0].address")
    assert_error(_create(client, agent, full_name="X", anniversaries=[{"type": "birthday", "date": "2023-02-29"}]),
                 400, "validation_error", "anniversaries[0].date")
    assert_error(_create(client, agent, full_name="X", phones=[{"number": "call me"}]), 400, "validation_error",
                 "phones[0].number")
    assert_error(client.get("/v1/contacts/?limit=0", headers=agent.auth), 400, "validation_error", "limit")


def test_search_finds_part_of_a_name_an_address_and_a_phone_number(client, agent):
    _create(client, agent, full_name="Margarethe Økland", emails=[{"address": "m.okland@fjord.example"}],
            phones=[{"number": "+47 22 33 44 55"}])
    _create(client, agent, full_name="Peter Pan", emails=[{"address": "peter@neverland.example"}],
            phones=[{"number": "+44 20 7946 0018"}])

    def names(q: str) -> list[str]:
        resp = client.get("/v1/contacts/", query_string={"q": q}, headers=agent.auth)
        assert resp.status_code == 200, resp.get_json()
        return [c["full_name"] for c in resp.get_json()["results"]]

    assert names("garet") == ["Margarethe Økland"]
    assert names("økl") == ["Margarethe Økland"]
    assert names("fjord.exa") == ["Margarethe Økland"]
    assert names("NEVERLAND") == ["Peter Pan"]
    assert names("22334") == ["Margarethe Økland"]  # digits of "+47 22 33 44 55"
    assert names("7946 00") == ["Peter Pan"]
    assert names("pe") == ["Peter Pan"]  # shorter than a trigram: still found
    assert names("100%") == []  # LIKE wildcards are plain characters


def test_pages_are_exact_at_their_boundaries(client, agent):
    for i in range(7):
        _create(client, agent, full_name=f"Person {i:02d}", labels=["team"] if i % 2 == 0 else [])

    def page(**query) -> dict:
        resp = client.get("/v1/contacts/", query_string=query, headers=agent.auth)
        assert resp.status_code == 200, resp.get_json()
        return resp.get_json()

    first, second, third = page(limit=3), page(limit=3, position=3), page(limit=3, position=6)
    assert [first["total"], first["position"], first["limit"]] == [7, 0, 3]
    got = [c["full_name"] for p in (first, second, third) for c in p["results"]]
    assert got == [f"Person {i:02d}" for i in range(7)] and len(third["results"]) == 1
    assert page(limit=3, position=7) == {"results": [], "total": 7, "position": 7, "limit": 3}
    team = page(label="team")
    assert team["total"] == 4 and {c["full_name"] for c in team["results"]} == {f"Person {i:02d}" for i in (0, 2, 4, 6)}
    assert page(label="nobody")["total"] == 0


def test_label_filter_takes_a_label_id(client, agent, store):
    _create(client, agent, full_name="Tagged", labels=["vip"])
    _create(client, agent, full_name="Plain")
    with store.session() as db:
        label_id = db.scalar(select(Label.id).where(Label.inbox_id == agent.inbox_id, Label.name == "vip"))
    body = client.get("/v1/contacts/", query_string={"label": label_id}, headers=agent.auth).get_json()
    assert [c["full_name"] for c in body["results"]] == ["Tagged"] and body["total"] == 1


def test_a_message_label_cannot_tag_a_contact(client, agent, store):
    from appliance.services.mail import labels
    with store.session() as db:
        from appliance.models import Inbox
        inbox = db.get(Inbox, agent.inbox_id)
        labels.ensure(db, tenant_id=inbox.tenant_id, inbox_id=inbox.id, names=["invoices"], kind="message")
    assert_error(_create(client, agent, full_name="X", labels=["invoices"]), 400, "label_type_mismatch")


def test_contacts_of_another_inbox_or_tenant_are_404(client, world, agent):
    cid = _create(client, agent, full_name="Mine").get_json()["contact_id"]
    stranger = world.owner()
    theirs = world.agent(stranger, world.inbox(stranger), SCOPES)
    assert_error(client.get(f"/v1/contacts/{cid}/", headers=theirs.auth), 404, "not_found")
    assert_error(client.delete(f"/v1/contacts/{cid}/", headers=theirs.auth), 404, "not_found")
    assert client.get("/v1/contacts/", headers=theirs.auth).get_json()["total"] == 0
    reader = world.agent(stranger, theirs.inbox_id, ["contacts:read"])
    assert_error(client.post("/v1/contacts/", json={"full_name": "x"}, headers=reader.auth), 403, "insufficient_scope")
