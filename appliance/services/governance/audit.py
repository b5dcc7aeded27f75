"""The audit log (issue 23, contract section 17): who did what, provably unedited.

Every change is recorded in the same transaction as the change, by the edges' one commit point
(api/framework.py for every mutating API route, webui/store.py for every form, the CLI's
operator commands), so a route cannot forget to: a test walks the URL map. Entries form one
SHA-256 hash chain per tenant and one for the box (appliance/models/audit.py): `hash` =
SHA-256 of the canonical JSON (sorted keys, no spaces, UTF-8) of the entry's fields and the
previous entry's hash. Personal data (the actor's label, the IP, the change summary) is kept in
`pii`, outside the hash, which covers an HMAC of it under a key derived from the appliance
secret: erasure clears `pii` and the chain still verifies; an edit of `pii` no longer matches
its digest, so verify still sees it.

Appending locks the chain's row in `audit_heads` (SQLite writers are serialised anyway), so
`seq` has no gaps and two writers never link to the same predecessor. Daily checkpoints (the
worker) sign the head with an Ed25519 key derived from the appliance secret, kept in its file
apart from the database, and log it to the journal: truncating the tail is then detectable
(the head row and the checkpoint both disagree with what is left).
"""
from __future__ import annotations

import base64
import contextlib
import contextvars
import datetime as dt
import functools
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from appliance.clock import utcnow
from appliance.ids import new_id
from appliance.models import BOX_CHAIN, AuditEntry, AuditHead

log = logging.getLogger("gentbox.audit")
GENESIS = "0" * 64
CHECKPOINT = "audit.checkpoint"
CHECKPOINT_EVERY = dt.timedelta(days=1)
CHECKPOINT_GRACE = dt.timedelta(hours=12)  # how late a daily checkpoint may be before verify says "missing"
_INSERT = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
_SECRET_KEY = re.compile(r"password|secret|token|private|totp|otp|passphrase|api_key|^key$|_key$|^code$",
                         re.IGNORECASE)
_PUBLIC = {"public_key", "signature", "dkim_public_key"}  # look secret by name, are not
_CONTENT_KEY = re.compile(r"^(text_body|html_body|body|content|raw)$|_base64$", re.IGNORECASE)
_KEEP_WHOLE = 200  # characters of a changed value kept in the summary; longer ones are cut


@dataclass(frozen=True)
class Actor:
    """Who acted, as an audit entry names them: kind, id and a human label (personal data)."""

    kind: str  # user | agent | system | workflow | anonymous
    id: str | None = None
    label: str = ""


def actor_from(principal: Any) -> Actor:
    """An Actor from a Principal (or None: an anonymous caller, e.g. a failed sign-in)."""
    if principal is None:
        return Actor("anonymous")
    if principal.kind == "user":
        return Actor("user", principal.user.id, principal.user.email)
    if principal.kind == "agent":
        return Actor("agent", principal.token.id, principal.token.label or "")
    return Actor(principal.kind, principal.id, principal.label)


# --- what the edge records: set by the edge, refined by services ------------------------------
@dataclass
class Scope:
    """The entry an edge will write at its commit point. A service may refine it (`refine`):
    the sign-in names the user who signed in, a route names the resource it made."""

    edge: str
    actor: Actor
    tenant_id: str | None
    ip: str | None = None
    request_id: str | None = None
    action: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    changes: Any = None
    extra: dict = field(default_factory=dict)


_scope: contextvars.ContextVar[Scope | None] = contextvars.ContextVar("gentbox_audit_scope", default=None)


@contextlib.contextmanager
def scope(edge: str, actor: Actor, tenant_id: str | None, *, ip: str | None = None,
          request_id: str | None = None) -> Iterator[Scope]:
    """The edge's unit of work: what it records at its commit point."""
    current = Scope(edge=edge, actor=actor, tenant_id=tenant_id, ip=ip, request_id=request_id)
    reset = _scope.set(current)
    try:
        yield current
    finally:
        _scope.reset(reset)


def current() -> Scope | None:
    """The edge's scope in this context, if any."""
    return _scope.get()


