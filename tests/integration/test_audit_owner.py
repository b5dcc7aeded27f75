"""Issue 23 point 2 on PostgreSQL: once `gentbox db harden` has given the audit log to its own
NOLOGIN owner role, the application role cannot drop, disable or take over the triggers that keep
it append-only, nor UPDATE, DELETE or TRUNCATE its rows, while the appliance still appends
entries, verifies the chain, clears personal data (erasure) and prunes under retention.

A database of its own with an application role of its own (the shared test database must stay
truncatable by the test role); `gentbox_test` acts as the provisioning role (CREATEROLE, given by
scripts/test-services.sh).
"""
from __future__ import annotations

import datetime as dt
import secrets

import psycopg
import pytest
from sqlalchemy import func, null, select
from sqlalchemy.engine import make_url

from appliance import doctor
from appliance.cli import main as cli_main
from appliance.clock import utcnow
from appliance.config import Settings
from appliance.db import Store, make_engine, migrate
from appliance.models import AuditEntry
from appliance.services.governance import audit, retention
from tests.conftest import _fast_settings

CHAIN = "ten_hardened"
ACTOR = audit.Actor("system", "system:test", "test")


def _url(base: str, *, user: str | None = None, password: str | None = None, database: str) -> str:
    url = make_url(base).set(database=database)
    if user:
        url = url.set(username=user, password=password)
    return url.render_as_string(hide_password=False)


@pytest.fixture
def roles_and_database(postgres_admin_url: str):
    """A fresh database owned by a fresh application role, migrated by it, not yet hardened."""
    suffix = secrets.token_hex(4)
    app, owner, name, password = f"gentbox_t_app_{suffix}", f"gentbox_t_audit_{suffix}", f"gentbox_t_hard_{suffix}", \
        secrets.token_hex(12)
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE \"{app}\" LOGIN PASSWORD '{password}'")
        conn.execute(f'GRANT "{app}" TO current_user')  # CREATE DATABASE ... OWNER asks for it
        conn.execute(f'CREATE DATABASE "{name}" OWNER "{app}"')
    app_url = _url(postgres_admin_url, user=app, password=password, database=name)
    engine = make_engine(app_url)
    migrate(engine)
    engine.dispose()
    yield {"app": app, "owner": owner, "app_url": app_url, "admin_url": _url(postgres_admin_url, database=name)}
    with psycopg.connect(postgres_admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'DROP ROLE IF EXISTS "{owner}"')
        conn.execute(f'DROP ROLE IF EXISTS "{app}"')


@pytest.fixture
def hardened(roles_and_database):
    db = roles_and_database
    assert cli_main(["db", "harden", "--admin-url", db["admin_url"], "--app-role", db["app"],
                     "--owner-role", db["owner"]]) == 0
    assert cli_main(["db", "harden", "--admin-url", db["admin_url"], "--app-role", db["app"],
                     "--owner-role", db["owner"]]) == 0  # idempotent: provisioning runs it on every upgrade
    return db


