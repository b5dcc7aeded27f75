"""The per-tenant naive Bayes model of phishing (issue 21 point 3), learned from people's marks.

Each message a person marks as phishing or not phishing is cut into tokens (words of subject and
body, the sender's domain, link hosts, attachment types); the tenant's row in `phishing_models`
counts, per token, the marked messages of each kind it appeared in. A new message is scored with
a Bernoulli naive Bayes over the tokens it holds (Laplace smoothing), as log-odds of phishing.

The model speaks only once it has at least MIN_EACH marks of each kind, and its weight in the
score is capped at +/- MAX_WEIGHT, so a few marks cannot swamp the rules. A tenant's row is
read and written only for that tenant. The vocabulary is capped at MAX_TOKENS (the rarest
tokens are dropped when it grows past), so a row stays small enough to read per batch.
"""
from __future__ import annotations

import math
import re

from sqlalchemy import select
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.models import PhishingModel
from appliance.services.intelligence.mailparts import Mail

MIN_EACH = 5
MAX_WEIGHT = 6.0
MAX_TOKENS = 20_000
MAX_PER_MESSAGE = 400
LABELS = ("phishing", "safe")
_WORD = re.compile(r"[^\W\d_]{3,24}", re.UNICODE)


def tokens(mail: Mail) -> set[str]:
    """The tokens of a message (each counted once)."""
    out: set[str] = set()
    for word in _WORD.findall(f"{mail.subject}\n{mail.text[:20_000]}".lower()):
        out.add(word)
        if len(out) >= MAX_PER_MESSAGE:
            break
    sender = mail.from_email.rpartition("@")[2]
    if sender:
        out.add(f"from:{sender}")
    out.update(f"host:{link.host}" for link in mail.links[:50] if link.host)
    out.update(f"ext:{part.filename.rsplit('.', 1)[-1].lower()}" for part in mail.attachments if "." in part.filename)
    return out


def load(db: Session, tenant_id: str, *, lock: bool = False) -> PhishingModel | None:
    """The tenant's model row, or None before anyone marked a message."""
    query = select(PhishingModel).where(PhishingModel.tenant_id == tenant_id)
    if lock and db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    return db.scalar(query)


def learn(db: Session, tenant_id: str, mail: Mail, label: str, *, forget: str | None = None) -> PhishingModel:
    """Count one marked message as `label` (and, when a person changed their mark, take back the
    earlier `forget`), in the caller's transaction."""
    if label not in LABELS or forget not in (None, *LABELS):
        raise ValueError("label must be phishing or safe")
    model = load(db, tenant_id, lock=True)
    if model is None:
        model = PhishingModel(tenant_id=tenant_id, phishing_docs=0, safe_docs=0, tokens={}, updated_at=utcnow())
        db.add(model)
    counts = {k: list(v) for k, v in (model.tokens or {}).items()}
    seen = tokens(mail)
    for name, step in ((forget, -1), (label, 1)):
        if name is None:
            continue
        slot = LABELS.index(name)
        for token in seen:
            pair = counts.setdefault(token, [0, 0])
            pair[slot] = max(0, pair[slot] + step)
        if name == "phishing":
            model.phishing_docs = max(0, model.phishing_docs + step)
        else:
            model.safe_docs = max(0, model.safe_docs + step)
    model.tokens = _pruned(counts)  # a new dict: the JSON column sees the change
    model.updated_at = utcnow()
    db.flush()
    return model


def _pruned(counts: dict[str, list[int]]) -> dict[str, list[int]]:
    counts = {k: v for k, v in counts.items() if v[0] or v[1]}
    if len(counts) <= MAX_TOKENS:
        return counts
    kept = sorted(counts.items(), key=lambda kv: kv[1][0] + kv[1][1], reverse=True)[:MAX_TOKENS]
    return dict(kept)


def log_odds(model: PhishingModel | None, mail: Mail) -> float | None:
    """The model's log-odds that the message is phishing, or None while it knows too little."""
    if model is None or model.phishing_docs < MIN_EACH or model.safe_docs < MIN_EACH:
        return None
    bad, good = model.phishing_docs, model.safe_docs
    counts = model.tokens or {}
    total = math.log(bad / good)
    for token in tokens(mail):
        pair = counts.get(token)
        if pair is None:
            continue  # a token never marked tells nothing either way
        total += math.log((pair[0] + 1) / (bad + 2)) - math.log((pair[1] + 1) / (good + 2))
    return total


def weight(odds: float | None) -> float:
    """The model's part of the phishing score: half its log-odds, capped at +/- MAX_WEIGHT."""
    if odds is None:
        return 0.0
    return max(-MAX_WEIGHT, min(MAX_WEIGHT, odds / 2))
