"""Contract section 14: follow-up sequences and their enrollments (issue 20.5).

Every route takes `sequences:write` (the contract names no read scope). A sequence is sent from
`sender_inbox_id` (an agent token: its own inbox). The rules live in
appliance/services/automation/sequences.py.
"""
from __future__ import annotations

from flask import Blueprint
from pydantic import BaseModel, Field

from api.framework import Ctx, PlainText, Reply, StrictModel, endpoint, scope
from appliance.services.automation import sequences

bp = Blueprint("sequences", __name__)
WRITE = scope("sequences:write")


class Step(StrictModel):
    delay_days: int = Field(0, ge=0, le=365, description="Days after the previous step (the first: after "
                                                           "enrollment), at the same time of day in the inbox's zone.")
    subject: PlainText | None = Field(None, max_length=300, description="Required on the first step; later steps "
                                                                  "answer in its thread (Re: …) when left out.")
    body: str | None = Field(None, max_length=100_000, json_schema_extra={"x-multiline": True})
    template_id: PlainText | None = Field(None, max_length=40, description="A reply template instead of body.")


class SequenceInput(StrictModel):
    name: PlainText = Field(min_length=1, max_length=200)
    sender_inbox_id: PlainText | None = Field(None, max_length=40, description="The inbox that sends (an agent: its own).")
    exit_on_reply: bool = True
    emails: list[Step] = Field(max_length=20, description="1 to 20 steps (the service names a missing one).")


class SequenceUpdate(StrictModel):
    name: PlainText | None = Field(None, min_length=1, max_length=200)
    exit_on_reply: bool | None = None
    emails: list[Step] | None = Field(None, max_length=20)


class SequenceObject(BaseModel):
    sequence_id: str
    name: str
    sender_inbox_id: str
    exit_on_reply: bool
    emails: list[dict]
    enrollments: dict[str, int] = Field(description="Enrollments by status (active, completed, exited, cancelled).")
    created_at: str
    updated_at: str


class SequenceList(BaseModel):
    results: list[SequenceObject]


class EnrollmentInput(StrictModel):
    contact_id: PlainText = Field(min_length=1, max_length=40, description="A contact of the sender inbox (its first "
                                                                     "address receives the steps).")


class EnrollmentObject(BaseModel):
    enrollment_id: str
    sequence_id: str
    contact_id: str
    address: str
    status: str = Field(description="active, completed, exited or cancelled.")
    exit_reason: str | None = Field(description="replied, bounced, unsubscribed or error, when exited.")
    next_step: int
    thread_id: str | None
    last_message_id: str | None
    created_at: str
    updated_at: str
    ended_at: str | None


class EnrollmentList(BaseModel):
    results: list[EnrollmentObject]


@endpoint(bp, "/v1/sequences/", "POST", auth=WRITE, tag="sequences", body=SequenceInput, response=SequenceObject,
          status=201, summary="Create a follow-up sequence")
def create_sequence(ctx: Ctx) -> dict:
    data = ctx.body.model_dump(exclude={"inbox_id"})
    data["sender_inbox_id"] = data.get("sender_inbox_id") or ctx.inbox_id
    data["emails"] = [{k: v for k, v in step.items() if v is not None} for step in data["emails"]]
    return sequences.to_dict(ctx.db, sequences.create(ctx.db, ctx.principal, **data))


@endpoint(bp, "/v1/sequences/", "GET", auth=WRITE, tag="sequences", response=SequenceList,
          summary="The inbox's sequences")
def list_sequences(ctx: Ctx) -> dict:
    rows = sequences.list_sequences(ctx.db, ctx.principal, ctx.inbox_id)
    return {"results": [sequences.to_dict(ctx.db, row) for row in rows]}


@endpoint(bp, "/v1/sequences/<sequence_id>/", "GET", auth=WRITE, tag="sequences", response=SequenceObject,
          summary="One sequence")
def get_sequence(ctx: Ctx, sequence_id: str) -> dict:
    return sequences.to_dict(ctx.db, sequences.get(ctx.db, ctx.principal, sequence_id))


@endpoint(bp, "/v1/sequences/<sequence_id>/", "PATCH", auth=WRITE, tag="sequences", body=SequenceUpdate,
          response=SequenceObject, summary="Change a sequence (active enrollments go on with the new steps)")
def update_sequence(ctx: Ctx, sequence_id: str) -> dict:
    changes = ctx.body.model_dump(exclude={"inbox_id"}, exclude_unset=True)
    if changes.get("emails") is not None:
        changes["emails"] = [{k: v for k, v in step.items() if v is not None} for step in changes["emails"]]
    changes = {k: v for k, v in changes.items() if v is not None}
    return sequences.to_dict(ctx.db, sequences.update(ctx.db, ctx.principal, sequence_id, changes))


@endpoint(bp, "/v1/sequences/<sequence_id>/", "DELETE", auth=WRITE, tag="sequences", status=204,
          summary="Delete a sequence; its active enrollments are cancelled")
def delete_sequence(ctx: Ctx, sequence_id: str) -> Reply:
    sequences.delete(ctx.db, ctx.principal, sequence_id)
    return Reply(204)


@endpoint(bp, "/v1/sequences/<sequence_id>/enrollments/", "POST", auth=WRITE, tag="sequences",
          body=EnrollmentInput, response=EnrollmentObject, status=201,
          summary="Enroll a contact: the steps go out in one thread at their time")
def enroll(ctx: Ctx, sequence_id: str) -> dict:
    return sequences.enrollment_to_dict(sequences.enroll(ctx.db, ctx.principal, sequence_id, ctx.body.contact_id))


@endpoint(bp, "/v1/sequences/<sequence_id>/enrollments/", "GET", auth=WRITE, tag="sequences",
          response=EnrollmentList, summary="A sequence's enrollments")
def list_enrollments(ctx: Ctx, sequence_id: str) -> dict:
    rows = sequences.list_enrollments(ctx.db, ctx.principal, sequence_id)
    return {"results": [sequences.enrollment_to_dict(row) for row in rows]}


@endpoint(bp, "/v1/sequences/<sequence_id>/enrollments/<enrollment_id>/", "DELETE", auth=WRITE, tag="sequences",
          status=204, summary="Cancel an enrollment (no further step is sent)")
def cancel_enrollment(ctx: Ctx, sequence_id: str, enrollment_id: str) -> Reply:
    sequences.cancel(ctx.db, ctx.principal, sequence_id, enrollment_id)
    return Reply(204)
