"""The relationship graph (issue 21 point 2, contract section 15): who matters to an inbox.

Maintained incrementally as mail flows: the activity projector (activity.py) calls `observe`
once per new received or sent message, and a request only reads a few indexed rows (never all
mail). Nodes are the inbox's correspondents; edges join two people who share threads.

Strength (documented in docs/activity.md). Each message to or from a person adds 1 to their
decayed weight S, and S halves every 30 days (HALF_LIFE_DAYS):

    S(now) = sum over their messages of 2^(-(now - sent_at) / 30 days)
    strength = S / (S + 4)                                    (in [0, 1))

so frequency raises S, silence lets it decay: one message today gives 0.2, four recent ones 0.5,
twenty recent ones 0.83; someone who wrote twenty times a year ago has S = 20 * 2^-12 and
strength 0.001. S is stored with the time it was computed (`score`, `score_at`) and brought
forward on each update: S_new = S_old * 2^(-(t - score_at) / 30 d) + 1.

Ordering without recomputing: S(now) = score * 2^(-(now - score_at)/H), so
log2 S(now) = log2(score) + score_at/H - now/H. The last term is the same for every node, so
`rank = log2(score) + score_at_days / H` sorts nodes exactly as their strength now does, and an
index on (inbox_id, rank) serves "the strongest N" directly.

Edges: `relationship_threads` records who was seen in each thread; a person's first appearance in
a thread adds 1 to their edge with every other person already in it, so an edge's weight is the
number of threads the two share. Only the first EDGE_FANOUT participants of one message make
edges (a message to 500 people would otherwise write 125,000 edges). The graph also joins the
inbox itself to each person, weighted by the messages between them.
"""
from __future__ import annotations

import datetime as dt
import math
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.errors import NotFoundError
from appliance.models import ContactEmail, RelationshipEdge, RelationshipNode, RelationshipThread
from appliance.services.identity.auth import Principal, inbox_for
from appliance.services.validation import normalize_email

HALF_LIFE_DAYS = 30.0
SATURATION = 4.0  # S at which strength is 0.5
EDGE_FANOUT = 20
NEIGHBOURS = 50  # the per-person subgraph: the strongest links shown
_EPOCH = dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)
# Reads take plain rows (no ORM objects): a graph of 500 nodes and their edges stays cheap.
_NODE = (RelationshipNode.address, RelationshipNode.name, RelationshipNode.inbound_count,
         RelationshipNode.outbound_count, RelationshipNode.last_inbound_at, RelationshipNode.last_outbound_at,
         RelationshipNode.score, RelationshipNode.score_at)


def _days(at: dt.datetime) -> float:
    return (at - _EPOCH).total_seconds() / 86400


def decayed(score: float, score_at: dt.datetime, now: dt.datetime) -> float:
    """S brought forward from score_at to now (never forward in time: a past `now` keeps it)."""
    return score * 2 ** (-max(0.0, _days(now) - _days(score_at)) / HALF_LIFE_DAYS)


def strength(node: Any, now: dt.datetime | None = None) -> float:
    """The node's strength now: S / (S + 4), in [0, 1)."""
    value = decayed(node.score, node.score_at, now or utcnow())
    return round(value / (value + SATURATION), 4)


def rank_of(score: float, score_at: dt.datetime) -> float:
    """The stored sort key: log2(S) + days/H, monotone in the strength at any later time."""
    return math.log2(max(score, 1e-300)) + _days(score_at) / HALF_LIFE_DAYS


# --- writing (the projector) -------------------------------------------------------------------
class Batch:
    """The rows one projector batch touched, so each is read at most once per batch (the
    projector runs with autoflush off: new rows are known here until the batch commits)."""

    def __init__(self, db: Session) -> None:
        self.db = db
        self.nodes: dict[tuple[str, str], RelationshipNode | None] = {}
        self.edges: dict[tuple[str, str, str], RelationshipEdge | None] = {}
        self.members: dict[tuple[str, str], list[str]] = {}

    def node(self, inbox_id: str, address: str) -> RelationshipNode | None:
        key = (inbox_id, address)
        if key not in self.nodes:
            self.nodes[key] = self.db.get(RelationshipNode, key)
        return self.nodes[key]

    def edge(self, inbox_id: str, source: str, target: str) -> RelationshipEdge | None:
        key = (inbox_id, source, target)
        if key not in self.edges:
            self.edges[key] = self.db.get(RelationshipEdge, key)
        return self.edges[key]

    def thread(self, inbox_id: str, thread_id: str) -> list[str]:
        key = (inbox_id, thread_id)
        if key not in self.members:
            self.members[key] = list(self.db.scalars(select(RelationshipThread.address).where(
                RelationshipThread.inbox_id == inbox_id, RelationshipThread.thread_id == thread_id)))
        return self.members[key]


def observe(batch: Batch, *, tenant_id: str, inbox_id: str, direction: str, addresses: list[str],
            names: dict[str, str], participants: list[str], thread_id: str | None, at: dt.datetime) -> None:
    """One new message: each of `addresses` (its sender, or its recipients) counts it in
    `direction`; everyone on it joins the thread (edges to those already there)."""
    for address in addresses:
        _count(batch, tenant_id, inbox_id, address, names.get(address, ""), direction, at)
    if thread_id:
        join_thread(batch, tenant_id, inbox_id, thread_id, participants)


