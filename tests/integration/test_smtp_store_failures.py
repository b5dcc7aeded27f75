"""When the store cannot take a message the client hears 451/452, never 250, and may retry."""
from __future__ import annotations

import base64
import contextlib
import errno
import os
import pwd
import secrets
import shutil
import smtplib
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest
from sqlalchemy import func, make_url, select, text

from appliance.config import Settings
from appliance.db import Store, make_engine
from appliance.models import Message
from tests.integration.smtp_fixtures import client, message_bytes, smtp_listener, stored, tls_files  # noqa: F401
from tests.world import World


def message_count(store: Store) -> int:
    with store.read_sessions() as db:
        return db.scalar(select(func.count()).select_from(Message))


def test_an_unreachable_store_defers_every_recipient(backend: str, settings, make_store,
                                                     smtp_listener, tmp_path: Path) -> None:
    if backend == "postgres":
        settings = settings.model_copy(update={"database_url": "postgresql://gentbox_test:x@127.0.0.1:9/gone"})
        store = make_store(settings)
    else:  # the data directory disappears under the running listener (a lost mount, say)
        folder = tmp_path / "lost"
        folder.mkdir()
        settings = settings.model_copy(update={"database_url": f"sqlite:///{folder / 'gentbox.db'}"})
        store = make_store(settings)
        shutil.rmtree(folder)
    address = smtp_listener(store=store, settings=settings)
    with client(address) as smtp:
        assert smtp.mail("a@sender.example")[0] == 250
        code, reply = smtp.rcpt("agent@hosted.example")
        assert (code, reply[:5]) == (451, b"4.3.0"), reply
        smtp.rset()
        with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
            smtp.sendmail("a@sender.example", ["agent@hosted.example"], message_bytes("x", "y"))
        assert refused.value.recipients["agent@hosted.example"][0] == 451


def test_a_store_failing_at_commit_answers_451_stores_nothing_and_recovers(
        world, store, smtp_listener, database_url: str) -> None:
    owner = world.owner()
    world.inbox(owner, "agent@hosted.example")
    address = smtp_listener()
    admin = make_engine(database_url)
    sent = message_bytes("Retry me", "agent@hosted.example")
    try:
        with client(address) as smtp:
            assert smtp.mail("a@sender.example")[0] == 250
            assert smtp.rcpt("agent@hosted.example")[0] == 250
            with admin.begin() as conn:  # the raw-message table goes away between RCPT and DATA
                conn.execute(text("ALTER TABLE message_raw RENAME TO message_raw_away"))
            code, reply = smtp.data(sent)
            assert (code, reply[:5]) == (451, b"4.3.0"), reply
            assert message_count(store) == 0  # the whole unit of work was rolled back
            with admin.begin() as conn:
                conn.execute(text("ALTER TABLE message_raw_away RENAME TO message_raw"))
            assert smtp.sendmail("a@sender.example", ["agent@hosted.example"], sent) == {}
    finally:
        with admin.begin() as conn:
            if "message_raw_away" in _tables(conn):
                conn.execute(text("ALTER TABLE message_raw_away RENAME TO message_raw"))
        admin.dispose()
    [(message, raw)] = stored(store)
    assert message.subject == "Retry me" and raw.endswith(sent)


def _tables(conn) -> set[str]:
    if conn.dialect.name == "sqlite":
        return set(conn.execute(text("SELECT name FROM sqlite_master WHERE type = 'table'")).scalars())
    return set(conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())


# A disk that is full for real: a small tmpfs, filled to the last byte. Mounting needs root, which
# CI (.ci/run) and the dev box have; without it the test fails, it is never skipped.
DISK_SIZE = "16m"  # the migrated SQLite copy alone is 3.6 MB since the workspace tables


def mount_tmpfs(folder: Path, *, owner: str | None = None) -> None:
    """Mount a fresh DISK_SIZE tmpfs at folder (owned by owner, else root)."""
    if os.geteuid() != 0:
        pytest.fail(f"the full-disk test mounts a real tmpfs and must run as root, as CI does "
                    f"(this run is uid {os.geteuid()})")
    options = f"size={DISK_SIZE},mode=0700"
    if owner:
        account = pwd.getpwnam(owner)
        options += f",uid={account.pw_uid},gid={account.pw_gid}"
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "gentbox-test-disk", str(folder)],
                          capture_output=True, text=True, timeout=30)
    if done.returncode:
        pytest.fail(f"cannot mount a tmpfs at {folder} (the test needs CAP_SYS_ADMIN): {done.stderr.strip()}")


def unmount(folder: Path) -> None:
    done = subprocess.run(["umount", str(folder)], capture_output=True, text=True, timeout=30)
    if done.returncode:  # still in use: detach it anyway, so no mount outlives the run, and say so
        subprocess.run(["umount", "--lazy", str(folder)], capture_output=True, timeout=30)
        raise AssertionError(f"{folder} was still in use at unmount: {done.stderr.strip()}")


def fill(folder: Path) -> Path:
    """Take every free byte of folder's filesystem with one file, which is returned."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        # Another writer (the listener's heartbeat) may take a block between the measure and the
        # allocation, which then fails whole: measure again and take what is left.
        for _ in range(50):
            free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
            if not free:
                break
            try:
                os.posix_fallocate(fd, os.fstat(fd).st_size, free)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
    finally:
        os.close(fd)
    assert os.statvfs(folder).f_bavail == 0, "the filler left room on the tmpfs"
    return filler


class SqliteDataDir:
    """The listener's data directory (its database, WAL, shared memory and counters) on the tmpfs."""

    def __init__(self, folder: Path, database_url: str) -> None:
        mount_tmpfs(folder)
        self.folder = folder
        self.database = folder / "gentbox.db"
        try:
            shutil.copy(database_url.split(":///", 1)[1], self.database)  # this test's migrated copy
        except BaseException:
            unmount(folder)
            raise

    def settings(self, settings: Settings) -> Settings:
        return settings.model_copy(update={"data_dir": self.folder, "database_url": ""})

    def fill(self) -> None:
        self.filler = fill(self.folder)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def assert_consistent(self) -> None:
        """SQLite's own check of the database file together with whatever the WAL holds."""
        with contextlib.closing(sqlite3.connect(self.database)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]

    def close(self) -> None:
        unmount(self.folder)


