"""vCard import and export (issue 17 point 2): 50 cards of 3.0 and 4.0 with folded lines, UTF-8
names, several addresses and phones round-trip; a bad card is reported by index and never stops
the others; importing the same file twice creates nothing new."""
from __future__ import annotations

import re

import pytest

from tests.helpers import assert_error
from tests.world import Agent, World

SCOPES = ["contacts:read", "contacts:write"]
NAMES = ["Zoë Brandt", "Łukasz Żółć", "山田 太郎", "Ærø Skøbing", "José Núñez", "Ольга Петрова"]


def _fold(line: str) -> str:
    """RFC 6350 3.2: lines longer than 75 octets continue on lines that start with a space."""
    out, rest = [], line
    while len(rest.encode()) > 60:
        out.append(rest[:40])
        rest = rest[40:]
    return "\r\n ".join(out + [rest])


def card(i: int, version: str = "") -> str:
    version = version or ("3.0" if i % 2 == 0 else "4.0")
    name = f"{NAMES[i % len(NAMES)]} {i:02d}"
    lines = ["BEGIN:VCARD", f"VERSION:{version}", f"UID:urn:uuid:00000000-0000-4000-8000-{i:012d}", f"FN:{name}",
             f"N:{i:02d};{NAMES[i % len(NAMES)]};;;", f"EMAIL;TYPE=INTERNET,WORK:person{i}@Work.Example.com",
             f"EMAIL;TYPE=home:p{i}.home@bücher.example"]
    if version == "3.0":
        lines += [f"TEL;TYPE=CELL:+41 79 {i:03d} 00 11", f"TEL;TYPE=WORK,VOICE:+41 44 {i:03d} 22 33",
                  f"BDAY:19{50 + i}-0{1 + i % 9}-1{i % 9}", "CATEGORIES:friends,fosdem"]
    else:
        lines += [f"TEL;VALUE=uri;TYPE=cell:tel:+1-555-{i:03d}-0100", f"TEL;TYPE=home:+1 555 {i:03d} 0200",
                  f"BDAY:--0{1 + i % 9}2{i % 9}", f"ANNIVERSARY:2010{1 + i % 9:02d}15", "CATEGORIES:team"]
    lines += [f"ORG:Acme Ünlimited {i}", _fold(f"NOTE:Met {name} at the conference; a long note that folds "
                                               f"over several physical lines, with ümlauts and emoji 🎉 ({i})."),
              "PHOTO;ENCODING=b;TYPE=JPEG:/9j/4AAQSkZJRgABAQ==", "END:VCARD"]
    return "\r\n".join(lines) + "\r\n"


def _import(client, agent: Agent, data: bytes):  # noqa: ANN001, ANN202
    return client.post("/v1/contacts/import/", data=data, headers={**agent.auth, "Content-Type": "text/vcard"})


def _all(client, agent: Agent) -> dict[str, dict]:  # noqa: ANN001
    body = client.get("/v1/contacts/", query_string={"limit": 200}, headers=agent.auth).get_json()
    keep = ("full_name", "emails", "phones", "company", "notes", "labels", "anniversaries")
    return {c["full_name"]: {k: c[k] for k in keep} for c in body["results"]}


@pytest.fixture
def agents(world: World) -> tuple[Agent, Agent]:
    owner = world.owner()
    return (world.agent(owner, world.inbox(owner), SCOPES), world.agent(owner, world.inbox(owner), SCOPES))