def refine(*, actor: Actor | None = None, tenant_id: str | None = None, action: str | None = None,
           resource_type: str | None = None, resource_id: str | None = None, changes: Any = None) -> None:
    """Say more about the change being made than the edge knows (no-op outside an edge's scope)."""
    current = _scope.get()
    if current is None:
        return
    for name, value in (("actor", actor), ("tenant_id", tenant_id), ("action", action),
                        ("resource_type", resource_type), ("resource_id", resource_id), ("changes", changes)):
        if value is not None:
            setattr(current, name, value)


def record_scope(db: Session, secret_key: str, current: Scope, *, action: str, resource_type: str | None,
                 resource_id: str | None, changes: Any) -> AuditEntry:
    """Write the edge's entry, with what services refined taking precedence."""
    return record(db, secret_key, action=current.action or action, actor=current.actor, tenant_id=current.tenant_id,
                  edge=current.edge, resource_type=current.resource_type or resource_type,
                  resource_id=current.resource_id or resource_id,
                  changes=current.changes if current.changes is not None else changes,
                  ip=current.ip, request_id=current.request_id)


# --- keys ----------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=16)  # a pure function of the secret, asked on every audited change
def _derive(secret_key: str, purpose: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"gentbox", info=purpose.encode()
                ).derive(secret_key.encode())


def signing_key(secret_key: str) -> Ed25519PrivateKey:
    """The checkpoint key: derived from the appliance secret (its file), never stored in the database."""
    return Ed25519PrivateKey.from_private_bytes(_derive(secret_key, "audit-checkpoint-ed25519"))


def public_key_b64(secret_key: str) -> str:
    raw = signing_key(secret_key).public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


# --- canonical form ----------------------------------------------------------------------------
def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()


def _at(value: dt.datetime) -> str:
    return value.astimezone(dt.timezone.utc).isoformat(timespec="microseconds")


def pii_digest(secret_key: str, pii: dict | None) -> str:
    return hmac.new(_derive(secret_key, "audit-pii"), canonical(pii or {}), hashlib.sha256).hexdigest()


def entry_hash(entry: AuditEntry) -> str:
    """SHA-256 over the canonical JSON of the hashed fields (everything but `pii` and `hash`)."""
    body = {"id": entry.id, "chain": entry.chain, "seq": entry.seq, "tenant_id": entry.tenant_id,
            "at": _at(entry.at), "actor_kind": entry.actor_kind, "actor_id": entry.actor_id,
            "action": entry.action, "resource_type": entry.resource_type, "resource_id": entry.resource_id,
            "request_id": entry.request_id, "edge": entry.edge, "pii_digest": entry.pii_digest,
            "prev_hash": entry.prev_hash}
    return hashlib.sha256(canonical(body)).hexdigest()


def summarise(changes: Any) -> Any:
    """A change summary without secrets or content: secret-looking keys redacted, message bodies
    and file bytes replaced by their length (a send is audited, its text is not), long values cut."""
    if isinstance(changes, dict):
        return {str(k): _summarise_field(str(k), v) for k, v in changes.items()}
    if isinstance(changes, list):
        return [summarise(v) for v in changes[:50]] + ([f"… {len(changes) - 50} more"] if len(changes) > 50 else [])
    if isinstance(changes, str) and len(changes) > _KEEP_WHOLE:
        return changes[:_KEEP_WHOLE] + f"… ({len(changes)} characters)"
    return changes


def _summarise_field(key: str, value: Any) -> Any:
    if _SECRET_KEY.search(key) and key not in _PUBLIC:
        return "[redacted]"
    if _CONTENT_KEY.search(key) and isinstance(value, str):
        return {"characters": len(value)}
    return summarise(value)


# --- writing -----------------------------------------------------------------------------------
def record(db: Session, secret_key: str, *, action: str, actor: Actor, tenant_id: str | None,
           edge: str, resource_type: str | None = None, resource_id: str | None = None,
           changes: Any = None, ip: str | None = None, request_id: str | None = None,
           now: dt.datetime | None = None) -> AuditEntry:
    """Append one entry to the tenant's chain (the box's when tenant_id is None), in the caller's
    transaction: it commits or rolls back with the change it records."""
    chain = tenant_id or BOX_CHAIN
    head = _lock_head(db, chain)
    pii = {"actor_label": actor.label, "ip": ip, "changes": summarise(changes)}
    entry = AuditEntry(id=new_id("aud"), chain=chain, seq=head.seq + 1, tenant_id=tenant_id,
                       at=now or utcnow(),
                       actor_kind=actor.kind, actor_id=actor.id, action=action[:100],
                       resource_type=resource_type, resource_id=(resource_id or None) and str(resource_id)[:100],
                       request_id=request_id, edge=edge, pii=pii, pii_digest=pii_digest(secret_key, pii),
                       prev_hash=head.hash)
    entry.hash = entry_hash(entry)
    db.add(entry)
    db.execute(_ADVANCE, {"b_chain": chain, "b_seq": entry.seq, "b_hash": entry.hash, "b_at": entry.at})
    for key, value in (("seq", entry.seq), ("hash", entry.hash), ("updated_at", entry.at)):
        set_committed_value(head, key, value)  # the loaded head reads what the row now holds
    db.flush()
    return entry


