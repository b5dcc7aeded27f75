"""Enrichment of received mail with the builtin model (issue 21 points 3, 4 and 6), and the marks
people give it ("this is phishing" / "not phishing").

The worker runs `tail`: a cursor named `enrichment` on the one event-table tailer
(automation/tailer.py) reads `message.received` after the mail is stored and answered 250, so
nothing here ever delays the SMTP reply. For each message of an inbox whose `enrichment` settings
enable `phishing_detection` or `next_step`, it stores `messages.enrichment` = {phishing: {verdict,
score, reasons}, next_step: {action, summary, due}, model, enriched_at}, puts the `suspicious`
label on mail judged suspicious or phishing (labels.set_message_labels, so labels.ensure and the
label events apply) and emits `message.enriched`. `backlog` (received mail not yet read by the
cursor) is the gauge gentbox_enrichment_backlog on /metrics.

`mark_message` is the people's side: it teaches the tenant's naive Bayes model (bayes.py) and
records the mark on the message; a mark changed later takes the earlier one back out of the model.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

import pydantic

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.errors import ValidationError
from appliance.models import AlertCursor, ContactEmail, Domain, Event, Inbox, Message, MessageRaw, Tenant
from appliance.services.automation import events, tailer
from appliance.services.identity.settings import inbox_settings
from appliance.services.intelligence import bayes, models, nextstep, phishing
from appliance.services.intelligence.mailparts import Mail, read_mail
from appliance.services.mail import labels, messages

log = logging.getLogger("gentbox.enrichment")
TAILER = "enrichment"
BATCH = 100
FEATURES = ("phishing_detection", "next_step", "contact_digest", "thread_digest")
LABEL = "suspicious"
FREQUENT = 3  # inbound messages from an address that make its domain a frequent correspondent's
MAX_KNOWN = 500  # frequent correspondents' domains kept per inbox (the most frequent)


@dataclass
class _Batch:
    """What one pass reads once per inbox or tenant, not once per message."""

    domains: dict[str, frozenset[str]] = field(default_factory=dict)  # tenant -> own registrable domains
    known: dict[str, frozenset[str]] = field(default_factory=dict)  # inbox -> correspondents' domains
    models: dict[str, object] = field(default_factory=dict)  # tenant -> its PhishingModel (or None)
    raws: dict[str, bytes] = field(default_factory=dict)  # message -> its raw bytes, read in one query
    messages: dict[str, Message] = field(default_factory=dict)  # held: the session keeps rows weakly
    inboxes: dict[str, tuple] = field(default_factory=dict)  # inbox -> (inbox, its effective settings)
    # (inbox, address) -> when it first wrote; (inbox, "contact:" + address) -> True for a contact's
    senders: dict[tuple[str, str], object] = field(default_factory=dict)


def tail(db: Session, *, batch: int = BATCH) -> int:
    """Enrich the next received messages after the cursor and move it, all in the caller's
    transaction (`plan` then `apply`; the worker runs the two in separate units of work); returns
    how many events were read (call again while it returns batch)."""
    return apply(db, plan(db, batch=batch))


@dataclass
class Plan:
    """One batch judged on a read snapshot (`plan`), to be stored by `apply` in a short write."""

    last: int = 0  # the cursor the batch was read after
    to: int = 0  # the last event read (the cursor moves there)
    read: int = 0  # events read (any type)
    found: dict[str, dict] = field(default_factory=dict)  # message -> its judgment, in event order
    later: list[str] = field(default_factory=list)  # messages judged in the write (external models)


def plan(db: Session, *, batch: int = BATCH) -> Plan:
    """Read the next `batch` events after the cursor and judge their received messages, writing
    nothing (a read snapshot: on SQLite no write lock is held while the rules run). Inboxes that
    chose an external model are left to `apply`, whose unit of work records the model's use."""
    last = db.scalar(select(AlertCursor.last_seq).where(AlertCursor.name == TAILER)) or 0
    seqs = list(db.scalars(select(Event.seq).where(Event.seq > last).order_by(Event.seq).limit(batch)))
    out = Plan(last=last, to=seqs[-1] if seqs else last, read=len(seqs))
    if not seqs:
        return out
    wanted = [m for m in db.scalars(select(Event.resource_id).where(
        Event.seq > last, Event.seq <= out.to, Event.type == "message.received", Event.inbox_id.is_not(None),
        Event.resource_id.is_not(None)).order_by(Event.seq))]
    seen = _prefetch(db, wanted) if wanted else _Batch()
    for message_id in wanted:
        try:
            found = judge_message(db, message_id, seen)
        except Exception:  # noqa: BLE001 - one unreadable message must not stop the cursor for all
            log.exception("enrichment: message %s could not be enriched", message_id)
            continue
        if found is _LATER:
            out.later.append(message_id)
        elif found is not None:
            out.found[message_id] = found
    return out


