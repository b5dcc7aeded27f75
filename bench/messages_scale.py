"""Read latency at scale (issue 4): list and search with 1,000,000 stored messages in 1,000 inboxes.

    PYTHONPATH=. .venv/bin/python bench/messages_scale.py load DIR [--database-url URL] [--messages N]
    PYTHONPATH=. .venv/bin/python bench/messages_scale.py measure DIR [--database-url URL] [--samples N]

`load` makes a data dir (SQLite there, or the PostgreSQL database at URL, which must be empty), runs
the migrations, makes 50 tenants with 20 inboxes each and an agent token (email:read) per inbox
through the real services, then bulk-inserts N messages (default 1,000,000) with SQLAlchemy Core
into the real schema: threads, messages, message_raw, message_search and, on SQLite, the FTS5
table messages_fts (filled by the triggers of migration 0008), with the rows
`appliance/services/mail/inbound.py` writes. The mail is synthetic but
shaped like an inbox: a Zipf vocabulary of 20,000 made-up words, subjects of 3-9 words, bodies of
about 1-2 KiB, 30,000 senders on 3,000 domains, a third of the messages replies in an existing
thread, 30% unread, arrival times spread over two years and interleaved across inboxes as mail
arrives. Inbox sizes are skewed (rank^-0.8): the largest holds about 64,000 messages, the smallest
about 250. Keep DIR out of the repository (/work/bench-data).

`measure` builds the Flask app (api/app.py create_app) and calls the read paths through its test
client with each inbox's agent token, as an agent would: GET /v1/messages/ (newest first), its
page 2 (the cursor of page 1), ?unread=true, and ?q= a word of one of the inbox's subjects, a word
of one of its bodies (neither among the 100 commonest words, which stand for stop words), one of
its senders' addresses, and one of the ten commonest words (in most messages: the worst case).
Each kind is sampled N times (default 300)
over random inboxes, and N/3 times on the largest inbox; prints p50/p99 in milliseconds.
"""
from __future__ import annotations

import argparse
import bisect
import collections
import datetime as dt
import itertools
import json
import random
import statistics
import sys
import time
from pathlib import Path

from sqlalchemy import create_engine, event, insert, text, update

from appliance.config import Settings
from appliance.db import Store, migrate
from appliance.ids import _encode
from appliance.models import Message, MessageRaw, MessageSearch, Thread
from appliance.services.mail.inbound import search_document, search_head
from appliance.services.mail.mime import parse_message

TENANTS, INBOXES_PER_TENANT = 50, 20
BATCH = 5_000
SYLLABLES = ("ka ro mi tel san vor lin de pra qua ben sto rum fi gal tor nes hap ju cle mar "
             "zen po lu tri ga ven so bra chi dor ex fal gri hul ist jor kel mon nar ost pel "
             "quin ras sel tam ul vex wil yar zor").split()


def vocabulary(rng: random.Random, size: int = 20_000) -> tuple[list[str], list[float]]:
    """size distinct made-up words and Zipf cumulative weights (word r has weight 1/r)."""
    words: dict[str, None] = {}
    while len(words) < size:
        words["".join(rng.choices(SYLLABLES, k=rng.choice((1, 2, 2, 3, 3, 4))))] = None
    cumulative = list(itertools.accumulate(1 / rank for rank in range(1, size + 1)))
    return list(words), cumulative


def new_message_id(millis: int, rng: random.Random, prefix: str = "msg") -> str:
    """An id as appliance.ids.new_id makes it, for a past arrival time."""
    return f"{prefix}_{_encode(millis, 10)}{_encode(rng.getrandbits(79), 16)}"


def settings_for(folder: Path, database_url: str) -> Settings:
    return Settings(data_dir=folder, database_url=database_url, secret_key="b" * 48,
                    rate_limit_token=10**9, rate_limit_ip=10**9, log_level="WARNING")


