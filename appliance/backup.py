"""Backups: one archive holding a consistent snapshot of the store, the config file, the secret key
(it opens the sealed DKIM private keys) and the TLS files; and restoring it on a fresh install.

The archive is a gzipped tar with a manifest.json; with a passphrase it is wrapped in AES-256-GCM
chunks under a scrypt-derived key (see _Sealer). The SQLite store is copied with the online backup
API in one step (a stepped copy restarts whenever a writer commits, so under steady mail it might
never finish); PostgreSQL with pg_dump inside an exported snapshot, so that the manifest's counts
describe exactly the rows in the dump. The rate-limit counters file is left out: counters may be
lost by design (appliance/db.py), and a restored box starts them afresh.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import sqlite3
import struct
import subprocess
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable

from appliance.config import Settings, load_settings
from appliance.errors import ConflictError, GentError, ValidationError

FORMAT = 1
COUNTED = ("tenants", "users", "domains", "dkim_keys", "inboxes", "agent_tokens", "messages")
CHUNK = 1 << 20
MAGIC = b"GENTBOX-BACKUP-AES256GCM-1\n"
SCRYPT_N, SCRYPT_R, SCRYPT_P = 1 << 15, 8, 1
_PATH_KEYS = ("data_dir", "secret_key_file", "tls_cert_file", "tls_key_file", "database_url")

Progress = Callable[[str], None]


def _quiet(_line: str) -> None:
    pass


@dataclass
class BackupResult:
    path: Path
    size: int
    manifest: dict


@dataclass
class RestoreResult:
    manifest: dict
    counts: dict[str, int]
    warnings: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- backup

def create_backup(settings: Settings, config_path: Path | None, dest: Path, *,
                  passphrase: str | None = None, unencrypted: bool = False,
                  progress: Progress = _quiet) -> BackupResult:
    """Write one archive of the store and the data dir's files to dest, atomically, mode 0600.
    Encrypted with passphrase; without one only when unencrypted says so on purpose."""
    _check_encryption(passphrase, unencrypted)
    dest = Path(dest).resolve()
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".gentbox-backup-") as work:
        work_dir = Path(work)
        url = settings.sqlalchemy_url
        if url.startswith("sqlite"):
            db_member, db_file = "database/gentbox.db", work_dir / "gentbox.db"
            counts, revision = _snapshot_sqlite(_sqlite_path(url), db_file, progress)
        else:
            db_member, db_file = "database/postgres.dump", work_dir / "postgres.dump"
            counts, revision = _snapshot_postgres(url, db_file, progress)
        files = {db_member: db_file, **_data_files(settings, config_path, work_dir)}
        manifest = {
            "format": FORMAT, "gentbox_version": _version(), "schema_revision": revision,
            "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "backend": "sqlite" if url.startswith("sqlite") else "postgresql",
            "hostname": settings.hostname, "data_dir": str(settings.data_dir.resolve()),
            "counts": counts,
            "files": {name: {"size": p.stat().st_size, "sha256": _sha256(p)} for name, p in files.items()},
            "erasures": _erasures(settings),  # issue 23: what a restore of an older archive must erase again
        }
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".gentbox-backup-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as raw:
                os.fchmod(raw.fileno(), 0o600)
                out: IO[bytes] = _Sealer(raw, passphrase) if passphrase else raw
                _write_tar(out, manifest, files, progress)
                if passphrase:
                    out.close()
                raw.flush()
                os.fsync(raw.fileno())
            os.replace(tmp_name, dest)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
    _fsync_dir(dest.parent)
    _note_backup(settings, dest, manifest)
    return BackupResult(dest, dest.stat().st_size, manifest)


LAST_BACKUP = "last-backup.json"  # in the data dir: when the last backup was made (the audit bundle shows it)


def _erasures(settings: Settings) -> dict:
    """The erasures carried out since the previous backup (by id, scope and keyed digest, never the
    address): erased data leaves older archives only as they expire, so restoring one means
    carrying these out again (docs/compliance.md)."""
    from appliance.db import Store
    from appliance.services.governance import compliance

    since = None
    try:
        since = dt.datetime.fromisoformat(json.loads((settings.data_dir / LAST_BACKUP).read_text())["created_at"])
    except (OSError, ValueError, KeyError):
        pass
    from sqlalchemy import inspect

    store = Store(settings)
    try:
        done = []
        if inspect(store.engine).has_table("compliance_deletions"):  # an older schema has no erasures
            with store.read_sessions() as db:
                done = compliance.erasures_since(db, since)
    finally:
        store.dispose()
    return {"since_previous_backup": since and since.isoformat(), "completed": done}


def _note_backup(settings: Settings, dest: Path, manifest: dict) -> None:
    note = {"created_at": manifest["created_at"], "path": str(dest), "backend": manifest["backend"],
            "erasures_recorded": len(manifest["erasures"]["completed"])}
    (settings.data_dir / LAST_BACKUP).write_text(json.dumps(note) + "\n")


def _check_encryption(passphrase: str | None, unencrypted: bool) -> None:
    """The archive holds the secret key (it opens the DKIM keys) and all mail: never in clear by accident."""
    if passphrase and unencrypted:
        raise ValidationError("--passphrase-file and --no-encryption contradict each other.",
                              fix="Give one of them: --passphrase-file FILE to encrypt, or --no-encryption")
    if not passphrase and not unencrypted:
        raise ValidationError(
            "Refusing to write an unencrypted backup: it holds the secret key and all mail.",
            fix="Encrypt it with --passphrase-file FILE (a file of mode 0600 holding a long passphrase, "
                "e.g. made with `openssl rand -base64 32 > FILE`), or give --no-encryption to write it "
                "in clear on purpose (e.g. onto an encrypted disk)")


def _snapshot_sqlite(path: Path, target: Path, progress: Progress) -> tuple[dict, str | None]:
    if not path.exists():
        raise ValidationError(f"No SQLite database at {path}.", fix="Check GENTBOX_DATA_DIR")
    src = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    dst = sqlite3.connect(target)
    try:
        pages = src.execute("PRAGMA page_count").fetchone()[0] * src.execute("PRAGMA page_size").fetchone()[0]
        progress(f"snapshot of {path} ({pages / 2**20:.1f} MiB) with SQLite's online backup")
        src.backup(dst)  # one step: one read transaction, so one consistent state
        dst.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
        counts, revision = _counts(dst.cursor()), _revision(dst.cursor())
    finally:
        dst.close()
        src.close()
    return counts, revision


def _snapshot_postgres(url: str, target: Path, progress: Progress) -> tuple[dict, str | None]:
    import psycopg
    env = _pg_env(url)
    with psycopg.connect(_plain_url(url)) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        counts, revision = _counts(conn.cursor()), _revision(conn.cursor())
        progress(f"pg_dump of {env['PGDATABASE']} in snapshot {snapshot}")
        _run(["pg_dump", "--format=custom", "--compress=0", "--verbose", f"--snapshot={snapshot}",
              f"--file={target}", "--no-owner", "--no-privileges"], env, progress, "pg_dump")
        conn.rollback()
    return counts, revision


def _data_files(settings: Settings, config_path: Path | None, work_dir: Path) -> dict[str, Path]:
    """The files of the data dir worth keeping: the config, the secret key, the TLS pair."""
    files: dict[str, Path] = {}
    key = work_dir / "secret_key"
    key.write_text(settings.secret_key + "\n")  # from wherever it came: file, config or environment
    files["files/secret_key"] = key
    if config_path is not None and config_path.exists():
        files["files/gentbox.toml"] = config_path
    if settings.tls_cert_file and settings.tls_key_file:
        for name, path in (("cert.pem", settings.tls_cert_file), ("key.pem", settings.tls_key_file)):
            if not path.exists():
                raise ValidationError(f"The TLS file {path} is missing.", fix="Fix tls_cert_file/tls_key_file")
            files[f"files/tls/{name}"] = path
    return files


def _write_tar(out: IO[bytes], manifest: dict, files: dict[str, Path], progress: Progress) -> None:
    total = sum(p.stat().st_size for p in files.values())
    meter = _Meter(total, progress)
    with tarfile.open(fileobj=out, mode="w:gz", compresslevel=6) as tar:
        body = json.dumps(manifest, indent=2).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size, info.mode = len(body), 0o600
        tar.addfile(info, io.BytesIO(body))
        for name, path in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = path.stat().st_size, 0o600
            with path.open("rb") as fh:
                tar.addfile(info, _Counting(fh, meter))
    meter.done()


# ---------------------------------------------------------------- restore

def restore_backup(source: Path, environ: dict[str, str], config_path: Path, *,
                   passphrase: str | None = None, force: bool = False,
                   progress: Progress = _quiet) -> RestoreResult:
    """Bring an archive back into the data dir and database the environment names, then migrate."""
    from appliance.db import Store, migrate
    target = load_settings(environ, require_secret=False)
    data_dir = target.data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=data_dir, prefix=".gentbox-restore-") as work:
        work_dir = Path(work)
        manifest = _unpack(Path(source), work_dir, passphrase, progress)
        backend = "sqlite" if target.sqlalchemy_url.startswith("sqlite") else "postgresql"
        if manifest["backend"] != backend:
            raise ValidationError(f"The archive holds a {manifest['backend']} database; this appliance is "
                                  f"configured for {backend}.", fix="Set GENTBOX_DATABASE_URL to match")
        _check_revision(manifest.get("schema_revision"))
        _refuse_non_empty(target.sqlalchemy_url, force)
        if backend == "sqlite":
            _restore_sqlite(work_dir / "database/gentbox.db", _sqlite_path(target.sqlalchemy_url), progress)
        else:
            _restore_postgres(work_dir / "database/postgres.dump", target.sqlalchemy_url, progress)
        _restore_files(work_dir / "files", data_dir, config_path, target, manifest)
    settings = load_settings(environ)
    warnings = []
    if hashlib.sha256(settings.secret_key.encode()).hexdigest() != manifest["secret_key_sha256"]:
        warnings.append("the secret key in effect differs from the archive's (does a GENTBOX_SECRET_KEY "
                        "setting override it?): the DKIM private keys will not open")
    progress("running migrations")
    store = Store(settings)
    try:
        migrate(store.engine)
        with store.engine.connect() as conn:
            counts = _counts(conn.connection.cursor())
    finally:
        store.dispose()
    for name, count in manifest["counts"].items():
        if counts.get(name) != count:
            warnings.append(f"{name}: the archive's manifest says {count}, the restored store has {counts.get(name)}")
    return RestoreResult(manifest, counts, warnings)


def _unpack(source: Path, work_dir: Path, passphrase: str | None, progress: Progress) -> dict:
    if not source.is_file():
        raise ValidationError(f"No archive at {source}.")
    with source.open("rb") as fh:
        encrypted = fh.read(len(MAGIC)) == MAGIC
    if encrypted and not passphrase:
        raise ValidationError("The archive is encrypted.", fix="Give its passphrase with --passphrase-file")
    plain = work_dir / "archive.tar.gz"
    if encrypted:
        progress("decrypting")
        with source.open("rb") as src, plain.open("wb") as dst:
            _unseal(src, dst, passphrase)
    else:
        plain = source
    try:
        with tarfile.open(plain, mode="r:gz") as tar:
            manifest = json.load(tar.extractfile("manifest.json"))
            if manifest.get("format") != FORMAT:
                raise ValidationError(f"Unknown archive format {manifest.get('format')!r}.")
            meter = _Meter(sum(f["size"] for f in manifest["files"].values()), progress)
            for name, meta in manifest["files"].items():
                out = work_dir / name  # names come from the manifest we check, never from the tar
                if ".." in Path(name).parts or Path(name).is_absolute():
                    raise ValidationError(f"Bad file name in the archive: {name!r}.")
                out.parent.mkdir(parents=True, exist_ok=True)
                digest = hashlib.sha256()
                with tar.extractfile(name) as member, out.open("wb") as dst:
                    os.fchmod(dst.fileno(), 0o600)
                    while chunk := member.read(CHUNK):
                        digest.update(chunk)
                        dst.write(chunk)
                        meter.add(len(chunk))
                if digest.hexdigest() != meta["sha256"]:
                    raise ValidationError(f"The archive is damaged: {name} does not match its checksum.")
            meter.done()
    except (tarfile.TarError, KeyError, EOFError, ValueError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValidationError(f"{source} is not a readable Gentbox backup ({exc}).") from None
    manifest["secret_key_sha256"] = hashlib.sha256(
        (work_dir / "files/secret_key").read_text().strip().encode()).hexdigest()
    return manifest


def _check_revision(revision: str | None) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from appliance.db import MIGRATIONS_DIR
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if revision and ScriptDirectory.from_config(cfg).get_revision(revision) is None:
        raise ValidationError(f"The archive's schema revision {revision} is unknown to this Gentbox.",
                              fix="Restore with the Gentbox version that made it, or a newer one")


def _refuse_non_empty(url: str, force: bool) -> None:
    rows = 0
    if url.startswith("sqlite"):
        path = _sqlite_path(url)
        if path.exists():
            with contextlib.closing(sqlite3.connect(path)) as conn:
                rows = _rows(conn.cursor(), [r[0] for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table'")])
    else:
        import psycopg
        with psycopg.connect(_plain_url(url)) as conn:
            rows = _rows(conn.cursor(), [r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")])
    if rows and not force:
        raise ConflictError("The store is not empty: restoring would replace its users and mail.",
                            fix="Restore into a fresh install, or add --force to replace everything")


def _rows(cur, tables: list[str]) -> int:  # noqa: ANN001
    return sum(cur.execute(f'SELECT COUNT(*) FROM "{t}"').fetchone()[0]
               for t in ("tenants", "users", "domains", "messages") if t in tables)


def _restore_sqlite(snapshot: Path, path: Path, progress: Progress) -> None:
    progress(f"restoring the SQLite database into {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    src, dst = sqlite3.connect(snapshot), sqlite3.connect(path, timeout=30)
    try:
        src.backup(dst)  # replaces the whole file's content in one transaction, WAL or not
        dst.execute("PRAGMA journal_mode=WAL")
    finally:
        dst.close()
        src.close()
    os.chmod(path, 0o600)


def _restore_postgres(dump: Path, url: str, progress: Progress) -> None:
    import psycopg
    progress("emptying the target database")
    with psycopg.connect(_plain_url(url), autocommit=True) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        if tables:
            conn.execute("DROP TABLE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")
        # Our own functions too (the audit log's trigger function): the dump creates them again.
        # An extension's functions (pg_trgm) stay: the dump says CREATE EXTENSION IF NOT EXISTS.
        functions = [r[0] for r in conn.execute(
            "SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = 'public' AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid "
            "AND d.deptype = 'e')")]
        for function in functions:
            conn.execute(f"DROP FUNCTION IF EXISTS {function} CASCADE")
    progress("pg_restore")
    _run(["pg_restore", "--no-owner", "--no-privileges", "--exit-on-error", "--single-transaction",
          "--verbose", f"--dbname={_pg_env(url)['PGDATABASE']}", str(dump)], _pg_env(url), progress, "pg_restore")


def _restore_files(files: Path, data_dir: Path, config_path: Path, target: Settings, manifest: dict) -> None:
    os.chmod(data_dir, 0o700)
    secret_file = data_dir / "secret_key"
    _write_private(secret_file, (files / "secret_key").read_bytes())
    new = {"data_dir": data_dir, "secret_key_file": secret_file}
    if (files / "tls/cert.pem").exists():
        (data_dir / "tls").mkdir(mode=0o700, exist_ok=True)
        for name in ("cert.pem", "key.pem"):
            _write_private(data_dir / "tls" / name, (files / "tls" / name).read_bytes())
        new.update(tls_cert_file=data_dir / "tls/cert.pem", tls_key_file=data_dir / "tls/key.pem")
    text = (files / "gentbox.toml").read_text() if (files / "gentbox.toml").exists() else \
        "# Gentbox settings, restored from a backup.\n"
    if re.search(r"(?m)^\s*database_url\s*=", text) and target.database_url:
        new["database_url"] = target.database_url  # the database we restored into, not the old one
    text = re.sub(rf"(?m)^\s*({'|'.join(_PATH_KEYS)})\s*=.*\n?", "", text)
    text = text.rstrip("\n") + "\n" + "".join(f"{k} = {json.dumps(str(v), ensure_ascii=False)}\n"
                                               for k, v in new.items())
    config_path.parent.mkdir(parents=True, exist_ok=True)
    _write_private(config_path, text.encode())


# ---------------------------------------------------------------- helpers

def _counts(cur) -> dict[str, int]:  # noqa: ANN001
    counts = {}
    for table in COUNTED:
        cur.execute(f"SELECT COUNT(*) FROM {table}")
        counts[table] = cur.fetchone()[0]
    return counts


def _revision(cur) -> str | None:  # noqa: ANN001
    cur.execute("SELECT version_num FROM alembic_version")
    rows = [r[0] for r in cur.fetchall()]
    return ",".join(sorted(rows)) or None


def _sqlite_path(url: str) -> Path:
    path = url.split(":///", 1)[1] if ":///" in url else ""
    if not path or path == ":memory:":
        raise ValidationError("An in-memory SQLite store cannot be backed up or restored.")
    return Path(path)


def _plain_url(url: str) -> str:
    return "postgresql://" + url.split("://", 1)[1]


def _pg_env(url: str) -> dict[str, str]:
    """libpq variables for url: the password travels in the environment, not on a command line."""
    from psycopg.conninfo import conninfo_to_dict
    info = conninfo_to_dict(_plain_url(url))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    for key, var in (("host", "PGHOST"), ("port", "PGPORT"), ("user", "PGUSER"),
                     ("password", "PGPASSWORD"), ("dbname", "PGDATABASE"), ("sslmode", "PGSSLMODE")):
        if info.get(key):
            env[var] = str(info[key])
    return env


def _run(cmd: list[str], env: dict[str, str], progress: Progress, what: str) -> None:
    if shutil.which(cmd[0]) is None:
        raise ValidationError(f"{cmd[0]} is not installed.", fix="Install Debian's postgresql-client")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    errors = []
    for line in proc.stderr:
        line = line.rstrip()
        if re.search(r"(dumping contents of|processing data for) table", line):
            progress("  " + line.split(": ", 1)[-1])
        elif "error" in line.lower() or "fatal" in line.lower():
            errors.append(line)
    if proc.wait() != 0:
        raise GentError(f"{what} failed: {'; '.join(errors[-3:]) or 'exit status ' + str(proc.returncode)}",
                        code="backup_failed")


def _write_private(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("gentbox")
    except PackageNotFoundError:
        return "unknown"


class _Meter:
    """Prints how much of total has gone by, at most every tenth."""

    def __init__(self, total: int, progress: Progress) -> None:
        self.total, self.progress, self.seen, self.shown = max(total, 1), progress, 0, 0

    def add(self, n: int) -> None:
        self.seen += n
        tenth = self.seen * 10 // self.total
        if tenth > self.shown and tenth < 10 and self.total >= 8 * 2**20:  # small ones: just "done"
            self.shown = tenth
            self.progress(f"  {self.seen / 2**20:.1f} of {self.total / 2**20:.1f} MiB")

    def done(self) -> None:
        self.progress(f"  {self.seen / 2**20:.1f} MiB done")


class _Counting(io.RawIOBase):
    def __init__(self, fh: IO[bytes], meter: _Meter) -> None:
        self.fh, self.meter = fh, meter

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.meter.add(len(data))
        return data


# ---------------------------------------------------------------- encryption

def _keys(passphrase: str, salt: bytes) -> tuple[bytes, bytes]:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt
    derived = Scrypt(salt=salt, length=64, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P).derive(passphrase.encode())
    return derived[:32], hashlib.sha256(derived[32:]).digest()


def _nonce(index: int, final: bool) -> bytes:
    return struct.pack(">QI", index, 1 if final else 0)


class _Sealer(io.RawIOBase):
    """A write-only stream: MAGIC, salt, scrypt parameters, a passphrase check, then 1 MiB chunks
    sealed with AES-256-GCM. A chunk's nonce is its index and whether it is the last one, so
    chunks cannot be reordered, dropped or the archive cut short without the restore noticing."""

    def __init__(self, out: IO[bytes], passphrase: str) -> None:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        salt = secrets.token_bytes(16)
        key, check = _keys(passphrase, salt)
        self.header = MAGIC + salt + struct.pack(">III", SCRYPT_N, SCRYPT_R, SCRYPT_P) + check
        self.out, self.aead, self.buffer, self.index = out, AESGCM(key), bytearray(), 0
        out.write(self.header)

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:  # noqa: ANN001
        self.buffer += data
        while len(self.buffer) > CHUNK:
            self._emit(bytes(self.buffer[:CHUNK]), final=False)
            del self.buffer[:CHUNK]
        return len(data)

    def _emit(self, chunk: bytes, final: bool) -> None:
        sealed = self.aead.encrypt(_nonce(self.index, final), chunk, self.header)
        self.out.write(struct.pack(">IB", len(sealed), final) + sealed)
        self.index += 1

    def close(self) -> None:
        if not self.closed:
            self._emit(bytes(self.buffer), final=True)
            self.buffer.clear()
        super().close()


def _unseal(src: IO[bytes], dst: IO[bytes], passphrase: str) -> None:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    fixed = src.read(len(MAGIC) + 16 + 12 + 32)
    salt = fixed[len(MAGIC):len(MAGIC) + 16]
    n, r, p = struct.unpack(">III", fixed[len(MAGIC) + 16:len(MAGIC) + 28])
    if (n, r, p) != (SCRYPT_N, SCRYPT_R, SCRYPT_P):
        raise ValidationError("The archive's encryption parameters are not supported.")
    key, check = _keys(passphrase, salt)
    if not secrets.compare_digest(check, fixed[-32:]):
        raise ValidationError("Wrong passphrase for this archive.", fix="Check --passphrase-file")
    aead, index, damaged = AESGCM(key), 0, ValidationError("The encrypted archive is damaged or cut short.")
    while True:
        head = src.read(5)
        if len(head) < 5:
            raise damaged
        size, final = struct.unpack(">IB", head)
        sealed = src.read(size)
        try:
            dst.write(aead.decrypt(_nonce(index, bool(final)), sealed, fixed))
        except InvalidTag:
            raise damaged from None
        index += 1
        if final:
            if src.read(1):
                raise damaged
            return