def _pg(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


REFUSED = [
    "DROP TRIGGER audit_entries_append_only ON audit_entries",
    "ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only",
    "ALTER TABLE audit_entries DISABLE TRIGGER ALL",
    "ALTER TABLE audit_entries OWNER TO CURRENT_USER",
    "DROP TABLE audit_entries CASCADE",
    "DROP FUNCTION audit_entries_append_only() CASCADE",
    "CREATE OR REPLACE FUNCTION audit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$BEGIN RETURN COALESCE(NEW, OLD); END$$",
    "TRUNCATE audit_entries",
    "UPDATE audit_entries SET action = 'forged'",
    "UPDATE audit_entries SET pii = NULL, action = 'forged'",
    "DELETE FROM audit_entries WHERE seq = 1",
    f"INSERT INTO audit_prunes (chain, through_seq, at) VALUES ('{CHAIN}', 5, now())",
    f"SELECT audit_prune('{CHAIN}', 2)",  # no signed audit.pruned entry at the head naming it
    "ALTER SCHEMA public OWNER TO CURRENT_USER",
    "ALTER TABLE audit_heads OWNER TO CURRENT_USER",
    "DROP TABLE audit_prunes",
]


def _settings(tmp_path, url: str) -> Settings:
    return Settings(**_fast_settings(data_dir=tmp_path, database_url=url))


def _write(store: Store, secret_key: str, count: int, at: dt.datetime) -> None:
    with store.session() as db:
        for n in range(count):
            audit.record(db, secret_key, action=f"test.write{n}", actor=ACTOR, tenant_id=CHAIN, edge="worker",
                         changes={"n": n, "who": "alice@remote.test"}, now=at)
        audit.checkpoint(db, secret_key, CHAIN, now=at)  # the worker's daily one


def test_the_application_role_cannot_drop_disable_or_take_over_the_triggers(hardened, tmp_path):
    settings = _settings(tmp_path, hardened["app_url"])
    store = Store(settings)
    try:
        _write(store, settings.secret_key, 3, utcnow() - dt.timedelta(days=40))
        _write(store, settings.secret_key, 2, utcnow())
        with store.read_sessions() as db:
            assert audit.verify(db, settings.secret_key, CHAIN).ok
        for statement in REFUSED:
            with psycopg.connect(_pg(hardened["app_url"]), autocommit=True) as conn:
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
        with psycopg.connect(_pg(hardened["app_url"]), autocommit=True) as conn:  # membership is not grantable
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(f'GRANT "{hardened["owner"]}" TO "{hardened["app"]}"')
            # The trigger is still there and enabled.
            assert conn.execute("SELECT tgenabled FROM pg_trigger WHERE tgname = 'audit_entries_append_only'"
                                ).fetchone() == ("O",)

        with store.session() as db:  # erasure clears personal data: the one UPDATE allowed
            db.execute(AuditEntry.__table__.update().where(AuditEntry.seq == 2).values(pii=null()))
        _write(store, settings.secret_key, 1, utcnow())  # the app still appends
        with store.session() as db:  # retention prunes through audit_prune()
            assert retention.prune_audit(db, settings.secret_key, CHAIN, utcnow() - dt.timedelta(days=30)) == 4  # three entries and their checkpoint
        with store.read_sessions() as db:
            verdict = audit.verify(db, settings.secret_key, CHAIN)
            left = db.scalar(select(func.count()).select_from(AuditEntry).where(AuditEntry.chain == CHAIN))
        assert verdict.ok, verdict.to_dict()
        assert left == 6  # 2 + 1 recent entries, their 2 checkpoints, and the signed audit.pruned anchor
        with psycopg.connect(_pg(hardened["app_url"]), autocommit=True) as conn:
            assert conn.execute("SELECT count(*) FROM audit_prunes").fetchone() == (0,)
    finally:
        store.dispose()


def test_the_doctor_warns_until_the_database_is_hardened_and_undo_gives_it_back(roles_and_database, tmp_path):
    settings = _settings(tmp_path, roles_and_database["app_url"])
    store = Store(settings)
    try:
        ctx = doctor.Context(store, settings, None, utcnow())  # type: ignore[arg-type]
        [before] = doctor.check_audit_owner(ctx)
        assert before.status == "warn" and "owns audit_entries" in before.detail and "db harden" in before.fix
        assert cli_main(["db", "harden", "--admin-url", roles_and_database["admin_url"],
                         "--app-role", roles_and_database["app"], "--owner-role", roles_and_database["owner"]]) == 0
        [after] = doctor.check_audit_owner(ctx)
        assert after.status == "pass" and roles_and_database["owner"] in after.detail, after
        assert cli_main(["db", "harden", "--undo", "--admin-url", roles_and_database["admin_url"],
                         "--app-role", roles_and_database["app"], "--owner-role", roles_and_database["owner"]]) == 0
        [undone] = doctor.check_audit_owner(ctx)  # e.g. before `gentbox restore`, which drops every table
        assert undone.status == "warn" and "owns audit_entries" in undone.detail, undone
        with psycopg.connect(_pg(roles_and_database["app_url"])) as conn:
            conn.execute("DROP TABLE audit_entries, audit_heads, audit_prunes")
            conn.rollback()
    finally:
        store.dispose()


def test_the_harden_statements_for_a_superuser(capsys):
    assert cli_main(["db", "harden", "--sql", "--app-role", "gentbox"]) == 0
    out = capsys.readouterr().out
    assert "ALTER TABLE audit_entries OWNER TO \"gentbox_audit\";" in out
    assert "GRANT UPDATE (pii) ON audit_entries TO \"gentbox\";" in out
    assert "GRANT EXECUTE ON FUNCTION audit_prune(text, bigint) TO \"gentbox\";" in out
    assert cli_main(["db", "harden", "--sql", "--app-role", "gentbox; DROP TABLE x"]) == 1  # refused, not quoted


def test_sqlite_has_nothing_to_harden(tmp_path):
    settings = _settings(tmp_path, f"sqlite:///{tmp_path / 'solo.db'}")
    store = Store(settings)
    try:
        migrate(store.engine)
        assert doctor.check_audit_owner(doctor.Context(store, settings, None, utcnow())) == []  # type: ignore[arg-type]
    finally:
        store.dispose()
