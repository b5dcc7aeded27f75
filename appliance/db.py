"""The store: engines, sessions and migrations, for SQLite (default) and PostgreSQL."""
from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from appliance.config import Settings

log = logging.getLogger("gentbox.db")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def make_engine(url: str, *, durable: bool = True, immediate: bool = True) -> Engine:
    """An engine for url. SQLite gets WAL, foreign keys, a busy timeout and FULL (fsync) commits.

    durable=False gives synchronous=NORMAL, which in WAL mode may lose the last commits on power
    loss but never corrupts: only for data that may be lost (rate-limit counters).
    immediate=False starts SQLite transactions deferred: for readers, which then never wait for
    the writer, and for single-statement writers (a lock taken by the statement itself).
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               hide_parameters=True)  # errors are logged: never with the values
        _configure_sqlite(engine, durable, immediate)
        return engine
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg://" + url.split("://", 1)[1]
    url = _multi_host(url)
    # psycopg prepares a statement after its fifth run, and PostgreSQL may then plan it once for
    # any values: one plan for the inbox of 200 messages and the one of 64,000, for the rare word
    # and the one in every message (a search took 720 ms instead of 30). Plan with the values.
    options = "-c plan_cache_mode=force_custom_plan"
    if not durable:  # counters: a crash may lose the last increments, never consistency
        options += " -c synchronous_commit=off"
    # No pre-ping (a round trip per checkout): a dropped connection fails its one request with
    # 503 and the pool replaces it; recycling bounds how long an idle connection is trusted.
    return create_engine(url, pool_size=5, max_overflow=10, pool_recycle=600, hide_parameters=True,
                         connect_args={"options": options})


def _multi_host(url: str) -> str:
    """libpq's multi-host form (postgresql://u:p@h1:5432,h2:5432/db?target_session_attrs=read-write,
    what a failover setup gives every node: docs/scaling.md) in the form SQLAlchemy parses, one
    host= per server; libpq then tries them in order and takes the first that fits."""
    scheme, sep, rest = url.partition("://")
    netloc, _slash, tail = rest.partition("/")
    userinfo, at, hosts = netloc.rpartition("@")
    if not sep or "," not in hosts:
        return url
    path, _question, query = tail.partition("?")
    pairs = [f"host={quote(h, safe=':[]')}" for h in hosts.split(",")]
    query = "&".join(pairs + ([query] if query else []))
    return f"{scheme}://{userinfo}{at}/{path}?{query}"


def libpq_url(url: str) -> str:
    """url as libpq itself takes it (psycopg.connect, pg_dump): the plain postgresql:// scheme."""
    return "postgresql://" + url.split("://", 1)[1] if url.startswith("postgresql+psycopg://") else url