# --- load -----------------------------------------------------------------------------------
def make_inboxes(store: Store, settings: Settings, rng: random.Random) -> list[dict]:
    from tests.world import World

    world = World(store, settings)
    inboxes = []
    for t in range(TENANTS):
        owner = world.owner(f"owner{t}@tenant{t}.example")
        for i in range(INBOXES_PER_TENANT):
            address = f"agent{i}@t{t}.example.com"
            inbox_id = world.inbox(owner, address)
            agent = world.agent(owner, inbox_id, ["email:read"])
            inboxes.append({"id": inbox_id, "tenant_id": owner.tenant_id, "address": address, "token": agent.raw})
    rng.shuffle(inboxes)
    weights = [rank ** -0.8 for rank in range(1, len(inboxes) + 1)]
    total = sum(weights)
    for inbox, weight in zip(inboxes, weights):
        inbox["share"] = weight / total
    return inboxes


def bulk_engine(settings: Settings):
    """An engine for loading only: SQLite without fsync (the load is redone if it dies)."""
    url = settings.sqlalchemy_url
    if not url.startswith("sqlite"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return create_engine(url, connect_args={"options": "-c synchronous_commit=off"})
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _pragmas(conn, _record):  # noqa: ANN001
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-500000")

    return engine


class Mail:
    """The synthetic mail stream: one message at a time, in arrival order across the inboxes."""

    def __init__(self, rng: random.Random, inboxes: list[dict], count: int) -> None:
        self.rng, self.inboxes, self.count = rng, inboxes, count
        self.words, self.cumulative = vocabulary(rng)
        self.domains = ["".join(rng.choices(SYLLABLES, k=2)) + rng.choice((".com", ".org", ".net", ".io"))
                        for _ in range(3_000)]
        self.senders = [(f"{rng.choice(SYLLABLES)}.{rng.choice(SYLLABLES)}{n}@{rng.choice(self.domains)}",
                         f"{rng.choice(SYLLABLES).title()} {rng.choice(SYLLABLES).title()}")
                        for n in range(30_000)]
        self.inbox_cumulative = list(itertools.accumulate(i["share"] for i in inboxes))
        self.threads: dict[str, list[tuple[str, str, str]]] = {i["id"]: [] for i in inboxes}  # recent ones

    def text(self, k: int) -> list[str]:
        return self.rng.choices(self.words, cum_weights=self.cumulative, k=k)

    def body(self) -> str:
        lines, words = [], self.text(self.rng.randint(170, 330))
        for start in range(0, len(words), 12):
            lines.append(" ".join(words[start:start + 12]))
        return "\r\n".join(["Hello,", "", *lines, "", "Regards"])

    def messages(self):  # noqa: ANN201
        rng = self.rng
        start = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=730)
        step = dt.timedelta(days=730) / self.count
        for n in range(self.count):
            inbox = self.inboxes[min(bisect.bisect(self.inbox_cumulative, rng.random() * self.inbox_cumulative[-1]),
                                     len(self.inboxes) - 1)]
            when = start + step * n
            recent = self.threads[inbox["id"]]
            reply_to = rng.choice(recent) if recent and rng.random() < 0.33 else None
            sender, name = self.senders[min(int(rng.paretovariate(1.2)) * 7 + rng.randrange(7), 29_999)]
            subject = f"Re: {reply_to[1]}" if reply_to else " ".join(self.text(rng.randint(3, 9))).capitalize()
            header_id = f"<{n}.{rng.getrandbits(32)}@{sender.split('@')[1]}>"
            raw = (f"From: {name} <{sender}>\r\nTo: {inbox['address']}\r\nSubject: {subject}\r\n"
                   f"Date: {when.strftime('%a, %d %b %Y %H:%M:%S +0000')}\r\nMessage-ID: {header_id}\r\n"
                   + (f"In-Reply-To: {reply_to[2]}\r\n" if reply_to else "")
                   + f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{self.body()}\r\n").encode()
            yield inbox, when, raw, reply_to


def load(folder: Path, database_url: str, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    settings = settings_for(folder, database_url)
    store = Store(settings)
    migrate(store.engine)
    rng = random.Random(20261128)
    started = time.monotonic()
    inboxes = make_inboxes(store, settings, rng)
    (folder / "bench-inboxes.json").write_text(json.dumps(inboxes))
    print(f"{len(inboxes)} inboxes and tokens in {time.monotonic() - started:.0f}s", flush=True)
    engine = bulk_engine(settings)
    mail = Mail(rng, inboxes, count)
    threads: dict[str, dict] = {}
    rows: dict[str, list] = {"messages": [], "raw": [], "search": [], "threads": []}

    def flush() -> None:
        with engine.begin() as conn:
            for table, key in ((Thread.__table__, "threads"), (Message.__table__, "messages"),
                               (MessageRaw.__table__, "raw"), (MessageSearch.__table__, "search")):
                if rows[key]:
                    conn.execute(insert(table), rows[key])
        for key in rows:
            rows[key] = []

    for n, (inbox, when, raw, reply_to) in enumerate(mail.messages(), 1):
        parsed = parse_message(raw)
        millis = int(when.timestamp() * 1000)
        message_id = new_message_id(millis, rng)
        thread_id = reply_to[0] if reply_to else None
        if thread_id is None:
            thread_id = new_message_id(millis, rng, "thr")
            thread = {"id": thread_id, "tenant_id": inbox["tenant_id"], "inbox_id": inbox["id"],
                      "subject": parsed.subject, "message_count": 0, "created_at": when, "last_message_at": when}
            threads[thread_id] = thread
            rows["threads"].append(thread)
        threads[thread_id]["message_count"] += 1
        threads[thread_id]["last_message_at"] = when
        recent = mail.threads[inbox["id"]]  # what later messages of this inbox may answer
        recent.append((thread_id, parsed.subject.removeprefix("Re: "), parsed.message_id))
        del recent[:-20]
        rows["messages"].append({
            "id": message_id, "tenant_id": inbox["tenant_id"], "inbox_id": inbox["id"], "thread_id": thread_id,
            "direction": "inbound", "status": "received", "subject": parsed.subject,
            "is_read": rng.random() < 0.7, "created_at": when, "message_id_header": parsed.message_id,
            "in_reply_to": parsed.in_reply_to, "references": parsed.references, "date_header": parsed.date,
            "from_email": parsed.from_email, "from_name": parsed.from_name, "to_addrs": parsed.to,
            "cc_addrs": parsed.cc, "reply_to_addrs": parsed.reply_to, "snippet": parsed.snippet,
            "text_body": parsed.text, "html_body": parsed.html, "has_attachments": False, "size": len(raw),
            "labels": [], "authentication": {"spf": "pass", "dkim": "none", "dmarc": "pass", "dmarc_aligned": True},
            "parse_error": parsed.parse_error, "envelope_from": parsed.from_email, "envelope_to": inbox["address"],
            "client_ip": "192.0.2.10", "received_at": when, "sent_at": None})
        rows["raw"].append({"message_id": message_id, "raw": raw})
        rows["search"].append({"message_id": message_id, "inbox_id": inbox["id"],
                               "document": search_document(engine.dialect.name, search_head(parsed, parsed.from_email),
                                                           parsed.text)})
        if n % BATCH == 0:
            flush()
            if n % (BATCH * 20) == 0:
                print(f"{n:,} messages in {time.monotonic() - started:.0f}s", flush=True)
    flush()
    # Threads were inserted at their first message; their counts and times are final now.
    bump = (update(Thread.__table__).where(Thread.__table__.c.id == _param("tid"))
            .values(message_count=_param("n"), last_message_at=_param("at", Thread.__table__.c.last_message_at.type)))
    with engine.begin() as conn:
        conn.execute(bump, [{"tid": t["id"], "n": t["message_count"], "at": t["last_message_at"]}
                            for t in threads.values() if t["message_count"] > 1])
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    engine.dispose()
    store.dispose()
    print(f"loaded {count:,} messages, {len(threads):,} threads in {time.monotonic() - started:.0f}s", flush=True)


def _param(name: str, type_=None):  # noqa: ANN001, ANN202
    from sqlalchemy import bindparam
    return bindparam(name, type_=type_)


# --- measure --------------------------------------------------------------------------------
def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def measure(folder: Path, database_url: str, samples: int) -> None:
    from api.app import create_app

    settings = settings_for(folder, database_url)
    store = Store(settings)
    client = create_app(settings, store).test_client()
    inboxes = json.loads((folder / "bench-inboxes.json").read_text())
    largest = max(inboxes, key=lambda i: i["share"])
    rng = random.Random(7)
    with store.read_engine.connect() as conn:
        total = conn.execute(text("SELECT count(*) FROM messages")).scalar_one()
        sizes = dict(conn.execute(text("SELECT inbox_id, count(*) FROM messages GROUP BY inbox_id")).all())
    print(f"{total:,} messages in {len(sizes)} inboxes; largest {sizes[largest['id']]:,}, "
          f"median {statistics.median(sizes.values()):,.0f}, smallest {min(sizes.values()):,}")

    # The 100 words found in the most messages play the part of stop words ("the", "re"): the
    # subject and body terms are drawn without them; "q common word" is one of the ten commonest.
    with store.read_engine.connect() as conn:
        sample = conn.execute(text("SELECT subject || ' ' || text_body FROM messages "  # 1 in 1,024
                                   "WHERE id LIKE '%00'")).scalars().all()
    frequency = collections.Counter(w for doc in sample for w in {w.lower() for w in doc.split()})
    stop = {w for w, _n in frequency.most_common(100)}
    common = [w for w, _n in frequency.most_common(10)]

    def words_of(inbox: dict) -> dict[str, str]:
        """Search terms an agent might use: from a random message of this inbox."""
        with store.read_engine.connect() as conn:
            subject, body, sender = conn.execute(text(
                "SELECT subject, text_body, from_email FROM messages WHERE inbox_id = :i "
                "ORDER BY id LIMIT 1 OFFSET :o"), {"i": inbox["id"], "o": rng.randrange(sizes[inbox["id"]])}).one()
        subject_words = [w for w in subject.split() if w.isalpha() and w.lower() not in stop] or ["nothing"]
        body_words = [w for w in body.split() if w.isalpha() and w.lower() not in stop]
        return {"subject": rng.choice(subject_words), "body": rng.choice(body_words), "sender": sender,
                "common": rng.choice(common)}

    def timed(path: str, token: str, **query) -> tuple[float, dict]:
        started = time.perf_counter()
        response = client.get(path, headers={"Authorization": f"Bearer {token}"}, query_string=query)
        elapsed = (time.perf_counter() - started) * 1000
        assert response.status_code == 200, (response.status_code, response.get_data(as_text=True)[:300])
        return elapsed, response.json

    kinds = ("newest", "page 2", "unread", "q subject word", "q body word", "q sender", "q common word")
    for label, pool, n in (("random inbox", inboxes, samples), ("largest inbox", [largest], max(samples // 3, 1))):
        times: dict[str, list[float]] = {k: [] for k in kinds}
        found: dict[str, list[int]] = {k: [] for k in kinds}
        for _ in range(n):
            inbox = rng.choice(pool)
            token = inbox["token"]
            terms = words_of(inbox)
            ms, first = timed("/v1/messages/", token)
            times["newest"].append(ms)
            found["newest"].append(len(first["results"]))
            ms, page = timed("/v1/messages/", token, cursor=first["cursor"])
            times["page 2"].append(ms)
            found["page 2"].append(len(page["results"]))
            for kind, query in (("unread", {"unread": "true"}), ("q subject word", {"q": terms["subject"]}),
                                ("q body word", {"q": terms["body"]}), ("q sender", {"q": terms["sender"]}),
                                ("q common word", {"q": terms["common"]})):
                ms, result = timed("/v1/messages/", token, **query)
                times[kind].append(ms)
                found[kind].append(len(result["results"]))
        print(f"\n{label} ({n} samples each; limit 50, the default)")
        print(f"{'request':<16} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'results (median)':>17}")
        for kind in kinds:
            print(f"{kind:<16} {percentile(times[kind], 0.5):8.1f} {percentile(times[kind], 0.99):8.1f} "
                  f"{max(times[kind]):8.1f} {statistics.median(found[kind]):17.0f}")
    store.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("load", "measure"))
    parser.add_argument("folder", type=Path)
    parser.add_argument("--database-url", default="")
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    if args.action == "load":
        load(args.folder.resolve(), args.database_url, args.messages)
    else:
        measure(args.folder.resolve(), args.database_url, args.samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