def test_fifty_cards_import_export_and_reimport_to_the_same_data(client, agents):
    first, second = agents
    data = "".join(card(i) for i in range(50)).encode()
    resp = _import(client, first, data)
    assert resp.status_code == 200, resp.get_json()
    assert resp.get_json() == {"created": 50, "updated": 0, "skipped": 0, "errors": []}
    imported = _all(client, first)
    zoe = imported["Zoë Brandt 00"]
    assert zoe["emails"] == [{"label": "work", "address": "person0@work.example.com"},
                             {"label": "home", "address": "p0.home@xn--bcher-kva.example"}]
    assert zoe["phones"] == [{"label": "cell", "number": "+41 79 000 00 11"},
                             {"label": "work", "number": "+41 44 000 22 33"}]
    assert zoe["anniversaries"] == [{"type": "birthday", "date": "1950-01-10"}]
    assert zoe["labels"] == ["friends", "fosdem"] and zoe["company"] == "Acme Ünlimited 0"
    assert zoe["notes"].startswith("Met Zoë Brandt 00 at the conference; a long note that folds over") and "🎉" in zoe["notes"]
    lukasz = imported["Łukasz Żółć 01"]
    assert lukasz["phones"][0] == {"label": "cell", "number": "+1-555-001-0100"}
    assert lukasz["anniversaries"] == [{"type": "birthday", "date": "--02-21"}, {"type": "anniversary", "date": "2010-02-15"}]

    exported = client.get("/v1/contacts/export/", headers=first.auth)
    assert exported.status_code == 200 and exported.mimetype == "text/vcard"
    text = exported.get_data(as_text=True)
    assert text.count("BEGIN:VCARD") == 50 and "PHOTO" not in text
    assert all(len(line.encode()) <= 75 for line in text.split("\r\n"))  # folded as the RFC says
    assert _import(client, second, exported.get_data()).get_json() == {"created": 50, "updated": 0, "skipped": 0,
                                                                       "errors": []}
    assert _all(client, second) == imported
    # The same file again, and the export of what it made: nothing new (matched by UID).
    assert _import(client, first, data).get_json() == {"created": 0, "updated": 0, "skipped": 50, "errors": []}
    assert _import(client, first, exported.get_data()).get_json()["created"] == 0
    assert _all(client, first) == imported


def test_three_broken_cards_are_named_and_the_other_47_imported(client, agents):
    agent = agents[0]
    cards = [card(i) for i in range(50)]
    cards[5] = cards[5].replace("END:VCARD\r\n", "")  # never ends: the next BEGIN starts a new card
    cards[17] = re.sub(r"BDAY:[^\r]*", "BDAY:sometime in spring", cards[17])
    cards[33] = cards[33].replace("person33@Work.Example.com", "not an address")
    resp = _import(client, agent, "".join(cards).encode())
    body = resp.get_json()
    assert resp.status_code == 200, body
    assert body["created"] == 47 and [e["index"] for e in body["errors"]] == [5, 17, 33], body
    assert all(e["message"] for e in body["errors"])
    names = _all(client, agent)
    assert len(names) == 47 and "Ærø Skøbing 33" not in names and "Zoë Brandt 06" in names


def test_a_card_matching_an_address_updates_that_contact(client, agents):
    agent = agents[0]
    made = client.post("/v1/contacts/", json={"full_name": "Old Name", "emails": [{"address": "person3@work.example.com"}]},
                       headers=agent.auth).get_json()
    body = _import(client, agent, card(3).replace("UID:", "X-NO-UID:").encode()).get_json()
    assert body == {"created": 0, "updated": 1, "skipped": 0, "errors": []}
    got = client.get(f"/v1/contacts/{made['contact_id']}/", headers=agent.auth).get_json()
    assert got["full_name"] == "Ærø Skøbing 03" and len(got["emails"]) == 2


def test_import_wants_text_vcard_and_reads_windows_1252_and_quoted_printable(client, agents):
    agent = agents[0]
    resp = client.post("/v1/contacts/import/", json={"x": 1}, headers=agent.auth)
    assert_error(resp, 415, "unsupported_media_type")
    assert_error(_import(client, agent, b""), 400, "validation_error")
    assert_error(_import(client, agent, b"-5.8e16"), 400, "validation_error")
    legacy = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ren\xe9e M\xfcller\r\nEMAIL:renee@example.org\r\nEND:VCARD\r\n"
    assert _import(client, agent, legacy.encode("cp1252")).get_json()["created"] == 1
    assert "Renée Müller" in _all(client, agent)
    old = ("BEGIN:VCARD\r\nVERSION:2.1\r\nFN;CHARSET=ISO-8859-1;ENCODING=QUOTED-PRINTABLE:Fran=E7oise =\r\nD=FCrr\r\n"
           "EMAIL;INTERNET:fd@example.org\r\nEND:VCARD\r\n")
    assert _import(client, agent, old.encode()).get_json()["created"] == 1
    assert "Françoise Dürr" in _all(client, agent)