def _count(batch: Batch, tenant_id: str, inbox_id: str, address: str, name: str, direction: str,
           at: dt.datetime) -> None:
    node = batch.node(inbox_id, address)
    if node is None:
        node = RelationshipNode(inbox_id=inbox_id, address=address, tenant_id=tenant_id, name="", inbound_count=0,
                                outbound_count=0, score=0.0, score_at=at, rank=0.0)
        batch.db.add(node)
        batch.nodes[(inbox_id, address)] = node
    if name and name.strip():
        node.name = name.strip()[:300]
    # Out-of-order events (an older message read late) add their weight decayed to score_at.
    ref = max(node.score_at, at)
    node.score = decayed(node.score, node.score_at, ref) + decayed(1.0, at, ref)
    node.score_at, node.rank = ref, rank_of(node.score, ref)
    if direction == "inbound":
        node.inbound_count += 1
        node.last_inbound_at = max(filter(None, (node.last_inbound_at, at)))
    else:
        node.outbound_count += 1
        node.last_outbound_at = max(filter(None, (node.last_outbound_at, at)))


def join_thread(batch: Batch, tenant_id: str, inbox_id: str, thread_id: str, participants: list[str]) -> None:
    """Add the participants not yet seen in the thread; each adds 1 to its edge with every
    person already there (so an edge counts the threads two people share)."""
    wanted = list(dict.fromkeys(participants))[:EDGE_FANOUT]
    if not wanted:
        return
    members = batch.thread(inbox_id, thread_id)
    seen = set(members)
    for address in wanted:
        if address in seen:
            continue
        for other in list(members):
            _link(batch, tenant_id, inbox_id, address, other)
        batch.db.add(RelationshipThread(inbox_id=inbox_id, thread_id=thread_id, address=address, tenant_id=tenant_id))
        members.append(address)
        seen.add(address)


def _link(batch: Batch, tenant_id: str, inbox_id: str, one: str, two: str) -> None:
    source, target = sorted((one, two))
    edge = batch.edge(inbox_id, source, target)
    if edge is None:
        edge = RelationshipEdge(inbox_id=inbox_id, source=source, target=target, tenant_id=tenant_id, weight=0)
        batch.db.add(edge)
        batch.edges[(inbox_id, source, target)] = edge
    edge.weight += 1


# --- reading -----------------------------------------------------------------------------------
def list_relationships(db: Session, principal: Principal, inbox_id: str | None, *, limit: int = 50) -> dict[str, Any]:
    """GET /v1/relationships/: the `limit` strongest correspondents and the edges among them."""
    inbox = inbox_for(db, principal, inbox_id)
    nodes = list(db.execute(select(*_NODE).where(RelationshipNode.inbox_id == inbox.id)
                            .order_by(RelationshipNode.rank.desc()).limit(limit)))
    return _graph(db, inbox.id, inbox.address, nodes)


def person_graph(db: Session, principal: Principal, inbox_id: str | None, address: str) -> dict[str, Any]:
    """GET /v1/relationships/{address}/: one person, the people they share most threads with, and
    the edges among them; 404 when the inbox has never exchanged mail with the address."""
    inbox = inbox_for(db, principal, inbox_id)
    address = normalize_email(address, "address")
    person = db.get(RelationshipNode, (inbox.id, address))
    if person is None:
        raise NotFoundError("This inbox has no mail with that address yet.", field="address",
                            fix="See GET /v1/relationships/ for the inbox's correspondents.")
    # Two index walks (by source: the primary key; by target: its index), not one OR that the
    # planner answers by scanning every edge of the inbox.
    links = []
    for mine, theirs in ((RelationshipEdge.source, RelationshipEdge.target),
                         (RelationshipEdge.target, RelationshipEdge.source)):
        links += db.execute(select(theirs, RelationshipEdge.weight).where(RelationshipEdge.inbox_id == inbox.id,
                                                                          mine == address)
                            .order_by(RelationshipEdge.weight.desc()).limit(NEIGHBOURS)).all()
    links = sorted(links, key=lambda row: -row[1])[:NEIGHBOURS]
    others = {other for other, _weight in links}
    nodes = [person, *db.execute(select(*_NODE).where(RelationshipNode.inbox_id == inbox.id,
                                                      RelationshipNode.address.in_(others))
                                 .order_by(RelationshipNode.rank.desc()))] if others else [person]
    return _graph(db, inbox.id, inbox.address, nodes)


def _graph(db: Session, inbox_id: str, own: str, nodes: list) -> dict[str, Any]:
    now = utcnow()
    addresses = [n.address for n in nodes]
    contact_ids = dict(db.execute(select(ContactEmail.address, ContactEmail.contact_id).where(
        ContactEmail.inbox_id == inbox_id, ContactEmail.address.in_(addresses))).all()) if addresses else {}
    edges = [{"source": own, "target": n.address, "weight": n.inbound_count + n.outbound_count} for n in nodes]
    if len(addresses) > 1:
        edges += [{"source": source, "target": target, "weight": weight} for source, target, weight in db.execute(
            select(RelationshipEdge.source, RelationshipEdge.target, RelationshipEdge.weight).where(
                RelationshipEdge.inbox_id == inbox_id, RelationshipEdge.source.in_(addresses),
                # Wrapped so the planner walks each source's edges and filters targets, instead of
                # probing every (source, target) pair: 250,000 probes for 500 nodes.
                func.coalesce(RelationshipEdge.target, "").in_(addresses))
            .order_by(RelationshipEdge.source, RelationshipEdge.target))]
    return {"nodes": [node_to_dict(n, contact_ids.get(n.address), now) for n in nodes], "edges": edges}


def node_to_dict(node: Any, contact_id: str | None, now: dt.datetime | None = None) -> dict[str, Any]:
    """A node (row or model) as the contract's object."""
    return {"address": node.address, "contact_id": contact_id, "name": node.name,
            "strength": strength(node, now), "inbound_count": node.inbound_count,
            "outbound_count": node.outbound_count, "last_inbound_at": _iso(node.last_inbound_at),
            "last_outbound_at": _iso(node.last_outbound_at)}


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z") if value else None
