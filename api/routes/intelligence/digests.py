"""Issue 21 point 4 (contract section 15): thread and contact digests from the builtin model, and
point 3's people's side: marking a received message as phishing or not, which teaches the
tenant's naive Bayes model (`POST /v1/messages/{id}/phishing/`, Gentbox)."""
from __future__ import annotations

from typing import Literal

from flask import Blueprint
from pydantic import BaseModel, ConfigDict, Field

from api.framework import Ctx, StrictModel, endpoint, scope
from api.routes.mail.messages import InboxQuery, MessageFull
from appliance.services.identity.auth import inbox_for
from appliance.services.intelligence import digest, enrich
from appliance.services.mail import messages
from appliance.services.team import assignment

bp = Blueprint("digests", __name__)
EMAIL_READ, EMAIL_WRITE, CONTACTS_READ = scope("email:read"), scope("email:write"), scope("contacts:read")


class MarkBody(StrictModel):
    mark: Literal["phishing", "safe"] = Field(description="phishing: it is phishing; safe: it is not.")


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Participant(_Answer):
    email: str
    name: str
    messages: int


class KeySentence(_Answer):
    text: str
    from_: str = Field(alias="from")


class OpenQuestion(KeySentence):
    at: str | None


class FoundDate(_Answer):
    at: str
    text: str
    sentence: str
    from_: str = Field(alias="from")


class _Digest(_Answer):
    message_count: int
    participants: list[Participant]
    first_at: str | None
    last_at: str | None
    key_sentences: list[KeySentence] = Field(description="The best sentences, in the order written (extractive).")
    open_questions: list[OpenQuestion] = Field(description="Questions and requests nobody else followed up.")
    dates: list[FoundDate] = Field(description="Dates and deadlines written in the messages, earliest first.")


class ThreadDigest(_Digest):
    thread_id: str
    subject: str


class ContactDigest(_Digest):
    contact_id: str
    addresses: list[str]
    thread_count: int


@endpoint(bp, "/v1/messages/threads/<thread_id>/digest/", "GET", auth=EMAIL_READ, tag="intelligence",
          query=InboxQuery, response=ThreadDigest,
          summary="A thread's digest: key sentences, participants, open questions and dates (builtin, no model; "
                  "403 feature_disabled when the inbox's enabled_features leaves thread_digest out)")
def thread_digest(ctx: Ctx, thread_id: str) -> dict:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.query.inbox_id)
    inbox = assignment.thread_inbox(ctx.db, inbox, thread_id)  # its own, or a thread assigned to it (issue 16)
    return digest.thread_digest(ctx.db, inbox, thread_id)


@endpoint(bp, "/v1/contacts/<contact_id:contact_id>/digest/", "GET", auth=CONTACTS_READ, tag="intelligence",
          query=InboxQuery, response=ContactDigest,
          summary="A contact's digest over the latest threads they wrote in (builtin, no model; "
                  "403 feature_disabled when the inbox's enabled_features leaves contact_digest out)")
def contact_digest(ctx: Ctx, contact_id: str) -> dict:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.query.inbox_id)
    return digest.contact_digest(ctx.db, inbox, contact_id)


@endpoint(bp, "/v1/messages/<message_id:message_id>/phishing/", "POST", auth=EMAIL_WRITE, tag="intelligence",
          query=InboxQuery, body=MarkBody, response=MessageFull,
          summary="Mark a received message as phishing or not: the tenant's model learns it, and the message's "
                  "verdict and `suspicious` label follow")
def mark_message(ctx: Ctx, message_id: str) -> dict:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.query.inbox_id)
    message = enrich.mark_message(ctx.db, inbox, message_id, ctx.body.mark, actor=ctx.principal.id)
    return messages.render_full(ctx.db, [message], messages.zone_of(inbox))[0]
