"""Fixture factories shared by every test: a fresh store per test on SQLite and on PostgreSQL."""
from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

import pytest
from sqlalchemy import text

from appliance import clock, security
from appliance.config import Settings
from appliance.db import MIGRATIONS_DIR, Store, current_revision, make_engine, migrate
from appliance.models import Base
from appliance.services import register_handlers
from tests.dnsserver import DnsServer
from tests.world import World
from tests.postgres import create_database, drop_database

BACKENDS = ("sqlite", "postgres")


def _fast_settings(**overrides) -> dict:
    base = dict(secret_key=secrets.token_urlsafe(48), rate_limit_token=100_000, rate_limit_ip=100_000,
                rate_limit_waitlist=100_000, hostname="mail.gentbox.test",
                # Never ask the machine's resolver: a dead loopback port answers nothing, fast.
                dns_servers="127.0.0.1:9", dns_timeout=0.5,
                # The test MX hosts live on loopback, which production refuses (outbound SSRF).
                deliver_to_private=True)
    base.update(overrides)
    return base


@pytest.fixture(scope="session", autouse=True)
def _cheap_password_hashing():
    """argon2id at its minimum cost: the suite hashes hundreds of passwords; servers started as
    subprocesses (README flow, CLI tests) keep the production cost."""
    security.set_password_cost(time_cost=1, memory_cost_kib=8)
    yield


@pytest.fixture(scope="session", autouse=True)
def _handlers_registered():
    """What each process does at start: the test process calls services directly too."""
    register_handlers()


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    url = os.environ.get("GENTBOX_TEST_POSTGRES_URL")
    if not url:
        raise RuntimeError("GENTBOX_TEST_POSTGRES_URL is not set: run the suite with `make test`, "
                           "which starts PostgreSQL (scripts/test-services.sh)")
    return url


@pytest.fixture(scope="session")
def postgres_url(postgres_admin_url: str, worker_id: str):
    """One migrated database per test run and xdist worker; tests truncate it before they start."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", str(os.getpid()))[:10]
    name = f"gentbox_t_{run}_{worker_id}".lower()
    yield create_database(postgres_admin_url, name)
    drop_database(postgres_admin_url, name)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "gentbox.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()  # the last connection to close checkpoints the WAL into the file
    assert not path.with_name("gentbox.db-wal").exists()
    return path


_heads: list[str] = []


def _head_revision() -> str:
    """The newest migration's revision (read once per test process)."""
    if not _heads:
        from alembic.config import Config
        from alembic.script import ScriptDirectory
        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        _heads.append(ScriptDirectory.from_config(cfg).get_current_head())
    return _heads[0]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        shutil.copy(template, tmp_path / "gentbox.db")
        return f"sqlite:///{tmp_path / 'gentbox.db'}"
    url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    # A migration round-trip test that failed between its downgrade and its upgrade leaves this
    # worker's shared database behind: bring it back to head rather than fail every later test.
    if current_revision(engine) != _head_revision():
        migrate(engine)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def make_settings(database_url: str, tmp_path: Path):
    """Settings for this test's store; keyword arguments override single values."""
    def factory(**overrides) -> Settings:
        return Settings(**_fast_settings(data_dir=tmp_path, database_url=database_url, **overrides))
    return factory


@pytest.fixture
def settings(make_settings) -> Settings:
    return make_settings()


@pytest.fixture
def make_store():
    stores: list[Store] = []

    def factory(settings: Settings) -> Store:
        store = Store(settings)
        stores.append(store)
        return store
    yield factory
    for store in stores:
        store.dispose()


@pytest.fixture
def store(make_store, settings: Settings) -> Store:
    return make_store(settings)


@pytest.fixture
def make_app(make_store):
    from api.app import create_app

    def factory(settings: Settings):
        return create_app(settings, make_store(settings))
    return factory


@pytest.fixture
def app(store: Store, settings: Settings):
    from api.app import create_app
    return create_app(settings, store)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def world(store: Store, settings: Settings) -> World:
    return World(store, settings)


@pytest.fixture
def world_for(make_store, make_settings):
    """A World on the store of a client made by make_app (for tests with their own settings)."""
    def factory(client) -> World:
        store = client.application.extensions["gentbox"]
        return World(store, store.settings)
    return factory


@pytest.fixture
def dns_server(tmp_path: Path):
    """A real DNS server (dnsmasq) on loopback; publish records, then point settings at it."""
    server = DnsServer(tmp_path, zones=("test", "example")).start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _reset_clock():
    yield
    clock.reset()
