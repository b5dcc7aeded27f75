"""`gentbox backup` while mail arrives through a real SMTP listener, and `gentbox restore` into a
fresh data dir (and, on PostgreSQL, a fresh empty database), both run as real processes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from pathlib import Path

import dkim as dkimpy
import pytest
from sqlalchemy import func, select

from appliance.backup import MAGIC
from appliance.config import load_settings
from appliance.db import Store, current_revision, make_engine
from appliance.models import AgentToken, DkimKey, Domain, Inbox, Message, MessageRaw, User
from appliance.services.domains import dkim
from appliance.services.identity.auth import authenticate
from appliance.services.mail import compose
from tests.integration.smtp_fixtures import client, message_bytes, smtp_listener, tls_files  # noqa: F401
from tests.postgres import create_database, drop_database

DOMAIN = "hosted.example"
ADDRESS = f"box@{DOMAIN}"


def gentbox(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], env=env,
                          capture_output=True, text=True, timeout=300)


def env_for(data_dir: Path, database_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENTBOX_")}
    env["GENTBOX_DATA_DIR"] = str(data_dir)
    if database_url:
        env["GENTBOX_DATABASE_URL"] = database_url
    return env


def installed(settings, tls_files, database_url: str) -> dict[str, str]:  # noqa: F811
    """Give the test's data dir what `gentbox init` writes (config, secret key file, TLS pair)."""
    data_dir = settings.data_dir
    (data_dir / "tls").mkdir(exist_ok=True)
    for src, name in zip(tls_files, ("cert.pem", "key.pem")):
        shutil.copy(src, data_dir / "tls" / name)
    (data_dir / "secret_key").write_text(settings.secret_key + "\n")
    (data_dir / "gentbox.toml").write_text(
        f'data_dir = "{data_dir}"\nsecret_key_file = "{data_dir / "secret_key"}"\n'
        f'hostname = "mail.gentbox.test"\ntls_cert_file = "{data_dir / "tls/cert.pem"}"\n'
        f'tls_key_file = "{data_dir / "tls/key.pem"}"\n')
    return env_for(data_dir, database_url)


@pytest.fixture
def fresh_database(backend: str, request: pytest.FixtureRequest):
    """A restore target: None on SQLite (the new data dir's default file), else a new empty database."""
    if backend == "sqlite":
        yield None
        return
    admin = request.getfixturevalue("postgres_admin_url")
    name = f"gentbox_restore_{uuid.uuid4().hex[:12]}"
    yield create_database(admin, name, migrated=False)
    drop_database(admin, name)


def manifest_of(archive: Path) -> dict:
    with tarfile.open(archive, "r:gz") as tar:
        return json.load(tar.extractfile("manifest.json"))


def counts(store: Store) -> dict[str, int]:
    with store.read_sessions() as db:
        return {name: db.scalar(select(func.count()).select_from(model)) for name, model in
                (("users", User), ("domains", Domain), ("inboxes", Inbox), ("agent_tokens", AgentToken),
                 ("messages", Message))}


def raw_by_id(store: Store, ids: list[str]) -> dict[str, bytes]:
    with store.read_sessions() as db:
        return {m: bytes(r) for m, r in db.execute(select(MessageRaw.message_id, MessageRaw.raw)
                                                    .where(MessageRaw.message_id.in_(ids)))}