def apply(db: Session, batch: Plan) -> int:
    """Store a plan's judgments and move the cursor past its events, in the caller's transaction;
    returns how many events were read, or 0 when the cursor moved since the plan was read (another
    worker stored them: nothing is written twice)."""
    if not batch.read:
        return 0
    if tailer.position(db, TAILER) != batch.last:
        return 0
    order = [*batch.found, *batch.later]
    rows = {m.id: m for m in db.scalars(select(Message).where(Message.id.in_(order)))} if order else {}
    inboxes = {i.id: i for i in db.scalars(select(Inbox).where(Inbox.id.in_({m.inbox_id for m in rows.values()})))}
    for message_id in order:
        message = rows.get(message_id)
        if message is None:  # deleted since it was judged
            continue
        try:
            with db.begin_nested():
                if message_id in batch.found:
                    _store(db, inboxes[message.inbox_id], message, batch.found[message_id])
                else:
                    enrich_message(db, message_id)
        except Exception:  # noqa: BLE001 - one message must not stop the cursor for all
            log.exception("enrichment: message %s could not be enriched", message_id)
    return batch.read if tailer.advance(db, TAILER, batch.last, batch.to) else 0


def _prefetch(db: Session, ids: list[str]) -> _Batch:
    """The batch's messages into the session, their raw bytes, and when each sender first wrote."""
    seen = _Batch()
    rows = list(db.scalars(select(Message).where(Message.id.in_(ids))))
    seen.messages = {m.id: m for m in rows}
    seen.raws = {m: bytes(r) for m, r in db.execute(select(MessageRaw.message_id, MessageRaw.raw)
                                                    .where(MessageRaw.message_id.in_(ids)))}
    inboxes, senders = {m.inbox_id for m in rows}, {m.from_email for m in rows if m.from_email}
    if senders:
        seen.senders = {(i, a): first for i, a, first in db.execute(
            select(Message.inbox_id, Message.from_email, func.min(Message.created_at))
            .where(Message.inbox_id.in_(inboxes), Message.from_email.in_(senders))
            .group_by(Message.inbox_id, Message.from_email))}
        for inbox_id, address in db.execute(select(ContactEmail.inbox_id, ContactEmail.address).where(
                ContactEmail.inbox_id.in_(inboxes), ContactEmail.address.in_({a.lower() for a in senders}))):
            seen.senders[(inbox_id, "contact:" + address)] = True
    return seen


def backlog(db: Session) -> int:
    """Received messages the enrichment cursor has not read yet."""
    last = db.scalar(select(AlertCursor.last_seq).where(AlertCursor.name == TAILER)) or 0
    return db.scalar(select(func.count()).select_from(Event).where(
        Event.seq > last, Event.type == "message.received")) or 0


def enabled_features(settings: dict) -> set[str]:
    """The inbox's enabled enrichment features (its `enrichment.enabled_features` setting)."""
    chosen = (settings.get("enrichment") or {}).get("enabled_features") or []
    return {f for f in chosen if f in FEATURES}


_LATER: dict = {}  # judge_message's answer for an inbox whose next step an external model gives


def enrich_message(db: Session, message_id: str, seen: _Batch | None = None) -> dict | None:
    """Judge one received message with the builtin model and store the result on it."""
    seen = seen or _Batch()
    found = judge_message(db, message_id, seen, external=True)
    if found is None:
        return None
    message = seen.messages.get(message_id) or db.get(Message, message_id)
    _store(db, seen.inboxes[message.inbox_id][0], message, found)
    return found


