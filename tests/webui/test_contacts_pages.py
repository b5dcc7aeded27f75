"""Issue 17 point 7, the Contacts page of an inbox: search, create and edit with labels, delete with
confirmation, import and export of a .vcf file, incoming share offers accepted from the page;
another tenant's contacts are 404s."""
from __future__ import annotations

import io

from sqlalchemy import select

from appliance.models import Contact
from tests.webui.conftest import text_of

VCF = ("BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Vera Import\r\nEMAIL;TYPE=work:vera@import.example\r\nEND:VCARD\r\n"
       "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Broken\r\nBDAY:whenever\r\nEND:VCARD\r\n")


def test_create_search_edit_and_delete_a_contact(web, world, store):
    owner = world.owner()
    inbox = world.inbox(owner)
    web.sign_in(owner.email)
    assert "No contacts yet" in text_of(web.get(f"/admin/inboxes/{inbox}/contacts/"))
    resp = web.post(f"/admin/inboxes/{inbox}/contacts/", {"full_name": "Ann Example", "emails": "work: Ann@Example.org",
                                                          "phones": "+41 44 000 11 22", "labels": "vip, team",
                                                          "anniversaries": "birthday: --02-29"})
    assert resp.status_code == 303
    page = text_of(web.get(resp.headers["Location"]))
    assert "Created the contact Ann Example" in page and "ann@example.org" in page
    with store.session() as db:
        contact = db.scalar(select(Contact).where(Contact.inbox_id == inbox))
        assert contact.labels == ["vip", "team"] and contact.anniversaries == [{"type": "birthday", "date": "--02-29"}]
    assert "Ann Example" in text_of(web.get(f"/admin/inboxes/{inbox}/contacts/?q=00011"))
    assert "No contacts match" in text_of(web.get(f"/admin/inboxes/{inbox}/contacts/?q=nobody"))
    assert "Ann Example" in text_of(web.get(f"/admin/inboxes/{inbox}/contacts/?label=vip"))
    web.post(f"/admin/inboxes/{inbox}/contacts/{contact.id}/", {"full_name": "Ann Renamed", "emails": "ann@example.org",
                                                                "labels": "vip"})
    detail = text_of(web.get(f"/admin/inboxes/{inbox}/contacts/{contact.id}/"))
    assert "Ann Renamed" in detail and "Relationship: 0 messages" in detail
    # A duplicate address is a message on the page, naming the other contact.
    dup = web.post(f"/admin/inboxes/{inbox}/contacts/", {"full_name": "Dup", "emails": "ANN@example.org"})
    assert contact.id in text_of(web.get(dup.headers["Location"]))
    asked = web.post(f"/admin/inboxes/{inbox}/contacts/{contact.id}/delete/")
    assert asked.status_code == 200 and "Delete the contact Ann Renamed" in text_of(asked)
    web.post(f"/admin/inboxes/{inbox}/contacts/{contact.id}/delete/", {"confirm": "yes"})
    with store.session() as db:
        assert db.get(Contact, contact.id) is None


def test_import_and_export_a_vcf_file_and_accept_an_offer(web, world, client):
    owner = world.owner()
    inbox, other = world.inbox(owner), world.inbox(owner)
    web.sign_in(owner.email)
    resp = web.post(f"/admin/inboxes/{inbox}/contacts/import/", {"file": (io.BytesIO(VCF.encode()), "c.vcf")},
                    content_type="multipart/form-data")
    page = text_of(web.get(resp.headers["Location"]))
    assert "1 created" in page and "Card 2 was not imported" in page and "Vera Import" in page
    exported = web.get(f"/admin/inboxes/{inbox}/contacts/export.vcf")
    assert exported.mimetype == "text/vcard" and "vera@import.example" in text_of(exported)
    listed = client.get("/v1/contacts/", query_string={"inbox_id": inbox}, headers=owner.auth).get_json()
    contact_id = listed["results"][0]["contact_id"]
    offered = client.post("/v1/contacts/shares/", json={"inbox_id": inbox, "type": "offer", "to_inbox_id": other,
                                                        "contact_id": contact_id}, headers=owner.auth)
    share_id = offered.get_json()["share_id"]
    page = text_of(web.get(f"/admin/inboxes/{other}/contacts/"))
    assert "Shared with this inbox" in page and "offers the contact Vera Import" in page
    web.post(f"/admin/inboxes/{other}/contacts/shares/{share_id}/accept/")
    page = text_of(web.get(f"/admin/inboxes/{other}/contacts/"))
    assert "Shared with this inbox" not in page and "vera@import.example" in page


def test_another_tenants_contacts_are_404(web, world, client):
    owner, stranger = world.owner(), world.owner()
    inbox = world.inbox(owner)
    made = client.post("/v1/contacts/", json={"inbox_id": inbox, "full_name": "Secret"}, headers=owner.auth).get_json()
    web.sign_in(stranger.email)
    assert web.get(f"/admin/inboxes/{inbox}/contacts/").status_code == 404
    assert web.get(f"/admin/inboxes/{inbox}/contacts/{made['contact_id']}/").status_code == 404
    assert web.get(f"/admin/inboxes/{inbox}/contacts/export.vcf").status_code == 404
