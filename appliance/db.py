"""The store: engines, sessions and migrations, for SQLite (default) and PostgreSQL."""
from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

from appliance.config import Settings

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


def _configure_sqlite(engine: Engine, durable: bool, immediate: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # noqa: ANN001
        # Take transaction control from pysqlite so BEGIN IMMEDIATE can be issued below.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
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
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.read_sessions = sessionmaker(self.read_engine, expire_on_commit=False)
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

    def dispose(self) -> None:
        for engine in self._owned:
            engine.dispose()


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
