"""Issue 26.4: a second node started as the README says (`gentbox init --if-needed`, then run) with
the first node's database URL and secret key joins the initialised store instead of failing."""
from __future__ import annotations

import secrets
import stat
from pathlib import Path

from sqlalchemy import func, select

from appliance.config import load_settings
from appliance.db import Store
from appliance.models import User
from tests.integration.test_cli import base_env, gentbox
from tests.world import World


def operators(env: dict[str, str]) -> int:
    store = Store(load_settings(env))
    try:
        with store.read_sessions() as db:
            return db.scalar(select(func.count()).select_from(User).where(User.is_operator.is_(True)))
    finally:
        store.dispose()


def test_a_second_node_joins_an_initialised_database(database_url: str, tmp_path: Path) -> None:
    first = base_env(tmp_path / "a", database_url=database_url)
    made = gentbox("init", "--if-needed", cwd=tmp_path, env=first)
    assert made.returncode == 0 and made.stdout.startswith("Initialised "), made.stderr

    # Without the first node's key it says what to do, and writes nothing.
    second = base_env(tmp_path / "b", database_url=database_url)
    refused = gentbox("init", "--if-needed", cwd=tmp_path, env=second)
    assert refused.returncode == 1, (refused.stdout, refused.stderr)
    assert "initialised already" in refused.stderr and "GENTBOX_SECRET_KEY_FILE" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "b" / "gentbox.toml").exists()

    second["GENTBOX_SECRET_KEY_FILE"] = str(tmp_path / "a" / "secret_key")
    joined = gentbox("init", "--if-needed", cwd=tmp_path, env=second)
    assert joined.returncode == 0, (joined.stdout, joined.stderr)
    assert joined.stdout.startswith("Joined the initialised database as another node: "), joined.stdout
    assert "Admin login" not in joined.stdout  # no second operator, no password shown
    config = tmp_path / "b" / "gentbox.toml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert (tmp_path / "b" / "secret_key").read_text() == (tmp_path / "a" / "secret_key").read_text()
    assert (tmp_path / "b" / "tls" / "cert.pem").exists()  # its own STARTTLS pair
    assert operators(first) == 1
    # The node runs from its own config alone (database URL and key included), and again later.
    alone = base_env(tmp_path / "b")
    assert gentbox("waitlist", "list", cwd=tmp_path, env=alone).returncode == 0
    assert gentbox("init", "--if-needed", cwd=tmp_path, env=alone).returncode == 0
    assert load_settings(alone).secret_key == load_settings(first).secret_key


def test_a_node_with_another_secret_key_is_refused(database_url: str, tmp_path: Path) -> None:
    first = base_env(tmp_path / "a", database_url=database_url)
    assert gentbox("init", "--if-needed", cwd=tmp_path, env=first).returncode == 0
    settings = load_settings(first)
    store = Store(settings)
    try:  # a domain with a DKIM key: sealed with the first node's key
        world = World(store, settings)
        world.sender(world.owner())
    finally:
        store.dispose()
    wrong = tmp_path / "wrong_key"
    wrong.write_text(secrets.token_urlsafe(48))
    second = base_env(tmp_path / "b", database_url=database_url, secret_key_file=str(wrong))
    refused = gentbox("init", "--if-needed", cwd=tmp_path, env=second)
    assert refused.returncode == 1, (refused.stdout, refused.stderr)
    assert "not its first node's" in refused.stderr and "DKIM private keys" in refused.stderr
    assert not (tmp_path / "b" / "gentbox.toml").exists()
    second["GENTBOX_SECRET_KEY_FILE"] = str(tmp_path / "a" / "secret_key")
    assert gentbox("init", "--if-needed", cwd=tmp_path, env=second).returncode == 0
