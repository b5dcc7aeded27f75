"""The Ansible playbook (ansible/): lint in the production profile, a syntax check, and the
playbook applied for real to a fresh Debian root built with debootstrap, through Ansible's
chroot connection: the services started inside as their units would, HTTPS and SMTP checked,
then a second run that changes nothing.

They run the tools of the test virtualenv (the `ansible` and `ansible-lint` test extras).
"""
from __future__ import annotations

import http.client
import json
import os
import shlex
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import time
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
    (tmp_path / "home").mkdir(exist_ok=True)
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


# --- The playbook applied for real to a debootstrapped Debian root ---------------------------

HOSTNAME = "mail.gentbox.test"
ADMIN = "admin@mail.gentbox.test"
# .debs kept between runs: the second debootstrap downloads nothing.
DEBOOTSTRAP_CACHE = Path("/var/cache/gentbox-tests/debootstrap")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def host_mirror_and_suite() -> tuple[str, str]:
    """The Debian mirror and release this machine uses, so the root is built the same way."""
    mirror = "http://deb.debian.org/debian"
    sources = Path("/etc/apt/sources.list.d/debian.sources")
    if sources.exists():
        for line in sources.read_text().splitlines():
            if line.startswith("URIs:"):
                mirror = line.split()[1]
                break
    release = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines()
                   if "=" in line)
    return mirror, release.get("VERSION_CODENAME", "bookworm").strip('"')


def run(argv: list[str], timeout: float, **kwargs) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kwargs)