def judge_message(db: Session, message_id: str, seen: _Batch, *, external: bool = False) -> dict | None:
    """One received message's judgment, written nowhere: None when its inbox enables none of the
    judged features (or it is not received mail); _LATER when an external model would give its
    next step and `external` is False (the model's use is recorded, so it is asked in a write)."""
    message = seen.messages.get(message_id) or db.get(Message, message_id)
    if message is None or message.direction != "inbound":
        return None
    if message.inbox_id not in seen.inboxes:
        inbox = db.get(Inbox, message.inbox_id)
        seen.inboxes[inbox.id] = (inbox, inbox_settings(inbox, db.get(Tenant, message.tenant_id)))
    inbox, cfg = seen.inboxes[message.inbox_id]
    features = enabled_features(cfg)
    if not features & {"phishing_detection", "next_step"}:
        return None
    raw = seen.raws.get(message.id)
    if raw is None:
        raw = bytes(db.scalar(select(MessageRaw.raw).where(MessageRaw.message_id == message.id)) or b"")
    mail = read_mail(raw)
    found: dict = {}
    if "phishing_detection" in features:
        found["phishing"] = judge(db, message, mail, cfg, seen)
    if "next_step" in features:
        verdict = found.get("phishing", {}).get("verdict", "safe")
        found["next_step"] = nextstep.next_step(mail, verdict=verdict, automated=bool(message.automated),
                                                now=message.received_at or message.created_at,
                                                zone=cfg["default_timezone"])
        chosen = (cfg.get("enrichment") or {}).get("model", "builtin")
        # Never let a model read, let alone act on, what the rules call phishing; and build no
        # prompt for the inboxes that keep builtin (nearly every message).
        if verdict != "phishing" and chosen != "builtin":
            if not external:
                return _LATER
            found["next_step"], found["model"] = _next_step_by_model(db, inbox, mail, found["next_step"])
    return found


class ModelNextStep(pydantic.BaseModel):
    """What an external model must answer for `next_step` (anything else: builtin is kept)."""

    action: Literal["reply", "schedule", "pay", "review", "unsubscribe", "none"]
    summary: str = pydantic.Field(max_length=300)
    due: str | None = pydantic.Field(None, max_length=40)


def _next_step_by_model(db: Session, inbox: Inbox, mail: Mail, builtin: dict) -> tuple[dict, str]:
    """The inbox's external model's next step when the operator and the tenant switched one on
    (intelligence/models.py: opt-in, budget, fallback), else the builtin one. Phishing verdicts
    stay with the builtin rules: mail content can never talk its way past them."""
    content = f"Subject: {mail.subject}\nFrom: {mail.from_name} <{mail.from_email}>\n\n{mail.text[:20_000]}"
    answer = models.complete(db, inbox, "next_step", content, ModelNextStep,
                             instructions="Say what the inbox's owner should do next with this message.")
    if answer is None:
        return builtin, "builtin"
    return answer.model_dump(), "external"


def judge(db: Session, message: Message, mail: Mail, cfg: dict, seen: _Batch) -> dict:
    """The phishing verdict of one message: the rules, then the tenant's model."""
    ctx = phishing.Context(own_domains=_own_domains(db, message.tenant_id, seen),
                           known_domains=_known_domains(db, message.inbox_id, seen),
                           known_sender=_known_sender(db, message, message.from_email, seen))
    out = phishing.assess(mail, message.authentication or {}, ctx)
    if message.tenant_id not in seen.models:
        seen.models[message.tenant_id] = bayes.load(db, message.tenant_id)
    model = seen.models[message.tenant_id]
    weight = bayes.weight(bayes.log_odds(model, mail))
    if weight:
        leaning = "phishing" if weight > 0 else "not phishing"
        out.hit("bayes", round(weight, 2), f"like mail people of this tenant marked as {leaning} "
                                           f"({model.phishing_docs} phishing, {model.safe_docs} not)")
    return phishing.result(out, cfg.get("phishing_thresholds"))


def _own_domains(db: Session, tenant_id: str, seen: _Batch) -> frozenset[str]:
    if tenant_id not in seen.domains:
        names = db.scalars(select(Domain.name).where(Domain.tenant_id == tenant_id))
        seen.domains[tenant_id] = frozenset(phishing.registrable(n) for n in names)
    return seen.domains[tenant_id]


