"""Contract section 11: contacts, vCard import and export, and shares between inboxes (issue 17)."""
from __future__ import annotations

from typing import Annotated, Literal

from flask import Blueprint, Response
from pydantic import BaseModel, ConfigDict, Field
from werkzeug.routing import BaseConverter

from api.framework import Ctx, PlainText, Reply, StrictModel, endpoint, scope
from appliance.httputil import content_disposition
from appliance.services.identity.auth import inbox_for
from appliance.services.workspace import contact_shares, contacts, vcards

bp = Blueprint("contacts", __name__)


class ContactIdConverter(BaseConverter):
    """A contact id segment: anything but the fixed paths beside it (export, import, shares), so
    those neither reach a contact's view nor advertise its methods in their Allow header."""

    regex = r"(?!(?:export|import|shares)\Z)[^/]+"
    part_isolating = True


bp.record_once(lambda state: state.app.url_map.converters.setdefault("contact_id", ContactIdConverter))
READ, WRITE = scope("contacts:read"), scope("contacts:write")
InboxId = Field(None, max_length=40, description="Session tokens: the inbox. Agent tokens: omit it.")
Text200 = Annotated[PlainText, Field(max_length=200)]
LabelName = Annotated[PlainText, Field(min_length=1, max_length=100)]


class EmailIn(StrictModel):
    label: Annotated[PlainText, Field(max_length=64)] = ""
    address: Annotated[PlainText, Field(min_length=3, max_length=320)]


class PhoneIn(StrictModel):
    label: Annotated[PlainText, Field(max_length=64)] = ""
    number: Annotated[PlainText, Field(min_length=1, max_length=64)]


class AnniversaryIn(StrictModel):
    type: Annotated[str, Field(min_length=1, max_length=32, description="birthday, anniversary, nameday, …")]
    date: Annotated[str, Field(max_length=10, description="YYYY-MM-DD, or --MM-DD without a year")]


class ContactBody(StrictModel):
    full_name: Text200 = ""
    emails: list[EmailIn] = Field([], max_length=50)
    phones: list[PhoneIn] = Field([], max_length=50)
    company: Text200 = ""
    notes: str = Field("", max_length=20_000, json_schema_extra={"x-multiline": True})
    labels: list[LabelName] = Field([], max_length=50, description="Label names (type contact or any).")
    anniversaries: list[AnniversaryIn] = Field([], max_length=20)


class ContactCreate(ContactBody):
    inbox_id: str | None = InboxId


class ContactUpdate(StrictModel):
    full_name: Text200 | None = None
    emails: list[EmailIn] | None = Field(None, max_length=50, description="Replaces the contact's addresses.")
    phones: list[PhoneIn] | None = Field(None, max_length=50)
    company: Text200 | None = None
    notes: str | None = Field(None, max_length=20_000, json_schema_extra={"x-multiline": True})
    labels: list[LabelName] | None = Field(None, max_length=50)
    anniversaries: list[AnniversaryIn] | None = Field(None, max_length=20)


class InboxQuery(StrictModel):
    inbox_id: str | None = InboxId


class ContactQuery(StrictModel):
    inbox_id: str | None = InboxId
    q: str | None = Field(None, max_length=200, description="Part of a name, an address or a phone number.")
    label: str | None = Field(None, max_length=100, description="A label name or id (lbl_).")
    position: int = Field(0, ge=0, le=1_000_000, description="0-based offset of the page.")
    limit: int = Field(50, ge=1, le=200)


class Email(BaseModel):
    label: str
    address: str


class Phone(BaseModel):
    label: str
    number: str


class Anniversary(BaseModel):
    type: str
    date: str


class ContactObject(BaseModel):
    model_config = ConfigDict(extra="allow")  # the detail adds active_sequences and relationship

    contact_id: str
    inbox_id: str
    full_name: str
    emails: list[Email]
    phones: list[Phone]
    company: str
    notes: str
    labels: list[str]
    anniversaries: list[Anniversary]
    uid: str | None
    source: str = Field(description="manual, auto (the inbox sent it mail), import or share.")
    last_contacted_at: str | None = Field(description="The last mail either way (computed from messages).")
    created_at: str
    updated_at: str


class ContactList(BaseModel):
    results: list[ContactObject]
    total: int
    position: int
    limit: int


class ImportError_(BaseModel):
    index: int = Field(description="0-based position of the card in the file.")
    message: str


class ImportResult(BaseModel):
    created: int
    updated: int
    skipped: int
    errors: list[ImportError_]


class ShareCreate(StrictModel):
    inbox_id: str | None = InboxId
    type: Literal["offer", "request"]
    to_inbox_id: str = Field(min_length=1, max_length=40)
    contact_id: str | None = Field(None, max_length=40, description="offer: the card offered.")
    contact_address: Annotated[PlainText, Field(max_length=320)] | None = Field(
        None, description="request: the address whose card is asked for.")
    note: Annotated[PlainText, Field(max_length=500)] = ""
    labels: list[LabelName] = Field([], max_length=20, description="Labels the card gets where it is copied.")


class ShareObject(BaseModel):
    share_id: str
    type: str
    status: str = Field(description="pending, accepted, declined or expired.")
    from_inbox_id: str
    to_inbox_id: str
    contact_id: str | None
    contact_address: str
    parameters: dict
    result_contact_id: str | None = Field(description="The copied (or already known) contact once accepted.")
    created_at: str
    expires_at: str
    resolved_at: str | None


class ShareList(BaseModel):
    results: list[ShareObject]
    cursor: str | None


def _render(ctx: Ctx, contact, detail: bool = False) -> dict:  # noqa: ANN001
    return contacts.contact_to_dict(ctx.db, contact, detail=detail)