# Built once (every audited change runs them): the head, locked on PostgreSQL, and its advance.
_HEAD = select(AuditHead).where(AuditHead.chain == bindparam("chain")).execution_options(populate_existing=True)
_HEAD_LOCKED = {"postgresql": _HEAD.with_for_update()}
_ADVANCE = (update(AuditHead.__table__).where(AuditHead.__table__.c.chain == bindparam("b_chain"))
            .values(seq=bindparam("b_seq"), hash=bindparam("b_hash"), updated_at=bindparam("b_at")))


def _lock_head(db: Session, chain: str) -> AuditHead:
    """The chain's head row, locked until the caller's commit (made at seq 0 the first time)."""
    dialect = db.get_bind().dialect.name
    query = _HEAD_LOCKED.get(dialect, _HEAD)
    head = db.scalar(query, {"chain": chain})
    if head is None:
        db.execute(_INSERT[dialect](AuditHead.__table__).values(chain=chain, seq=0, hash=GENESIS,
                                                                 updated_at=utcnow())
                   .on_conflict_do_nothing(index_elements=["chain"]))
        head = db.scalar(query, {"chain": chain})
    return head


# --- checkpoints -------------------------------------------------------------------------------
def _checkpoint_message(chain: str, seq: int, head_hash: str) -> bytes:
    return f"gentbox-audit-checkpoint:{chain}:{seq}:{head_hash}".encode()


def checkpoint(db: Session, secret_key: str, chain: str, now: dt.datetime | None = None) -> AuditEntry | None:
    """Sign the chain's head and append the signature as an entry (None when nothing is new)."""
    head = _lock_head(db, chain)
    last = db.scalar(select(AuditEntry).where(AuditEntry.chain == chain).order_by(AuditEntry.seq.desc()).limit(1))
    if last is None or last.action == CHECKPOINT:
        return None
    signature = base64.b64encode(signing_key(secret_key).sign(_checkpoint_message(chain, head.seq, head.hash))).decode()
    detail = {"head_seq": head.seq, "head_hash": head.hash, "signature": signature,
              "public_key": public_key_b64(secret_key)}
    entry = record(db, secret_key, action=CHECKPOINT, actor=Actor("system", "system:worker", "worker"),
                   tenant_id=None if chain == BOX_CHAIN else chain, edge="worker", resource_type="audit_chain",
                   resource_id=f"{chain}:{head.seq}", changes=detail, now=now)
    log.info("audit checkpoint chain=%s seq=%d hash=%s signature=%s", chain, head.seq, head.hash, signature)
    return entry


def checkpoint_due(db: Session, secret_key: str, now: dt.datetime | None = None) -> int:
    """The daily pass: a checkpoint for every chain whose last one is a day old; returns how many."""
    now = now or utcnow()
    made = 0
    for chain in list(db.scalars(select(AuditHead.chain))):
        last = db.scalar(select(AuditEntry.at).where(AuditEntry.chain == chain, AuditEntry.action == CHECKPOINT)
                         .order_by(AuditEntry.seq.desc()).limit(1))
        if last is None or now - last >= CHECKPOINT_EVERY:
            made += checkpoint(db, secret_key, chain, now) is not None
    return made


# --- verifying ---------------------------------------------------------------------------------
@dataclass
class Verdict:
    chain: str
    entries: int = 0
    ok: bool = True
    broken_at: int | None = None  # the seq of the first broken link
    audit_id: str | None = None
    reason: str | None = None
    last_checkpoint_seq: int | None = None

    def fail(self, seq: int | None, audit_id: str | None, reason: str) -> Verdict:
        self.ok, self.broken_at, self.audit_id, self.reason = False, seq, audit_id, reason
        return self

    def to_dict(self) -> dict:
        return {"chain": self.chain, "ok": self.ok, "entries": self.entries, "broken_at_seq": self.broken_at,
                "audit_id": self.audit_id, "reason": self.reason, "last_checkpoint_seq": self.last_checkpoint_seq}