class PostgresTablespace:
    """Every table and index of the test database moved into a tablespace on the tmpfs: PostgreSQL
    then meets ENOSPC when it extends a data file (SQLSTATE 53100, disk_full). Its WAL stays on the
    server's own disk, as a separate WAL volume would (a full WAL disk is a PANIC, not a 452)."""

    def __init__(self, database_url: str) -> None:
        url = make_url(database_url)
        self.port, self.database, self.role = url.port or 5432, url.database, url.username
        self.name = f"gentbox_full_{secrets.token_hex(6)}"
        # Not under tmp_path: pytest makes its folders 0700 root, which the postgres user cannot enter.
        self.folder = Path(tempfile.mkdtemp(prefix="gentbox-full-disk-"))
        self.engine = make_engine(database_url)
        self.stack = contextlib.ExitStack()  # close() undoes, in reverse, however far this got
        try:
            self._build()
        except BaseException:
            self.stack.close()
            raise

    def _build(self) -> None:
        self.stack.callback(self.folder.rmdir)
        mount_tmpfs(self.folder, owner="postgres")
        self.stack.callback(unmount, self.folder)
        location = self.folder / "tablespace"
        location.mkdir()
        shutil.chown(location, "postgres", "postgres")
        # CREATE TABLESPACE takes a superuser; the suite's role (gentbox_test) is not one.
        self.superuser(f'CREATE TABLESPACE "{self.name}" OWNER "{self.role}" LOCATION \'{location}\'')
        self.stack.callback(self.superuser, f'DROP TABLESPACE "{self.name}"')
        self.stack.callback(self.engine.dispose)
        self.stack.callback(self.move, self.name, "pg_default")
        self.move("pg_default", self.name)
        with self.engine.connect() as conn:
            elsewhere = conn.execute(text(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'i') AND c.reltablespace = 0")).scalar_one()
        assert elsewhere == 0, f"{elsewhere} tables or indexes stayed on the server's own disk"

    def superuser(self, sql: str) -> None:
        """Run sql as the postgres superuser (peer authentication on the local socket)."""
        done = subprocess.run(["runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-v", "ON_ERROR_STOP=1",
                               "-p", str(self.port), "-d", self.database, "-c", sql],
                              capture_output=True, text=True, timeout=120)
        if done.returncode:
            pytest.fail(f"as the postgres superuser on the local server, {sql!r} failed: {done.stderr.strip()}")

    def move(self, source: str, target: str) -> None:
        with self.engine.begin() as conn:
            for kind in ("TABLE", "INDEX"):  # a table's TOAST table and its index move with it
                conn.execute(text(f'ALTER {kind} ALL IN TABLESPACE "{source}" OWNED BY CURRENT_USER '
                                  f'SET TABLESPACE "{target}"'))

    def settings(self, settings: Settings) -> Settings:
        return settings

    def fill(self) -> None:
        self.filler = fill(self.folder)

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def assert_consistent(self) -> None:
        """Nothing to check beyond the rows: PostgreSQL rolls back an aborted transaction whole."""

    def close(self) -> None:
        if getattr(self, "filler", None):
            self.free()
        self.stack.close()


@pytest.fixture
def full_disk(backend: str, database_url: str, tmp_path: Path):
    """This test's store on a small real filesystem; fill() and free() it. Request it before the
    listener and stores, so it is unmounted after they have closed their files."""
    disk = SqliteDataDir(tmp_path / "disk", database_url) if backend == "sqlite" else PostgresTablespace(database_url)
    yield disk
    disk.close()


def incompressible_body(size: int) -> str:
    """Random base64 text: PostgreSQL cannot compress it into a page it already has."""
    encoded = base64.b64encode(os.urandom(size * 3 // 4)).decode()
    return "\r\n".join(encoded[i:i + 76] for i in range(0, len(encoded), 76))


def test_a_full_disk_answers_452_until_space_returns(full_disk, settings, make_store, smtp_listener) -> None:
    settings = full_disk.settings(settings)
    store = make_store(settings)
    world = World(store, settings)
    world.inbox(world.owner(), "agent@hosted.example")
    address = smtp_listener(store=store, settings=settings)
    big = message_bytes("Big report", "agent@hosted.example", body=incompressible_body(240_000))
    full_disk.fill()
    with client(address) as smtp:
        for _ in range(2):  # the session survives the failure, and fails the same way again
            assert smtp.mail("a@sender.example")[0] == 250
            assert smtp.rcpt("agent@hosted.example")[0] == 250
            code, reply = smtp.data(big)
            assert (code, reply[:5]) == (452, b"4.3.1"), reply
        assert message_count(store) == 0
        full_disk.assert_consistent()
        with client(address) as other:  # and so does the listener
            assert other.noop()[0] == 250
        full_disk.free()
        assert smtp.sendmail("a@sender.example", ["agent@hosted.example"], big) == {}
    [(message, raw)] = stored(store)  # once, and byte for byte under our trace header
    assert message.subject == "Big report" and raw.endswith(big) and raw.startswith(b"Received: ")
    store.dispose()  # SQLite: the last connection checkpoints the WAL into the database file
    full_disk.assert_consistent()
