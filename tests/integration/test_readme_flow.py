"""The README's access flow, run as written: its ```sh blocks, in order, as one bash script,
against a real `gentbox web` (gunicorn) on a real socket, on SQLite and on PostgreSQL."""
from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import select

from appliance.config import Settings
from appliance.db import Store
from appliance.models import User, WaitlistEntry

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
SECTION = "## The access flow"
# Every step of the flow the README must show; dropping one from the README fails the test.
STEPS = ("POST \"$BASE/v1/waitlist/\"", ".venv/bin/gentbox waitlist approve", "$BASE/v1/waitlist/validate/",
         "$BASE/auth/signup/", "$BASE/auth/login/", "$BASE/v1/users/me/", "$BASE/auth/logout/")


def section_blocks(text: str, heading: str) -> list[str]:
    """The ```sh blocks between heading and the next level-2 heading."""
    start = text.index(heading + "\n")
    end = text.find("\n## ", start + len(heading))
    body = text[start:end if end != -1 else len(text)]
    return re.findall(r"^```sh\n(.*?)^```$", body, flags=re.S | re.M)


def flow_script() -> str:
    blocks = section_blocks(README.read_text(), SECTION)
    assert len(blocks) >= 7, f"expected the seven steps of the access flow, found {len(blocks)} sh blocks"
    script = "\n".join(blocks)
    for step in STEPS:
        assert step in script, f"the README's access flow lost a step: {step}"
    return "set -euo pipefail\n" + script


def clean_environ() -> dict[str, str]:
    """This process's environment without any GENTBOX_* setting that could leak in."""
    return {k: v for k, v in os.environ.items() if not k.startswith("GENTBOX_")}


def wait_until_serving(proc: subprocess.Popen, base: str, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"gentbox web exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(base + "/v1/openapi.json", timeout=2) as resp:
                if resp.status == 200:
                    json.load(resp)
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    pytest.fail(f"gentbox web did not answer within {timeout}s:\n{log.read_text()}")


@pytest.fixture
def web_server(database_url: str, tmp_path: Path):
    """A `gentbox web` subprocess on a socket bound to port 0 here and handed over as fd://N."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    config = tmp_path / "gentbox.toml"
    config.write_text(
        f"database_url = {json.dumps(database_url)}\n"
        f"data_dir = {json.dumps(str(data_dir))}\n"
        f"secret_key = {json.dumps(secrets.token_urlsafe(48))}\n"
        'hostname = "mail.readme.test"\n'
        f"http_port = {port}\n"  # so the sign-up link the CLI prints points at this server
        "web_workers = 2\n")
    env = clean_environ() | {"GENTBOX_CONFIG": str(config)}
    log = tmp_path / "web.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "appliance.cli", "web", "--bind", f"fd://{listener.fileno()}"],
            pass_fds=[listener.fileno()], env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT)
    listener.close()  # the server owns the socket now
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(proc, base, log)
        yield {"base": base, "port": port, "env": env, "config": config, "log": log,
               "settings": Settings(database_url=database_url, data_dir=data_dir,
                                    secret_key="x" * 48, hostname="mail.readme.test")}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_readme_access_flow_runs_against_a_real_server(web_server) -> None:
    script = flow_script()
    env = web_server["env"] | {
        "BASE": web_server["base"],
        "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("EMAIL", None)
    result = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=180)
    out = result.stdout
    context = f"\n--- stdout\n{out}\n--- stderr\n{result.stderr}\n--- server\n{web_server['log'].read_text()}"
    assert result.returncode == 0, "the README's flow failed" + context

    port = web_server["port"]
    assert '{"status":"pending"}' in out, context
    assert re.search(r"^Approved ada@example\.com; the sign-up email is queued \(sml_\w{26}\)\.$", out, re.M), context
    assert re.search(rf"^Sign-up link: http://127\.0\.0\.1:{port}/signup/\?email=ada%40example\.com"
                     r"&signup_token=[\w-]{40,}$", out, re.M), context
    assert '{"email":"ada@example.com"}' in out, context
    assert re.search(r'^\{"user_id":"usr_\w{26}","email":"ada@example\.com"\}$', out, re.M), context
    assert '"token_type":"Bearer"' in out, context
    assert "role: owner" in out, context
    assert "next step: add_domain POST /v1/domains/" in out, context
    assert "logout: 204" in out, context
    assert "after logout: 401" in out, context

    # The server wrote to this test's store: the request was redeemed by a new owner.
    store = Store(web_server["settings"])
    try:
        with store.session() as db:
            entry = db.scalar(select(WaitlistEntry).where(WaitlistEntry.email == "ada@example.com"))
            user = db.scalar(select(User).where(User.email == "ada@example.com"))
            assert entry is not None and entry.status == "redeemed"
            assert user is not None and user.role == "owner" and user.name == "Ada"
    finally:
        store.dispose()


def test_readme_starts_with_the_two_commands() -> None:
    assert README.read_text().startswith("# Gentbox\n\n```sh\nmake run\nmake test\n```\n")


def test_section_blocks_reads_only_the_named_section() -> None:
    text = ("# T\n\n## Other\n\n```sh\necho other\n```\n\n## The access flow\n\n```sh\necho one\n```\n"
            "text\n```python\nprint(1)\n```\n```sh\necho two\n```\n\n## Next\n\n```sh\necho next\n```\n")
    assert section_blocks(text, SECTION) == ["echo one\n", "echo two\n"]
