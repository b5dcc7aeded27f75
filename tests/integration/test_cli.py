"""The `gentbox` command, run as a real process (`python -m appliance.cli`), on both backends."""
from __future__ import annotations

import email
import email.policy
import os
import re
import stat
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from appliance.config import load_settings
from appliance.db import Store
from appliance.errors import GentError
from appliance.models import AuditEntry, SystemMail, User
from appliance.services.identity import accounts, waitlist

ADMIN_LINE = re.compile(r"^Admin login \(shown once\): (?P<email>\S+) / (?P<password>\S+)$", re.M)


def gentbox(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def base_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """A clean environment: no GENTBOX_* from outside, this test's data dir and settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GENTBOX_")}
    env["GENTBOX_DATA_DIR"] = str(data_dir)
    env["GENTBOX_SUBMISSION_PORT"] = env["GENTBOX_SUBMISSIONS_PORT"] = "0"  # free ports: tests run side by side
    env.update({f"GENTBOX_{key.upper()}": value for key, value in settings.items()})
    return env


def assert_clean_failure(result: subprocess.CompletedProcess[str], status: int, *needles: str) -> None:
    assert result.returncode == status, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("gentbox: "), result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr


def store_for(env: dict[str, str]) -> Store:
    """The store the command used, opened from the same environment and config file."""
    return Store(load_settings(env))


def can_log_in(env: dict[str, str], email: str, password: str) -> bool:
    store = store_for(env)
    try:
        settings = store.settings
        with store.session() as db, store.counter_sessions() as counters:
            try:
                accounts.log_in(db, counters, settings, email, password, "127.0.0.7")
            except GentError:
                return False
            counters.commit()
            return True
    finally:
        store.dispose()


@pytest.fixture
def initialised(database_url: str, tmp_path: Path) -> dict[str, str]:
    """An environment whose data dir `gentbox init` has set up on this test's store."""
    env = base_env(tmp_path / "var", database_url=database_url)
    result = gentbox("init", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    return env


def test_init_writes_config_and_secret_and_prints_the_admin_login_once(database_url: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    env = base_env(data_dir, database_url=database_url)
    first = gentbox("init", "--admin-email", "Boss@Example.COM", "--hostname", "mail.example.org",
                    cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    logins = ADMIN_LINE.findall(first.stdout)
    assert len(logins) == 1, first.stdout
    email, password = logins[0]
    assert email == "boss@example.com" and len(password) >= 12

    config = data_dir / "gentbox.toml"
    secret = data_dir / "secret_key"
    assert config.is_file() and secret.is_file()
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert len(secret.read_text().strip()) >= 32
    assert 'hostname = "mail.example.org"' in config.read_text()
    assert secret.read_text().strip() not in config.read_text()  # the secret stays in its own file
    settings = load_settings(env)
    assert settings.secret_key == secret.read_text().strip()
    assert settings.hostname == "mail.example.org"
    assert can_log_in(env, email, password)  # the printed password is the real one

    before = (config.read_bytes(), secret.read_bytes())
    again = gentbox("init", "--if-needed", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout == "" and "Admin login" not in again.stderr
    assert (config.read_bytes(), secret.read_bytes()) == before

    plain = gentbox("init", cwd=tmp_path, env=env)
    assert_clean_failure(plain, 1, "exists already")
    assert (config.read_bytes(), secret.read_bytes()) == before
    store = store_for(env)
    try:
        with store.session() as db:
            operators = db.scalars(select(User).where(User.is_operator.is_(True))).all()
            assert [u.email for u in operators] == ["boss@example.com"]
    finally:
        store.dispose()


def test_init_defaults_to_sqlite_in_the_data_dir(tmp_path: Path) -> None:
    data_dir = tmp_path / "var"
    env = base_env(data_dir)
    result = gentbox("init", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert (data_dir / "gentbox.db").is_file()
    email, password = ADMIN_LINE.search(result.stdout).groups()
    assert email == "admin@gentbox.test"
    assert can_log_in(env, email, password)


@pytest.mark.parametrize(("args", "settings", "status", "needle"), [
    (("--admin-email", "not an address"), {}, 1, "--admin-email is not an email address"),
    (("--hostname", "localhost"), {}, 2, "GENTBOX_HOSTNAME"),
    ((), {"http_port": "notanumber"}, 2, "GENTBOX_HTTP_PORT"),
])
def test_init_refuses_bad_input_before_writing_anything(tmp_path: Path, args, settings, status, needle) -> None:
    data_dir = tmp_path / "var"
    env = base_env(data_dir, **settings)
    result = gentbox("init", *args, cwd=tmp_path, env=env)
    assert_clean_failure(result, status, needle)
    assert not (data_dir / "gentbox.toml").exists()
    assert not (data_dir / "secret_key").exists()
    # Nothing half-done: a corrected retry initialises and prints the admin login.
    fixed = gentbox("init", "--if-needed", cwd=tmp_path, env=base_env(data_dir))
    assert fixed.returncode == 0, fixed.stderr
    assert len(ADMIN_LINE.findall(fixed.stdout)) == 1


def test_admin_create(initialised: dict[str, str], tmp_path: Path) -> None:
    env = initialised
    made = gentbox("admin", "create", "Ops@Example.com", "--name", "Ops", cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    assert re.search(r"^Created operator ops@example\.com \(usr_\w{26}\)\.$", made.stdout, re.M), made.stdout
    password = re.search(r"^Password \(shown once\): (\S+)$", made.stdout, re.M).group(1)
    assert can_log_in(env, "ops@example.com", password)

    password_file = tmp_path / "pw"
    password_file.write_text("a very private passphrase\n")
    quiet = gentbox("admin", "create", "ops2@example.com", "--password-file", str(password_file),
                    cwd=tmp_path, env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert "Password" not in quiet.stdout and "private" not in quiet.stdout
    assert can_log_in(env, "ops2@example.com", "a very private passphrase")

    assert_clean_failure(gentbox("admin", "create", "ops@example.com", cwd=tmp_path, env=env),
                         1, "already exists")
    assert_clean_failure(gentbox("admin", "create", "ops@", cwd=tmp_path, env=env),
                         1, "not an email address")
    assert_clean_failure(gentbox("admin", "create", "ops3@example.com", "--password-file",
                                 str(tmp_path / "missing"), cwd=tmp_path, env=env),
                         1, "--password-file", "missing")
    store = store_for(env)
    try:
        with store.session() as db:
            ops = db.scalars(select(User.email).where(User.is_operator.is_(True)).order_by(User.email)).all()
            assert ops == ["admin@gentbox.test", "ops2@example.com", "ops@example.com"]
    finally:
        store.dispose()


def test_waitlist_list_approve_reject(initialised: dict[str, str], tmp_path: Path) -> None:
    env = initialised
    empty = gentbox("waitlist", "list", cwd=tmp_path, env=env)
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout == "The waitlist is empty.\n"

    store = store_for(env)
    try:
        with store.session() as db:
            waitlist.request_access(db, "ann@example.com", "192.0.2.1")
            waitlist.request_access(db, "bob@example.com", "192.0.2.2")
            waitlist.request_access(db, "bob@example.com", "192.0.2.2")

        listed = gentbox("waitlist", "list", cwd=tmp_path, env=env)
        assert listed.returncode == 0, listed.stderr
        rows = [line.split("\t") for line in listed.stdout.splitlines()]
        assert [(r[0], r[1], r[3]) for r in rows] == [("ann@example.com", "pending", "requests=1"),
                                                      ("bob@example.com", "pending", "requests=2")]

        approved = gentbox("waitlist", "approve", "ANN@example.com", cwd=tmp_path, env=env)
        assert approved.returncode == 0, approved.stderr
        mail_id = re.search(r"^Approved ann@example\.com; the sign-up email is queued \((sml_\w{26})\)\.$",
                            approved.stdout, re.M).group(1)
        link = re.search(r"^Sign-up link: (\S+)$", approved.stdout, re.M).group(1)
        assert link.startswith("http://127.0.0.1:8080/signup/?")
        query = parse_qs(urlsplit(link).query)
        assert query["email"] == ["ann@example.com"]
        with store.session() as db:
            entry, _ = waitlist.check_signup_token(db, "ann@example.com", query["signup_token"][0])
            assert entry.status == "approved"
            mail = db.get(SystemMail, mail_id)
            assert mail is not None and mail.rcpt_to == "ann@example.com" and mail.status == "queued"
            body = email.message_from_bytes(mail.raw, policy=email.policy.default).get_content()
            assert link in body  # the same link goes out by mail

        rejected = gentbox("waitlist", "reject", "bob@example.com", cwd=tmp_path, env=env)
        assert rejected.returncode == 0, rejected.stderr
        assert rejected.stdout == "Rejected bob@example.com.\n"

        pending = gentbox("waitlist", "list", "--status", "pending", cwd=tmp_path, env=env)
        assert pending.stdout == "The waitlist is empty.\n"
        listed = gentbox("waitlist", "list", cwd=tmp_path, env=env)
        assert [tuple(line.split("\t")[:2]) for line in listed.stdout.splitlines()] == [
            ("ann@example.com", "approved"), ("bob@example.com", "rejected")]
        with store.session() as db:  # each change is in the audit log's box chain; the lists are not
            logged = [(e.action, e.edge, e.pii["changes"]) for e in db.scalars(
                select(AuditEntry).where(AuditEntry.chain == "box").order_by(AuditEntry.seq))]
        assert [a for a in logged if a[0].startswith("cli.")] == [
            ("cli.waitlist.approve", "cli", {"email": "ANN@example.com"}),
            ("cli.waitlist.reject", "cli", {"email": "bob@example.com"})]
    finally:
        store.dispose()

    assert_clean_failure(gentbox("waitlist", "approve", "nobody@example.com", cwd=tmp_path, env=env),
                         1, "nobody@example.com is not on the waitlist")
    assert_clean_failure(gentbox("waitlist", "approve", "not-an-address", cwd=tmp_path, env=env),
                         1, "not an email address")
    assert_clean_failure(gentbox("waitlist", "reject", "a\nb@example.com", cwd=tmp_path, env=env),
                         1, "line breaks")


@pytest.mark.parametrize(("setting", "value", "needle"), [
    ("http_port", "notanumber", "GENTBOX_HTTP_PORT"),
    ("smtp_port", "70000", "GENTBOX_SMTP_PORT"),
    ("log_level", "LOUD", "GENTBOX_LOG_LEVEL"),
    ("database_url", "mysql://db/gentbox", "GENTBOX_DATABASE_URL"),
])
def test_a_bad_setting_stops_every_command_at_start(tmp_path: Path, setting: str, value: str,
                                                    needle: str) -> None:
    env = base_env(tmp_path / "var", secret_key="s" * 48, **{setting: value})
    for args in (("waitlist", "list"), ("admin", "create", "x@example.com"), ("web",), ("migrate",)):
        result = gentbox(*args, cwd=tmp_path, env=env)
        assert_clean_failure(result, 2, "configuration error", needle)


def test_commands_before_init_say_to_run_init(tmp_path: Path) -> None:
    result = gentbox("waitlist", "list", cwd=tmp_path, env=base_env(tmp_path / "var"))
    assert_clean_failure(result, 2, "gentbox init")
    assert not (tmp_path / "var" / "gentbox.db").exists()