def _configure_sqlite(engine: Engine, durable: bool, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001
        # Take transaction control from pysqlite so BEGIN IMMEDIATE can be issued below.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        if durable:
            # A new database file gets pages of 16 KiB (an existing one keeps its size; this must
            # come before the first write): a 100 KiB message is then 7 pages, not 25, and every
            # page a commit changes is one WAL frame, one write and one checksum. The listener's
            # commits took 12% less time for 100 KiB messages (docs/benchmarks.md).
            cur.execute("PRAGMA page_size=16384")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # noqa: ANN001
        # IMMEDIATE takes the write lock up front: a read-then-write transaction can then never
        # fail with "database is locked" halfway; it waits for busy_timeout instead.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _sibling(url: str, name: str) -> str:
    """An SQLite URL for another file beside the database of url (in memory stays in memory)."""
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if not path or path == ":memory:":
        return "sqlite://"
    return "sqlite:///" + str(Path(path).with_name(name))


class Store:
    """The engines and session factory of one process."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        url = settings.sqlalchemy_url
        if url.startswith("sqlite"):
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.engine = make_engine(url)
        if not url.startswith("sqlite"):
            # PostgreSQL: reads run in autocommit (no BEGIN/COMMIT round trips); hot counter rows
            # (one per token) commit without waiting for the WAL flush.
            self.read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
            self.counters_engine = make_engine(url, durable=False)
            self._owned = [self.engine, self.counters_engine]
        else:
            # Read-only requests take no write lock, so they never queue behind writers (WAL).
            self.read_engine = make_engine(url, immediate=False)
            # SQLite has one writer per file. Rate counters are written while a request's own
            # unit of work is open, so they live in a file of their own, with commits off the
            # fsync path: counters tolerate loss on power failure, mail and accounts do not.
            self.counters_engine = make_engine(_sibling(url, "counters.db"), durable=False, immediate=False)
            from appliance.models import RateCounter
            RateCounter.__table__.create(self.counters_engine, checkfirst=True)
            self._owned = [self.engine, self.read_engine, self.counters_engine]
        # SQLite file: where writers that opt in queue for their turn (see writer_turn).
        path = _sibling(url, Path(url.split(":///", 1)[1]).name + ".writer-lock") if url.startswith("sqlite") else ""
        self._writer_lock = path.split(":///", 1)[1] if ":///" in path else None
        # Every session knows where blob bytes go (appliance/services/workspace/blobs.py).
        info = {"blob_dir": settings.blob_dir}
        self.sessions = sessionmaker(self.engine, expire_on_commit=False, info=info)
        self.read_sessions = sessionmaker(self.read_engine, expire_on_commit=False, info=info)
        self.counter_sessions = sessionmaker(self.counters_engine, expire_on_commit=False)

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed when the block ends normally, rolled back otherwise."""
        with self.sessions() as db:
            try:
                yield db
                db.commit()
            except BaseException:
                db.rollback()
                raise

    @contextlib.contextmanager
    def late_write_session(self) -> Iterator[Session]:
        """A unit of work that reads before it writes, for a hot call whose slow part needs no
        lock (the API's send composes, signs and parses a message before it stores anything).

        On an SQLite file it starts as a reader on a snapshot (WAL: no lock, no wait), and takes
        its turn among the writers (`writer_turn`) and the write lock only at `begin_writes(db)`:
        the write lock is then held for the inserts alone instead of the whole call, so concurrent
        calls do their slow parts side by side. The caller commits or rolls back before the block
        ends. What the read phase saw may change before the write phase begins: the write phase
        re-checks what must hold when it commits (a cap is charged there, a paused inbox is read
        again). Elsewhere (PostgreSQL: no single writer) it is one ordinary unit of work."""
        if self._writer_lock is None:
            with self.sessions() as db:
                yield db
            return
        with contextlib.ExitStack() as stack:
            db = stack.enter_context(self.read_sessions())
            db.info["late_writes"] = (self, stack)
            yield db

    @contextlib.contextmanager
    def writer_turn(self) -> Iterator[None]:
        """On an SQLite file: wait in the kernel for a turn among the writers that ask (flock), so
        that between them the write lock passes on at once; SQLite's own wait for it is a poll with
        sleeps of up to 100 ms. Writers that do not ask still get SQLite's wait. Elsewhere: nothing."""
        if self._writer_lock is None:
            yield
            return
        fd = os.open(self._writer_lock, os.O_RDWR | os.O_CREAT, 0o600)  # its own: excludes threads too
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def start_checkpointer(self) -> "WalCheckpointer | None":
        """On an SQLite file: this process's writes through `engine` stop checkpointing the WAL in
        their commits, and a WalCheckpointer thread does it instead (stop() it when done). For a
        process whose writes are the hot path (the SMTP listener's committer). Elsewhere: None."""
        if self._writer_lock is None:
            return None
        if not event.contains(self.engine, "connect", _no_autocheckpoint):
            event.listen(self.engine, "connect", _no_autocheckpoint)
        self.engine.dispose()  # connections made from now on have it (checked-out ones finish as they are)
        return WalCheckpointer(self.engine.url.database, self.writer_turn)

    def dispose(self) -> None:
        for engine in self._owned:
            engine.dispose()


def begin_writes(db: Session) -> None:
    """Where a unit of work from `Store.late_write_session` stops reading and starts writing: its
    snapshot ends, it waits for its writer turn and writes through the locking engine. Anything
    else (an ordinary unit of work, or one already writing): nothing, so a service that calls this
    before its first write serves every caller alike."""
    late = db.info.pop("late_writes", None)
    if late is None:
        return
    store, stack = late
    if db.new or db.dirty or db.deleted:  # pragma: no cover - a write before this call is a bug
        raise RuntimeError("begin_writes() after a write: call it before the unit of work's first change")
    db.commit()  # ends the read snapshot (nothing was written), the objects read stay usable
    stack.enter_context(store.writer_turn())  # released after the caller's commit or rollback
    db.bind = store.engine


def _no_autocheckpoint(dbapi_conn, _record) -> None:  # noqa: ANN001
    dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")


class WalCheckpointer:
    """Copies committed pages from an SQLite file's WAL into the database from a thread of its own.

    SQLite's automatic checkpoint runs inside the commit that takes the WAL past 1,000 pages, in
    the committing thread, while it still holds `Store.writer_turn`: with large messages nearly
    every commit of the listener ran one (megabytes written and fsynced), and every other writer
    waited for it. Here the bulk of the copying happens beside the writers (a PASSIVE checkpoint
    never blocks them); then, once the WAL holds `tail_frames` frames or more, a second pass inside
    a writer turn copies the few frames appended meanwhile, so the checkpoint is complete and the
    next writer starts the WAL over from its beginning: the WAL stays bounded (about what
    `interval` seconds of writes add). Durability is unchanged: a commit is durable once its WAL
    frames are synced; a checkpoint syncs the database file before the WAL is reused."""

    def __init__(self, path: str, writer_turn, *, interval: float = 0.05,  # noqa: ANN001
                 idle_interval: float = 1.0, tail_frames: int = 1000) -> None:
        self.path = path
        self.writer_turn = writer_turn
        self.interval = interval
        self.idle_interval = idle_interval
        self.tail_frames = tail_frames
        self.checkpoints = 0  # passes that completed (for tests and curiosity)
        self._finished_at = -1  # the WAL's length (frames) when a pass last completed
        self._wake = threading.Event()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        """A commit happened: checkpoint soon."""
        self._wake.set()

    def stop(self) -> None:
        """A last checkpoint, then the thread ends."""
        self._stopping = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        failing = False
        while True:
            stopping = self._stopping  # read before the last pass: a stop() meanwhile still gets one
            if not stopping and self._wake.wait(self.idle_interval):
                self._wake.clear()
                time.sleep(self.interval)  # let a few commits gather
            try:
                if conn is None:
                    conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                    conn.execute("PRAGMA synchronous=FULL")  # the file is synced before the WAL is reused
                self.checkpoint(conn)
                failing = False
            except Exception:  # noqa: BLE001 - the next pass tries again; mail is not waiting for it
                if not failing:
                    log.warning("sqlite: cannot checkpoint the WAL of %s; retrying", self.path, exc_info=True)
                failing = True
                if conn is not None:
                    conn.close()
                    conn = None
            if stopping:
                break
        if conn is not None:
            conn.close()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            _busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            # A complete checkpoint lets the next writer start the WAL over, but only if no writer
            # began meanwhile: a pass beside the writers rarely is, so once the WAL is long, finish
            # inside a writer turn (unless that was done at this very length, with no commit since).
            if frames >= self.tail_frames and frames != self._finished_at:
                with self.writer_turn():
                    _busy, frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            if frames >= 0 and copied == frames:
                self.checkpoints += 1
                self._finished_at = frames
        except sqlite3.OperationalError as exc:
            if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise
            log.debug("sqlite: checkpoint deferred (busy)", exc_info=True)  # the next pass tries again


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration; safe to run from several processes at once."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        if not is_sqlite(engine):
            # Several nodes may start together on one PostgreSQL: let one migrate at a time.
            conn.execute(text("SELECT pg_advisory_xact_lock(7262616)"))
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def current_revision(engine: Engine) -> str | None:
    """The schema revision the database is at, or None before the first migration."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
