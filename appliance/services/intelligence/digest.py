"""Thread and contact digests without a model (issue 21 point 4).

A digest is extractive: each message's own words (quotes and signatures cut off, nextstep.own_text)
are cut into sentences, each sentence is scored by how often its content words occur across the
whole conversation (a word count normalised by the most frequent word, the classic Luhn/SumBasic
idea), and the best MAX_KEY sentences are returned in the order they were written. Open questions
are the questions and requests of a message that nobody else answered later; dates are the
dates and deadlines the calendar's time parser finds, read from each message's arrival in the
inbox's zone. A contact's digest covers the threads the contact wrote in (the latest ones).
"""
from __future__ import annotations

import datetime as dt
import re
from collections import Counter

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from appliance.errors import ForbiddenError
from appliance.models import Inbox, Message, Tenant
from appliance.services.intelligence import models, nextstep
from appliance.services.mail import messages
from appliance.services.workspace import contacts

MAX_KEY = 3
MAX_QUESTIONS = 5
MAX_DATES = 10
MAX_MESSAGES = 100  # newest messages read for one digest
CONTACT_THREADS = 20
_WORD = re.compile(r"[^\W\d_]{3,}", re.UNICODE)
STOPWORDS = frozenset("""the and for you your are was were but not with this that have has had from they them their
there here what when where which who will would could should can about into than then also just our ours its it's
hi hello dear thanks thank regards best please let know get got one all any some more most very much been being
did does doing don't i'm i've we're you're he she his her him how why our out over under again only own same so too
sent message email mail""".split())


def require_feature(db: Session, inbox: Inbox, feature: str) -> None:
    """403 feature_disabled unless the inbox's (or its tenant's) enabled_features lists `feature`:
    digests are gated like phishing_detection and next_step, which the worker skips when left out."""
    if feature not in models.config_of(inbox, db.get(Tenant, inbox.tenant_id))["enabled_features"]:
        raise ForbiddenError(f"The inbox's enrichment settings do not enable {feature}.", code="feature_disabled",
                             fix=f"Add {feature} to enabled_features (PUT /v1/enrichment/).")


def thread_digest(db: Session, inbox: Inbox, thread_id: str) -> dict:
    """GET /v1/messages/threads/{id}/digest/: a thread's key sentences, participants, open questions, dates."""
    require_feature(db, inbox, "thread_digest")
    thread, members = messages.get_thread(db, inbox, thread_id)
    return {"thread_id": thread.id, "subject": thread.subject, **summarise(members[-MAX_MESSAGES:], inbox)}


def contact_digest(db: Session, inbox: Inbox, contact_id: str) -> dict:
    """GET /v1/contacts/{id}/digest/: the same over the latest threads the contact wrote in."""
    require_feature(db, inbox, "contact_digest")
    contact = contacts.get_contact(db, inbox, contact_id)
    addresses = [e["address"].lower() for e in contacts.emails_of(db, contact)]
    threads = list(dict.fromkeys(db.scalars(
        select(Message.thread_id).where(Message.inbox_id == inbox.id, func.lower(Message.from_email).in_(addresses))
        .order_by(Message.created_at.desc()).limit(MAX_MESSAGES))))[:CONTACT_THREADS]
    rows = list(db.scalars(select(Message).where(Message.inbox_id == inbox.id, Message.thread_id.in_(threads))
                           .order_by(Message.created_at.desc(), Message.id.desc()).limit(MAX_MESSAGES)))[::-1]
    return {"contact_id": contact.id, "addresses": addresses, "thread_count": len(threads),
            **summarise(rows, inbox)}


def summarise(rows: list[Message], inbox: Inbox) -> dict:
    """The digest of these messages, oldest first."""
    zone = messages.zone_of(inbox)
    zone_name = inbox.default_timezone or "UTC"
    said = [(m, nextstep.sentences(nextstep.own_text(m.text_body or ""))) for m in rows]
    return {"message_count": len(rows), "participants": _participants(rows),
            "first_at": messages.render_time(_when(rows[0]), zone) if rows else None,
            "last_at": messages.render_time(_when(rows[-1]), zone) if rows else None,
            "key_sentences": _key_sentences(said),
            "open_questions": _open_questions(said, zone),
            "dates": _dates(said, zone, zone_name)}


def _when(message: Message) -> dt.datetime:
    return message.received_at or message.sent_at or message.created_at


def _participants(rows: list[Message]) -> list[dict]:
    seen: dict[str, dict] = {}
    for m in rows:
        entry = seen.setdefault(m.from_email, {"email": m.from_email, "name": m.from_name or "", "messages": 0})
        entry["messages"] += 1
        for other in (m.to_addrs or []) + (m.cc_addrs or []):
            address = other.get("email", "")
            if address:
                seen.setdefault(address, {"email": address, "name": other.get("name", ""), "messages": 0})
    return [p for p in seen.values() if p["email"]]


def _content_words(sentence: str) -> list[str]:
    return [w for w in _WORD.findall(sentence.lower()) if w not in STOPWORDS]


def _key_sentences(said: list[tuple[Message, list[str]]]) -> list[dict]:
    counts = Counter(w for _, sentences in said for s in sentences for w in _content_words(s))
    if not counts:
        return []
    top = max(counts.values())
    scored = []
    for index, (m, sentences) in enumerate(said):
        for position, sentence in enumerate(sentences):
            words = _content_words(sentence)
            if len(words) < 2:
                continue
            score = sum(counts[w] / top for w in set(words)) / len(set(words)) ** 0.5
            scored.append((score + (0.2 if position == 0 else 0.0), index, position, sentence, m.from_email))
    best = sorted(scored, key=lambda s: -s[0])[:MAX_KEY]
    return [{"text": s[3], "from": s[4]} for s in sorted(best, key=lambda s: (s[1], s[2]))]


def _open_questions(said: list[tuple[Message, list[str]]], zone: dt.tzinfo) -> list[dict]:
    """Questions and requests of a message that no later message from someone else followed."""
    out = []
    for index, (m, sentences) in enumerate(said):
        answered = any(later.from_email != m.from_email for later, _ in said[index + 1:])
        if answered:
            continue
        out += [{"text": s, "from": m.from_email, "at": messages.render_time(_when(m), zone)}
                for s in sentences if nextstep.is_request(s)]
    return out[-MAX_QUESTIONS:]


def _dates(said: list[tuple[Message, list[str]]], zone: dt.tzinfo, zone_name: str) -> list[dict]:
    found: dict[dt.datetime, dict] = {}
    for m, sentences in said:
        for sentence in sentences:
            for phrase, at in nextstep.find_dates(sentence, now=_when(m), zone=zone_name):
                found.setdefault(at, {"at": messages.render_time(at, zone), "text": phrase, "sentence": sentence,
                                      "from": m.from_email})
    return [found[k] for k in sorted(found)][:MAX_DATES]