@endpoint(bp, "/v1/contacts/", "GET", auth=READ, tag="contacts", query=ContactQuery, response=ContactList,
          summary="The inbox's contacts by name; q searches names, addresses and phone numbers")
def list_contacts(ctx: Ctx) -> dict:
    q = ctx.query
    inbox = inbox_for(ctx.db, ctx.principal, q.inbox_id)
    rows, total = contacts.list_contacts(ctx.db, inbox, q=q.q, label=q.label, position=q.position, limit=q.limit)
    return {"results": contacts.render_contacts(ctx.db, rows), "total": total, "position": q.position,
            "limit": q.limit}


@endpoint(bp, "/v1/contacts/", "POST", auth=WRITE, tag="contacts", body=ContactCreate, response=ContactObject,
          status=201, summary="Create a contact (an address already on another contact → 409 naming it)")
def create_contact(ctx: Ctx) -> dict:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.body.inbox_id)
    data = ctx.body.model_dump(exclude={"inbox_id"})
    return _render(ctx, contacts.create_contact(ctx.db, inbox, data, actor=ctx.principal.id), detail=True)


@endpoint(bp, "/v1/contacts/import/", "POST", auth=WRITE, tag="contacts", query=InboxQuery, response=ImportResult,
          accepts="text/vcard", summary="Import a vCard file (3.0/4.0, many cards); a bad card is reported "
                                        "by index and never stops the others; importing twice creates nothing new")
def import_contacts(ctx: Ctx) -> dict:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.query.inbox_id)
    return vcards.import_vcards(ctx.db, inbox, ctx.body, actor=ctx.principal.id)


@endpoint(bp, "/v1/contacts/export/", "GET", auth=READ, tag="contacts", query=InboxQuery, content_type="text/vcard",
          summary="Every contact of the inbox as a vCard 3.0 file (reads back through import)")
def export_contacts(ctx: Ctx) -> Reply:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.query.inbox_id)
    body = vcards.export_vcards(ctx.db, inbox)
    return Reply(200, Response(body.encode("utf-8"), mimetype="text/vcard", headers={
        "Content-Disposition": content_disposition("contacts.vcf"), "X-Content-Type-Options": "nosniff"}))


@endpoint(bp, "/v1/contacts/shares/", "GET", auth=READ, tag="contacts", query=InboxQuery, response=ShareList,
          summary="Shares this inbox offered, requested or received, newest first")
def list_shares(ctx: Ctx) -> dict:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.query.inbox_id)
    return {"results": [contact_shares.share_to_dict(s) for s in contact_shares.list_shares(ctx.db, inbox)],
            "cursor": None}


@endpoint(bp, "/v1/contacts/shares/", "POST", auth=WRITE, tag="contacts", body=ShareCreate, response=ShareObject,
          status=201, summary="Offer a card to another inbox of the tenant, or request one from it")
def create_share(ctx: Ctx) -> dict:
    b = ctx.body
    inbox = inbox_for(ctx.db, ctx.principal, b.inbox_id)
    share = contact_shares.create_share(ctx.db, inbox, type_=b.type, to_inbox_id=b.to_inbox_id,
                                        contact_id=b.contact_id, contact_address=b.contact_address, note=b.note,
                                        labels=b.labels, actor=ctx.principal.id)
    return contact_shares.share_to_dict(share)


@endpoint(bp, "/v1/contacts/shares/<share_id>/accept/", "POST", auth=WRITE, tag="contacts", response=ShareObject,
          summary="Accept a share sent to this inbox: the card is copied (an expired share → 409)")
def accept_share(ctx: Ctx, share_id: str) -> dict:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.body.inbox_id)
    return contact_shares.share_to_dict(contact_shares.accept_share(ctx.db, inbox, share_id, actor=ctx.principal.id))


@endpoint(bp, "/v1/contacts/shares/<share_id>/decline/", "POST", auth=WRITE, tag="contacts", response=ShareObject,
          summary="Decline a share sent to this inbox: nothing is copied")
def decline_share(ctx: Ctx, share_id: str) -> dict:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.body.inbox_id)
    return contact_shares.share_to_dict(contact_shares.decline_share(ctx.db, inbox, share_id, actor=ctx.principal.id))


@endpoint(bp, "/v1/contacts/<contact_id:contact_id>/", "GET", auth=READ, tag="contacts", query=InboxQuery,
          response=ContactObject,
          summary="One contact, with its active sequences and its relationship (computed from messages)")
def get_contact(ctx: Ctx, contact_id: str) -> dict:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.query.inbox_id)
    return _render(ctx, contacts.get_contact(ctx.db, inbox, contact_id), detail=True)


@endpoint(bp, "/v1/contacts/<contact_id:contact_id>/", "PATCH", auth=WRITE, tag="contacts", query=InboxQuery,
          body=ContactUpdate, response=ContactObject, summary="Change a contact's fields (those sent)")
def update_contact(ctx: Ctx, contact_id: str) -> dict:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.query.inbox_id)
    changes = {k: v for k, v in ctx.body.model_dump(exclude_unset=True).items() if v is not None}
    return _render(ctx, contacts.update_contact(ctx.db, inbox, contact_id, changes, actor=ctx.principal.id),
                   detail=True)


@endpoint(bp, "/v1/contacts/<contact_id:contact_id>/", "DELETE", auth=WRITE, tag="contacts", query=InboxQuery,
          status=204,
          summary="Delete a contact and its planned anniversaries")
def delete_contact(ctx: Ctx, contact_id: str) -> Reply:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.query.inbox_id)
    contacts.delete_contact(ctx.db, inbox, contact_id, actor=ctx.principal.id)
    return Reply(204)