def verify(db: Session, secret_key: str, chain: str, now: dt.datetime | None = None) -> Verdict:
    """Walk the chain from its start: the first entry whose link, hash, personal-data digest or
    checkpoint signature is wrong, a gap in seq, a tail shorter than the head row or the last
    checkpoint, or a daily checkpoint missing, is named."""
    from appliance.services.governance import retention

    verdict, prev_hash, expected = Verdict(chain), GENESIS, 1
    start = retention.anchor(db, secret_key, chain)  # retention pruned the oldest: start at its signed anchor
    if start is not None:
        expected, prev_hash = start[0] + 1, start[1]
    last_checkpoint: tuple[int, dt.datetime] | None = None
    for entry in _walk(db, chain):
        problem = _check_entry(entry, secret_key, expected, prev_hash)
        if problem:  # a gap is named by the missing seq, anything else by the entry itself
            return verdict.fail(expected if entry.seq != expected else entry.seq, entry.id, problem)
        if entry.action == CHECKPOINT:
            last_checkpoint = (entry.seq, entry.at)
            verdict.last_checkpoint_seq = entry.seq
        verdict.entries += 1
        prev_hash, expected = entry.hash, entry.seq + 1
    head = db.get(AuditHead, chain)
    if head is not None and (head.seq != expected - 1 or head.hash != prev_hash):
        return verdict.fail(expected, None, f"the chain ends at seq {expected - 1} but its head says {head.seq}: "
                                            "entries were removed from the tail")
    return _check_checkpoint_age(verdict, db, chain, last_checkpoint, now or utcnow())


def _walk(db: Session, chain: str, batch: int = 1000) -> Iterator[AuditEntry]:
    """The chain's entries in seq order, a batch at a time (no server-side cursor needed)."""
    after = 0
    while True:
        rows = list(db.scalars(select(AuditEntry).where(AuditEntry.chain == chain, AuditEntry.seq > after)
                               .order_by(AuditEntry.seq).limit(batch)))
        yield from rows
        if len(rows) < batch:
            return
        after = rows[-1].seq
        db.expunge_all()


def _check_entry(entry: AuditEntry, secret_key: str, expected: int, prev_hash: str) -> str | None:
    if entry.seq != expected:
        return f"seq {expected} is missing (the next entry is seq {entry.seq}): an entry was deleted"
    if entry.prev_hash != prev_hash:
        return "prev_hash does not match the previous entry's hash"
    if entry_hash(entry) != entry.hash:
        return "the entry's fields do not match its hash: it was edited"
    if entry.pii is not None and pii_digest(secret_key, entry.pii) != entry.pii_digest:
        return "the entry's personal data does not match its digest: it was edited"
    if entry.action == CHECKPOINT and entry.pii is not None:
        detail = entry.pii.get("changes") or {}
        try:
            Ed25519PublicKey.from_public_bytes(base64.b64decode(detail["public_key"])).verify(
                base64.b64decode(detail["signature"]), _checkpoint_message(entry.chain, detail["head_seq"],
                                                                           detail["head_hash"]))
        except Exception:  # noqa: BLE001 - any failure to verify is a broken checkpoint
            return "the checkpoint's signature does not verify"
        if detail["head_seq"] != entry.seq - 1 or detail["head_hash"] != entry.prev_hash:
            return "the checkpoint does not sign the entry before it"
    if entry.action == "audit.pruned" and entry.pii is not None:
        from appliance.services.governance import retention

        return retention.check_prune(entry, secret_key)
    return None


def _check_checkpoint_age(verdict: Verdict, db: Session, chain: str, last: tuple[int, dt.datetime] | None,
                          now: dt.datetime) -> Verdict:
    first_at = db.scalar(select(AuditEntry.at).where(AuditEntry.chain == chain).order_by(AuditEntry.seq).limit(1))
    since = last[1] if last else first_at
    if since is not None and now - since > CHECKPOINT_EVERY + CHECKPOINT_GRACE:
        return verdict.fail(None, None, f"no checkpoint since {_at(since)}: the daily checkpoint is missing "
                                        "(the worker writes one a day; the tail may have been cut)")
    return verdict


