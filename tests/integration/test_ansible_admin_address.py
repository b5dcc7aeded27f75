"""Issue 14, point 7: the Ansible role ships no guessable default admin address. Its preflight
stops the play with a clear message when gentbox_admin_email is unset, before anything changes.

Only the role's preflight tasks run (against localhost, nothing is installed), with the real
ansible-playbook of the test virtualenv.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from tests.integration.test_ansible import ANSIBLE_DIR, tool, tool_env

PLAY = """\
- name: The gentbox role's preflight only
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Preflight
      ansible.builtin.import_role:
        name: gentbox
        tasks_from: preflight
"""


def preflight(tmp_path: Path, *extra_vars: str) -> subprocess.CompletedProcess:
    (tmp_path / "play.yml").write_text(PLAY)
    env = tool_env(tmp_path) | {"ANSIBLE_ROLES_PATH": str(ANSIBLE_DIR / "roles")}
    args = [tool("ansible-playbook"), "-i", "localhost,", "play.yml", "-e", "gentbox_package_src=gentbox.whl"]
    for item in extra_vars:
        args += ["-e", item]
    return subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_the_role_refuses_to_run_without_an_admin_address(tmp_path: Path) -> None:
    result = preflight(tmp_path, "gentbox_hostname=mail.example.com")
    assert result.returncode != 0, result.stdout
    assert "Set gentbox_admin_email" in result.stdout and "guessable" in result.stdout


def test_the_role_refuses_an_address_that_is_not_one(tmp_path: Path) -> None:
    result = preflight(tmp_path, "gentbox_admin_email=alice")
    assert result.returncode != 0 and "Set gentbox_admin_email" in result.stdout


def test_the_role_goes_on_with_the_operators_own_address(tmp_path: Path) -> None:
    result = preflight(tmp_path, "gentbox_admin_email=alice.jones@example.com")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed=0" in result.stdout