def _known_domains(db: Session, inbox_id: str, seen: _Batch) -> frozenset[str]:
    """The registrable domains of the inbox's contacts and of its frequent senders."""
    if inbox_id not in seen.known:
        contacts = db.scalars(select(ContactEmail.address).where(ContactEmail.inbox_id == inbox_id).limit(MAX_KNOWN))
        frequent = db.scalars(select(Message.from_email).where(Message.inbox_id == inbox_id,
                                                               Message.direction == "inbound")
                              .group_by(Message.from_email).having(func.count() >= FREQUENT)
                              .order_by(func.count().desc()).limit(MAX_KNOWN))
        seen.known[inbox_id] = frozenset(phishing.registrable(phishing.domain_of(a))
                                         for a in [*contacts, *frequent] if "@" in (a or ""))
    return seen.known[inbox_id]


def _known_sender(db: Session, message: Message, address: str, seen: _Batch) -> bool:
    """Did this inbox hear from (or keep a contact for) this address before this message?"""
    if not address:
        return False
    if (message.inbox_id, address) in seen.senders:  # prefetched for the batch
        first = seen.senders[(message.inbox_id, address)]
        return first < message.created_at or (message.inbox_id, "contact:" + address.lower()) in seen.senders
    if db.scalar(select(ContactEmail.id).where(ContactEmail.inbox_id == message.inbox_id,
                                               ContactEmail.address == address.lower()).limit(1)):
        return True
    return db.scalar(select(Message.id).where(Message.inbox_id == message.inbox_id, Message.from_email == address,
                                              Message.id != message.id,
                                              Message.created_at <= message.created_at).limit(1)) is not None


def _store(db: Session, inbox: Inbox, message: Message, found: dict) -> None:
    previous = message.enrichment or {}
    verdict = found.get("phishing", {}).get("verdict")
    labelled = bool(verdict in ("suspicious", "phishing") and LABEL not in (message.labels or []))
    if labelled:
        labels.set_message_labels(db, inbox, message, [*(message.labels or []), LABEL])
    # Remembered so that a later "not phishing" mark takes off only the label this area put on.
    message.enrichment = {**previous, **found, "model": found.get("model", "builtin"),
                          "enriched_at": utcnow().isoformat(),
                          "labelled": labelled or bool(previous.get("labelled"))}
    db.flush()
    events.emit(db, "message.enriched", tenant_id=message.tenant_id, inbox_id=message.inbox_id,
                resource_id=message.id, payload={
                    "thread_id": message.thread_id, "verdict": verdict,
                    "score": found.get("phishing", {}).get("score"),
                    "next_step": found.get("next_step", {}).get("action")})


# --- people's marks ---------------------------------------------------------------------------
MARKS = ("phishing", "safe")


def mark_message(db: Session, inbox: Inbox, message_id: str, mark: str, *, actor: object = None) -> Message:
    """A person says a received message is phishing (`phishing`) or not (`safe`): the tenant's model
    learns it (a changed mark is taken back first), the message keeps the mark, and its verdict
    and `suspicious` label follow the person's word."""
    if mark not in MARKS:
        raise ValidationError("mark must be 'phishing' or 'safe'", field="mark",
                              fix="Send mark=phishing for phishing, mark=safe for mail that is not.")
    message = messages.get_message(db, inbox, message_id)
    if message.direction != "inbound":
        raise ValidationError("Only received mail can be marked as phishing or not.", field="message_id")
    enrichment = dict(message.enrichment or {})
    before = enrichment.get("mark")
    if before == mark:
        return message
    raw = db.scalar(select(MessageRaw.raw).where(MessageRaw.message_id == message.id)) or b""
    bayes.learn(db, message.tenant_id, read_mail(bytes(raw)), mark, forget=before)
    current = list(message.labels or [])
    names = [*current, LABEL] if mark == "phishing" else current
    if mark == "safe" and enrichment.get("labelled"):  # only the label this area put on, not a DMARC quarantine's
        names = [n for n in current if n != LABEL]
    labels.set_message_labels(db, inbox, message, list(dict.fromkeys(names)), actor=actor)
    judged = dict(enrichment.get("phishing") or {})
    if judged:
        judged["verdict"] = "phishing" if mark == "phishing" else "safe"
    labelled = bool(enrichment.get("labelled")) or (mark == "phishing" and LABEL not in current)
    message.enrichment = {**enrichment, "mark": mark, "labelled": labelled and mark == "phishing",
                          **({"phishing": judged} if judged else {})}
    db.flush()
    events.emit(db, "message.marked", tenant_id=message.tenant_id, inbox_id=message.inbox_id,
                resource_id=message.id, actor=actor, payload={"mark": mark, "previous": before,
                                                             "thread_id": message.thread_id})
    return message
