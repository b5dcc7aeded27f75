"""The Ansible playbook (ansible/): lint in the production profile and a syntax check.

Both run the tools of the test virtualenv (the `ansible` and `ansible-lint` test extras).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ANSIBLE_DIR = REPO / "ansible"
BIN = Path(sys.executable).parent


def tool_env(tmp_path: Path) -> dict[str, str]:
    """The venv's tools first on PATH, caches and temp files in this test's directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "GENTBOX_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(tmp_path / "home")
    env["ANSIBLE_LOCAL_TEMP"] = str(tmp_path / "ansible-tmp")
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env["NO_COLOR"] = "1"
    return env


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} is missing: install the test extras (pip install -e '.[test]')")
    return str(path)


def test_ansible_lint_production_profile(tmp_path: Path) -> None:
    # --offline: nothing to fetch (the collections the role uses come with the ansible package).
    result = subprocess.run(
        [tool("ansible-lint"), "--offline", "--profile", "production", "--nocolor", "ansible/"],
        cwd=REPO, env=tool_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Profile 'production' was required, and it passed" in result.stderr + result.stdout


def test_playbook_syntax_check(tmp_path: Path) -> None:
    result = subprocess.run(
        [tool("ansible-playbook"), "-i", "inventory.example.ini", "--syntax-check", "site.yml"],
        cwd=ANSIBLE_DIR, env=tool_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "playbook: site.yml" in result.stdout
