"""Contract section 20: imports of an existing mailbox's history over IMAP (a person's session)."""
from __future__ import annotations

from flask import Blueprint
from pydantic import BaseModel, Field

from api.framework import USER, Ctx, endpoint
from api.schemas import PlainText, StrictModel
from appliance.services.mail import imports

bp = Blueprint("imports", __name__)


class ImportCreate(StrictModel):
    host: PlainText = Field(max_length=253, description="The IMAP server, e.g. imap.example.com.")
    port: int = Field(993, ge=1, le=65535)
    security: str = Field("tls", description="tls (from the first byte, port 993); none only on a LAN "
                                             "when the operator allows private addresses.")
    username: str = Field(max_length=320)
    password: str = Field(max_length=1000, description="Sealed while the import runs; cleared when it ends.")
    folders: list[PlainText] = Field(default_factory=list, max_length=500,
                                     description="Folders to copy (empty: every folder).")
    since: str | None = Field(None, max_length=10, description="Only mail from this date on, YYYY-MM-DD.")


class ImportObject(BaseModel):
    import_id: str
    inbox_id: str
    status: str
    host: str
    port: int
    security: str
    username: str
    folders: list[str]
    since: str | None
    progress: dict = Field(description="Per folder: uidvalidity, last_uid, total, done.")
    imported: int
    skipped: int = Field(description="Messages already in the inbox (by Message-ID, or digest): not copied again.")
    error: str | None
    created_at: str
    finished_at: str | None


class ImportList(BaseModel):
    results: list[ImportObject]


@endpoint(bp, "/v1/inboxes/<inbox_id>/imports/", "POST", auth=USER, tag="imports", body=ImportCreate,
          response=ImportObject, status=202,
          summary="Import an existing mailbox's history over IMAP; the worker runs it (GET …/imports/{id}/)")
def create_import(ctx: Ctx, inbox_id: str) -> dict:
    b = ctx.body
    job = imports.create(ctx.db, ctx.settings, ctx.principal, inbox_id, host=b.host, port=b.port,
                         username=b.username, password=b.password, folders=b.folders, since=b.since,
                         security=b.security)
    return imports.to_dict(job)


@endpoint(bp, "/v1/inboxes/<inbox_id>/imports/", "GET", auth=USER, tag="imports", response=ImportList,
          summary="The inbox's imports, newest first, with their progress")
def list_imports(ctx: Ctx, inbox_id: str) -> dict:
    return {"results": [imports.to_dict(j) for j in imports.list_for(ctx.db, ctx.principal, inbox_id)]}


@endpoint(bp, "/v1/inboxes/<inbox_id>/imports/<import_id>/", "GET", auth=USER, tag="imports",
          response=ImportObject, summary="One import's progress")
def get_import(ctx: Ctx, inbox_id: str, import_id: str) -> dict:
    return imports.to_dict(imports.get(ctx.db, ctx.principal, inbox_id, import_id))
