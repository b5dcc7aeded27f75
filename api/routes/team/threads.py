"""Contract section 10, thread notes and assignment (issue 16): internal notes on a thread (never
in any outgoing mail, gone after 90 days, deleted by their author only, mentions becoming agenda
items of teammates) and handing a thread to another inbox of the tenant. The rules live in
appliance/services/team/notes.py and assignment.py."""
from __future__ import annotations

from flask import Blueprint
from pydantic import BaseModel, ConfigDict, Field

from api.framework import Ctx, PlainText, Reply, StrictModel, endpoint, scope
from appliance.services.identity.auth import inbox_for
from appliance.services.team import assignment, notes

bp = Blueprint("threads_team", __name__)
READ, WRITE = scope("email:read"), scope("email:write")


class NoteCreate(StrictModel):
    inbox_id: str | None = Field(None, max_length=40, description="Session tokens: the inbox. Agent tokens: omit it.")
    body: str = Field(min_length=1, max_length=notes.MAX_BODY, json_schema_extra={"x-multiline": True})
    mentions: list[PlainText] = Field([], max_length=notes.MAX_MENTIONS,
                                      description="Teammates' inbox addresses: each gets a pending agenda item.")


class AssignBody(StrictModel):
    inbox_id: str | None = Field(None, max_length=40, description="Session tokens: the inbox. Agent tokens: omit it.")
    assignee_inbox_id: str = Field(min_length=1, max_length=40, description="An inbox of the same tenant.")


class NoteObject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    note_id: str
    thread_id: str
    author_inbox_id: str
    body: str
    mentions: list[str]
    created_at: str
    expires_at: str = Field(description="90 days after created_at; then the note is gone.")


class NoteList(BaseModel):
    results: list[NoteObject]
    cursor: None = None


class AssignmentObject(BaseModel):
    thread_id: str
    assignee_inbox_id: str
    assigned_at: str


@endpoint(bp, "/v1/messages/threads/<thread_id>/notes/", "GET", auth=READ, tag="threads", response=NoteList,
          summary="The thread's notes, oldest first (never part of any mail; gone after 90 days)")
def list_notes(ctx: Ctx, thread_id: str) -> dict:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.inbox_id)
    return {"results": [notes.note_to_dict(n) for n in notes.list_notes(ctx.db, inbox, thread_id)], "cursor": None}


@endpoint(bp, "/v1/messages/threads/<thread_id>/notes/", "POST", auth=WRITE, tag="threads", body=NoteCreate,
          response=NoteObject, status=201,
          summary="Write a note on the thread; mentioned teammates' inboxes get a pending agenda item")
def create_note(ctx: Ctx, thread_id: str) -> Reply:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.body.inbox_id)
    note = notes.create_note(ctx.db, ctx.principal, inbox, thread_id, ctx.body.body, ctx.body.mentions)
    return Reply(201, notes.note_to_dict(note))


@endpoint(bp, "/v1/messages/threads/<thread_id>/notes/<note_id>/", "DELETE", auth=WRITE, tag="threads", status=204,
          summary="Delete a note (its author only)")
def delete_note(ctx: Ctx, thread_id: str, note_id: str) -> Reply:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.inbox_id)
    notes.delete_note(ctx.db, ctx.principal, inbox, thread_id, note_id)
    return Reply(204)


@endpoint(bp, "/v1/messages/threads/<thread_id>/assign/", "POST", auth=WRITE, tag="threads", body=AssignBody,
          response=AssignmentObject, summary="Assign the thread to an inbox of the tenant: it may read and reply "
                                             "in the thread until the assignment is revoked")
def assign_thread(ctx: Ctx, thread_id: str) -> dict:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.body.inbox_id)
    row = assignment.assign(ctx.db, inbox, thread_id, ctx.body.assignee_inbox_id, actor=ctx.principal.id)
    return assignment.assignment_to_dict(row)


@endpoint(bp, "/v1/messages/threads/<thread_id>/assign/", "DELETE", auth=WRITE, tag="threads", status=204,
          summary="Revoke the thread's assignment: the assignee no longer reads or replies in it")
def unassign_thread(ctx: Ctx, thread_id: str) -> Reply:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.inbox_id)
    assignment.unassign(ctx.db, inbox, thread_id, actor=ctx.principal.id)
    return Reply(204)