class Sender(threading.Thread):
    """Sends mail to ADDRESS through the listener, one connection, as fast as it is accepted."""

    def __init__(self, address: tuple[str, int]) -> None:
        super().__init__(daemon=True)
        self.address, self.stopping, self.sent, self.error = address, threading.Event(), 0, None

    def run(self) -> None:
        try:
            smtp = client(self.address)
            while not self.stopping.is_set():
                body = f"Message {self.sent}.\r\n" + "Lorem ipsum dolor sit amet, consectetur adipiscing.\r\n" * 40
                smtp.sendmail("alice@sender.example", [ADDRESS],
                              message_bytes(f"m{self.sent}", ADDRESS, body=body))
                self.sent += 1
            smtp.quit()
        except Exception as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def wait_for(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.sent < n and self.error is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.error is None and self.sent >= n, (self.sent, self.error)


def test_backup_while_mail_arrives_restores_everything(world, store, settings, database_url, tls_files,  # noqa: F811
                                                       smtp_listener, fresh_database, tmp_path):  # noqa: F811
    owner = world.owner()
    world.member(owner)
    inbox_id = world.inbox(owner, ADDRESS)
    selector, public = world.signing_key(DOMAIN)
    agent = world.agent(owner, inbox_id, ["email:read"])
    env = installed(settings, tls_files, database_url)
    sender = Sender(smtp_listener())
    sender.start()
    try:
        sender.wait_for(20)
        before = sender.sent
        started = time.monotonic()
        archive = tmp_path / "backups" / "gentbox.tar.gz"
        result = gentbox("backup", str(archive), "--no-encryption", env=env)
        elapsed = time.monotonic() - started
        during = sender.sent - before
        sender.wait_for(sender.sent + 5)  # still accepting mail after the snapshot
    finally:
        sender.stopping.set()
        sender.join(30)
    assert result.returncode == 0, result.stderr
    assert "Backed up to" in result.stdout and "snapshot" in result.stderr + result.stdout
    assert during > 0, "no mail arrived while the backup ran"
    assert archive.stat().st_mode & 0o777 == 0o600
    assert [p.name for p in archive.parent.iterdir()] == ["gentbox.tar.gz"]  # no temporary file left
    manifest = manifest_of(archive)
    print(f"\n{settings.sqlalchemy_url.split(':')[0]}: backup {elapsed:.2f} s, {archive.stat().st_size} bytes, "
          f"{during} messages arrived during it; manifest {manifest['counts']}")
    assert manifest["backend"] == ("sqlite" if database_url.startswith("sqlite") else "postgresql")
    assert manifest["schema_revision"] == current_revision(store.engine)
    live = counts(store)
    assert before <= manifest["counts"]["messages"] <= live["messages"] == sender.sent
    for name in ("users", "domains", "inboxes", "agent_tokens"):
        assert manifest["counts"][name] == live[name]

    target_env = env_for(tmp_path / "restored", fresh_database)
    started = time.monotonic()
    result = gentbox("restore", str(archive), env=target_env)
    print(f"restore {time.monotonic() - started:.2f} s")
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr, result.stderr

    restored_settings = load_settings(target_env)
    assert restored_settings.data_dir == tmp_path / "restored"
    assert restored_settings.secret_key == settings.secret_key
    assert restored_settings.tls_cert_file == tmp_path / "restored/tls/cert.pem"
    assert restored_settings.tls_cert_file.read_bytes() == tls_files[0].read_bytes()
    restored = Store(restored_settings)
    try:
        got = counts(restored)
        assert got == {name: manifest["counts"][name] for name in got}
        with restored.read_sessions() as db:
            ids = list(db.scalars(select(Message.id).order_by(Message.id)))
        sample = ids[:5] + ids[len(ids) // 2:len(ids) // 2 + 5] + ids[-5:]
        assert raw_by_id(restored, sample) == raw_by_id(store, sample)
        assert current_revision(restored.engine) == current_revision(store.engine)

        # The DKIM key still opens (the secret key came along), signs, and verifies against the
        # public key stored beside it.
        with restored.read_sessions() as db:
            domain = db.scalar(select(Domain).where(Domain.name == DOMAIN))
            key = db.scalar(select(DkimKey).where(DkimKey.domain_id == domain.id, DkimKey.status == "active"))
            key_selector, pem = dkim.signing_key(db, restored_settings, domain.id)
        assert (key_selector, key.public_key) == (selector, public)
        signed = compose.sign(message_bytes("after restore", "someone@else.example",
                                            sender=ADDRESS), selector, DOMAIN, pem)

        def txt(name: bytes, timeout: float = 5) -> bytes:
            assert name.decode().rstrip(".") == f"{selector}._domainkey.{DOMAIN}"
            return f"v=DKIM1; k=rsa; p={key.public_key}".encode()
        assert dkimpy.verify(signed, dnsfunc=txt)

        # An agent token issued before the backup still authenticates.
        with restored.session() as db:
            principal = authenticate(db, agent.raw)
            assert principal.kind == "agent" and principal.token.id == agent.token_id
            assert principal.token.inbox_id == inbox_id
    finally:
        restored.dispose()


def test_encrypted_archive_and_refusals(world, store, settings, database_url, tls_files,  # noqa: F811
                                        fresh_database, tmp_path):
    owner = world.owner()
    world.inbox(owner, ADDRESS)
    world.signing_key(DOMAIN)
    env = installed(settings, tls_files, database_url)
    (tmp_path / "pass").write_text("plum kettle orbit lantern\n")
    (tmp_path / "wrong").write_text("plum kettle orbit lantern!\n")
    archive = tmp_path / "backup.gbk"
    result = gentbox("backup", str(archive), "--passphrase-file", str(tmp_path / "pass"), env=env)
    assert result.returncode == 0, result.stderr
    data = archive.read_bytes()
    assert data.startswith(MAGIC) and settings.secret_key.encode() not in data
    with pytest.raises(tarfile.TarError):
        tarfile.open(archive, "r:*")

    target_env = env_for(tmp_path / "restored", fresh_database)
    result = gentbox("restore", str(archive), "--passphrase-file", str(tmp_path / "wrong"), env=target_env)
    assert result.returncode == 1 and "Wrong passphrase" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    result = gentbox("restore", str(archive), env=target_env)
    assert result.returncode == 1 and "encrypted" in result.stderr, result.stderr
    cut = tmp_path / "cut.gbk"
    cut.write_bytes(data[:-100])
    result = gentbox("restore", str(cut), "--passphrase-file", str(tmp_path / "pass"), env=target_env)
    assert result.returncode == 1 and "damaged or cut short" in result.stderr, result.stderr

    result = gentbox("restore", str(archive), "--passphrase-file", str(tmp_path / "pass"), env=target_env)
    assert result.returncode == 0, result.stderr
    restored = Store(load_settings(target_env))
    try:
        assert counts(restored) == counts(store)
    finally:
        restored.dispose()

    # Now the target holds users and mail: a second restore is refused unless forced.
    result = gentbox("restore", str(archive), "--passphrase-file", str(tmp_path / "pass"), env=target_env)
    assert result.returncode == 1 and "not empty" in result.stderr and "--force" in result.stderr
    result = gentbox("restore", str(archive), "--passphrase-file", str(tmp_path / "pass"), "--force",
                     env=target_env)
    assert result.returncode == 0, result.stderr
    restored = Store(load_settings(target_env))
    try:
        assert counts(restored) == counts(store)
    finally:
        restored.dispose()


def test_backup_of_an_older_schema_upgrades_on_restore(tmp_path, tls_files):  # noqa: F811
    """An archive made at revision 0003 restores and is migrated to the newest schema."""
    from alembic import command
    from alembic.config import Config

    from appliance.db import MIGRATIONS_DIR, migrate
    old_dir = tmp_path / "old"
    old_dir.mkdir()
    engine = make_engine(f"sqlite:///{old_dir / 'gentbox.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003_messages")
    engine.dispose()
    (old_dir / "secret_key").write_text("s" * 48 + "\n")
    (old_dir / "gentbox.toml").write_text(f'secret_key_file = "{old_dir / "secret_key"}"\n')
    archive = tmp_path / "old.tar.gz"
    result = gentbox("backup", str(archive), "--no-encryption", env=env_for(old_dir, None))
    assert result.returncode == 0, result.stderr
    assert manifest_of(archive)["schema_revision"] == "0003_messages"
    target_env = env_for(tmp_path / "restored", None)
    result = gentbox("restore", str(archive), env=target_env)
    assert result.returncode == 0, result.stderr
    fresh = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    migrate(fresh)
    restored = make_engine(f"sqlite:///{tmp_path / 'restored' / 'gentbox.db'}")
    try:
        assert current_revision(restored) == current_revision(fresh) != "0003_messages"
    finally:
        restored.dispose()
        fresh.dispose()