class Chroot:
    """A debootstrapped Debian root with /proc and /dev mounted, removed with everything in it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.mounts: list[Path] = []
        self.processes: list[subprocess.Popen] = []

    def build(self) -> None:
        mirror, suite = host_mirror_and_suite()
        DEBOOTSTRAP_CACHE.mkdir(parents=True, exist_ok=True)
        result = run(["debootstrap", "--variant=minbase", "--include=python3",
                      f"--cache-dir={DEBOOTSTRAP_CACHE}", suite, str(self.root), mirror], timeout=900)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        # Package scripts must not start services in the chroot (Debian's policy-rc.d protocol).
        policy = self.root / "usr/sbin/policy-rc.d"
        policy.write_text("#!/bin/sh\nexit 101\n")
        policy.chmod(0o755)
        # The CAs this machine adds for its egress (if any), so pip inside reaches the registry
        # the way the host does; ca-certificates picks them up when the playbook installs it.
        local_cas = self.root / "usr/local/share/ca-certificates"
        local_cas.mkdir(parents=True, exist_ok=True)
        for ca in Path("/usr/local/share/ca-certificates").glob("*.crt"):
            shutil.copy(ca, local_cas / ca.name)
        for source, target, args in (("proc", "proc", ["-t", "proc"]), ("/dev", "dev", ["--bind"]),
                                     ("/dev/pts", "dev/pts", ["--bind"])):
            subprocess.run(["mount", *args, source, str(self.root / target)], check=True)
            self.mounts.append(self.root / target)

    def start(self, argv: list[str], log: Path) -> None:
        with log.open("wb") as out:
            self.processes.append(subprocess.Popen(
                ["chroot", str(self.root), *argv], stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True))

    def start_unit(self, unit: str, log: Path, **overrides: str) -> None:
        """Start a service as its installed unit says: user, working dir, environment, command."""
        directives: dict[str, list[str]] = {}
        for line in (self.root / "etc/systemd/system" / unit).read_text().splitlines():
            if "=" in line and not line.startswith("#"):
                key, value = line.split("=", 1)
                directives.setdefault(key.strip(), []).append(value.strip())
        credentials = Path("/run/credentials") / unit  # what systemd's %d is
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin"}
        for assignment in directives.get("Environment", []):
            key, value = assignment.split("=", 1)
            env[key] = value.replace("%d", str(credentials))
        for loaded in directives.get("LoadCredential", []):  # a private copy, as systemd makes
            name, source = loaded.split(":", 1)
            target = self.root / credentials.relative_to("/") / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(self.root / source.lstrip("/"), target)
            owner = f"{directives['User'][0]}:{directives['Group'][0]}"  # names of the chroot's
            subprocess.run(["chroot", str(self.root), "chown", owner, str(credentials / name)], check=True)
            target.chmod(0o400)
        env.update(overrides)
        exec_start = shlex.split(directives["ExecStart"][0])
        self.start(["runuser", "-u", directives["User"][0], "--", "env", "-i",
                    f"--chdir={directives['WorkingDirectory'][0]}",
                    *(f"{k}={v}" for k, v in env.items()), *exec_start], log)

    def stop(self) -> None:
        for proc in self.processes:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.processes:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.processes.clear()

    def remove(self) -> None:
        self.stop()
        for mount in reversed(self.mounts):
            subprocess.run(["umount", "--lazy", str(mount)], check=False)
        mounted = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
                   if line.split()[1].startswith(str(self.root))]
        # Never delete through a mount (the bind of /dev is the host's /dev).
        assert not mounted, f"still mounted, {self.root} left in place: {mounted}"
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.root)], check=True)


def wait_for_port(port: int, processes: list[subprocess.Popen], logs: list[Path]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        dead = [p.args for p in processes if p.poll() is not None]
        assert not dead, f"exited: {dead}\n" + "\n".join(log.read_text(errors="replace")[-2000:] for log in logs)
        time.sleep(0.2)
    pytest.fail(f"nothing listens on {port}\n" + "\n".join(log.read_text(errors="replace")[-2000:] for log in logs))


def https_request(port: int, cafile: Path, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """An HTTPS request to 127.0.0.1 that verifies the certificate for HOSTNAME (SNI included)."""
    context = ssl.create_default_context(cafile=str(cafile))
    payload = json.dumps(body).encode() if body is not None else b""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw:
        with context.wrap_socket(raw, server_hostname=HOSTNAME) as tls:
            tls.sendall(f"{method} {path} HTTP/1.1\r\nHost: {HOSTNAME}\r\nConnection: close\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
                        .encode() + payload)
            response = http.client.HTTPResponse(tls)
            response.begin()
            return response.status, json.loads(response.read() or b"null")


def playbook(inventory: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return run([tool("ansible-playbook"), "-i", str(inventory), str(ANSIBLE_DIR / "site.yml")],
               timeout=1800, cwd=ANSIBLE_DIR, env=tool_env(tmp_path))


def recap(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    return result.stdout.split("PLAY RECAP", 1)[1]


def test_playbook_applies_to_fresh_debian_and_is_idempotent(tmp_path: Path) -> None:
    # Never skipped: .ci/run installs debootstrap and CI runs as root.
    assert os.geteuid() == 0, "the playbook test builds a Debian root with debootstrap: run it as root"
    assert shutil.which("debootstrap"), "debootstrap is missing: apt-get install debootstrap (.ci/run does)"
    dist = tmp_path / "dist"
    built = run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(REPO)],
                timeout=600)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("gentbox-*.whl")
    https_port, http_port, web_port, smtp_port = (free_port() for _ in range(4))
    chroot = Chroot(Path(tempfile.mkdtemp(prefix="gentbox-ansible-root-", dir="/var/tmp")))
    chroot.root.chmod(0o755)  # it becomes "/": mkdtemp's 0700 would lock the gentbox user out
    inventory = tmp_path / "inventory.ini"
    inventory.write_text(
        "[gentbox]\n"
        f"fresh ansible_connection=community.general.chroot ansible_host={chroot.root} "
        "ansible_python_interpreter=/usr/bin/python3\n"
        "[gentbox:vars]\n"
        f"gentbox_hostname={HOSTNAME}\ngentbox_admin_email={ADMIN}\ngentbox_tls=selfsigned\n"
        f"gentbox_package_src={wheel}\n"
        # No systemd as PID 1 in a chroot: the test starts the services itself.
        "gentbox_manage_services=false\n"
        # The chroot shares this machine's network: free ports rather than 80/443/8080.
        f"gentbox_nginx_http_port={http_port}\ngentbox_nginx_https_port={https_port}\n"
        f"gentbox_http_port={web_port}\n")
    try:
        chroot.build()
        first = recap(playbook(inventory, tmp_path))
        assert "failed=0" in first

        root = chroot.root
        logs = [tmp_path / name for name in ("web.log", "smtp.log", "worker.log", "nginx.log")]
        chroot.start_unit("gentbox-web.service", logs[0])
        # The unit binds 25; the test's free port instead (25 may be taken on this machine).
        chroot.start_unit("gentbox-smtp.service", logs[1], GENTBOX_SMTP_PORT=str(smtp_port),
                         GENTBOX_SUBMISSION_PORT="0", GENTBOX_SUBMISSIONS_PORT="0")
        chroot.start_unit("gentbox-worker.service", logs[2])
        chroot.start(["nginx", "-g", "daemon off; master_process on;"], logs[3])
        for port in (web_port, https_port, smtp_port):
            wait_for_port(port, chroot.processes, logs)

        cafile = root / "etc/gentbox/tls/fullchain.pem"
        status, spec = https_request(https_port, cafile, "GET", "/v1/openapi.json")
        assert status == 200 and spec["openapi"].startswith("3."), (status, spec)
        password = (root / "etc/gentbox/admin_password").read_text().strip()
        status, login = https_request(https_port, cafile, "POST", "/auth/login/",
                                      {"email": ADMIN, "password": password})
        assert status == 200 and login["access_token"], (status, login)

        # The constructor reads the greeting and raises unless it is a 220.
        with smtplib.SMTP("127.0.0.1", smtp_port, local_hostname="client.example", timeout=30) as smtp:
            code, reply = smtp.ehlo()
            assert code == 250 and reply.decode().startswith(HOSTNAME), (code, reply)
            assert smtp.has_extn("starttls")
            context = ssl.create_default_context(cafile=str(cafile))
            context.check_hostname = False  # connected by address; the chain is still verified
            code, _ = smtp.starttls(context=context)
            assert code == 220
            assert smtp.ehlo()[0] == 250
        chroot.stop()

        second = recap(playbook(inventory, tmp_path))
        assert "changed=0" in second and "failed=0" in second, second
    finally:
        chroot.remove()