# --- reading -----------------------------------------------------------------------------------
def present(entry: AuditEntry) -> dict:
    """The contract's shape of one entry."""
    pii = entry.pii or {}
    return {"audit_id": entry.id, "seq": entry.seq, "at": _at(entry.at), "tenant_id": entry.tenant_id,
            "actor": {"kind": entry.actor_kind, "id": entry.actor_id, "label": pii.get("actor_label")},
            "ip": pii.get("ip"), "request_id": entry.request_id, "edge": entry.edge, "action": entry.action,
            "resource": {"type": entry.resource_type, "id": entry.resource_id}, "changes": pii.get("changes"),
            "prev_hash": entry.prev_hash, "hash": entry.hash}


def search(db: Session, *, chains: list[str] | None, frm: dt.datetime | None = None, to: dt.datetime | None = None,
           actor: str | None = None, action: str | None = None, resource_type: str | None = None,
           cursor: str | None = None, limit: int = 100) -> tuple[list[AuditEntry], str | None]:
    """Entries of the given chains (None: every chain, for operators), newest first, paged by id."""
    query = select(AuditEntry)
    if chains is not None:
        query = query.where(AuditEntry.chain.in_(chains))
    if frm is not None:
        query = query.where(AuditEntry.at >= frm)
    if to is not None:
        query = query.where(AuditEntry.at < to)
    if actor:
        query = query.where(AuditEntry.actor_id == actor)
    if action:
        query = query.where(AuditEntry.action.startswith(action, autoescape=True) if action.endswith(".")
                            else AuditEntry.action == action)
    if resource_type:
        query = query.where(AuditEntry.resource_type == resource_type)
    if cursor:
        query = query.where(AuditEntry.id < cursor)
    rows = list(db.scalars(query.order_by(AuditEntry.id.desc()).limit(limit + 1)))
    return rows[:limit], (rows[limit - 1].id if len(rows) > limit else None)


# --- the API's verbs ---------------------------------------------------------------------------
def _chains_for(principal: Any) -> list[str] | None:
    """The chains a caller may read: an operator the box's and every tenant's, an owner or admin
    their tenant's; anyone else none (403)."""
    from appliance.errors import ForbiddenError

    if principal.kind == "user" and principal.user.is_operator:
        return None
    if principal.kind == "user" and principal.is_manager:
        return [principal.tenant_id]
    raise ForbiddenError("The audit log is for the tenant's owners and admins.", code="manager_required",
                         fix="Sign in as an owner or admin of the tenant.")


def list_entries(db: Session, principal: Any, **filters: Any) -> tuple[list[dict], str | None]:
    """GET /v1/audit/: the entries the caller may read, newest first."""
    rows, cursor = search(db, chains=_chains_for(principal), **filters)
    return [present(row) for row in rows], cursor


def verify_for(db: Session, secret_key: str, principal: Any) -> dict:
    """GET /v1/audit/verify/: every chain the caller may read, verified."""
    chains = _chains_for(principal)
    if chains is None:
        chains = list(db.scalars(select(AuditHead.chain).order_by(AuditHead.chain)))
    verdicts = [verify(db, secret_key, chain) for chain in chains]
    return {"ok": all(v.ok for v in verdicts), "public_key": public_key_b64(secret_key),
            "chains": [v.to_dict() for v in verdicts]}


SEEN_IPS_KEPT = 100  # addresses remembered per token; the oldest is forgotten first


def note_token_ip(db: Session, secret_key: str, token_id: str, ip: str, request_id: str | None = None) -> bool:
    """Record an agent token's first use from `ip` (True when it was new), in the caller's transaction."""
    from appliance.models import AgentToken

    query = select(AgentToken).where(AgentToken.id == token_id).execution_options(populate_existing=True)
    if db.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    token = db.scalar(query)
    if token is None or ip in (token.seen_ips or []):
        return False
    token.seen_ips = [*(token.seen_ips or []), ip][-SEEN_IPS_KEPT:]
    record(db, secret_key, action="tokens.first_use_from_ip", actor=Actor("agent", token.id, token.label or ""),
           tenant_id=token.tenant_id, edge="api", resource_type="tokens", resource_id=token.id,
           changes={"ip": ip}, ip=ip, request_id=request_id)
    return True
