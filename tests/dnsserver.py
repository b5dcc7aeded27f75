"""A real authoritative DNS server on loopback (Debian's dnsmasq), restarted with new records.

Tests publish records the way an owner would at their DNS provider, then call the API.
"""
from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype


def _free_port() -> int:
    """A port free for both UDP and TCP right now (dnsmasq cannot inherit a socket)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
        return port
    raise RuntimeError("no free port for the test DNS server")


def _split(value: str) -> list[str]:
    """TXT character-strings are at most 255 bytes: long values go out as several strings."""
    return [value[i:i + 255] for i in range(0, len(value), 255)] or [""]


class DnsServer:
    def __init__(self, workdir: Path, zones: tuple[str, ...] = ()) -> None:
        self.binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        if not Path(self.binary).exists():
            raise RuntimeError("dnsmasq is not installed: make test installs it (scripts/test-services.sh)")
        self.workdir = workdir
        self.zones = set(zones)
        self.records: list[tuple[str, str, object]] = []
        self.proc: subprocess.Popen | None = None
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    # --- records --------------------------------------------------------------------------
    def publish(self, name: str, rtype: str, value: str | list[str], *, restart: bool = True) -> None:
        self.zones.add(name.rstrip(".").split(".")[-1])
        self.records.append((name.rstrip(".").lower(), rtype.upper(), value))
        if restart:
            self.restart()

    def remove(self, name: str, rtype: str | None = None, *, restart: bool = True) -> None:
        name = name.rstrip(".").lower()
        self.records = [r for r in self.records if not (r[0] == name and (rtype is None or r[1] == rtype.upper()))]
        if restart:
            self.restart()

    def publish_domain_records(self, domain: str, records: list[dict], *, skip: tuple[str, ...] = ()) -> None:
        """Publish the records of an API domain object, as an owner would."""
        for record in records:
            if record["purpose"] in skip:
                continue
            fqdn = domain if record["host"] == "@" else f"{record['host']}.{domain}"
            self.publish(fqdn, record["type"], record["value"], restart=False)
        self.restart()

    def _config(self) -> str:
        lines = [f"port={self.port}", "listen-address=127.0.0.1", "bind-interfaces", "no-resolv", "no-hosts"]
        for zone in sorted(self.zones):
            lines.append(f"local=/{zone}/")
        for name, rtype, value in self.records:
            if rtype == "TXT":
                parts = value if isinstance(value, list) else _split(value)
                quoted = ",".join('"' + p.replace('"', '\\"') + '"' for p in parts)
                lines.append(f"txt-record={name},{quoted}")
            elif rtype == "MX":
                pref, host = str(value).split(None, 1)
                lines.append(f"mx-host={name},{host.rstrip('.')},{pref}")
            elif rtype in ("A", "AAAA"):  # the address's family makes it an A or an AAAA record
                lines.append(f"host-record={name},{value}")
            elif rtype == "CNAME":
                lines.append(f"cname={name},{value}")
            else:
                raise ValueError(f"unsupported record type {rtype}")
        return "\n".join(lines) + "\n"

    # --- process --------------------------------------------------------------------------
    def _spawn(self) -> bool:
        conf = self.workdir / "dnsmasq.conf"
        conf.write_text(self._config())
        self.proc = subprocess.Popen(
            [self.binary, "--keep-in-foreground", f"--conf-file={conf}", f"--user={getpass.getuser()}",
             f"--pid-file={self.workdir / 'dnsmasq.pid'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if self._wait_ready():
            return True
        self.stop()
        return False

    def start(self) -> "DnsServer":
        for _ in range(5):
            self.port = _free_port()
            if self._spawn():
                return self
        raise RuntimeError("dnsmasq did not start")

    def _wait_ready(self, timeout: float = 5.0) -> bool:
        deadline = time.monotonic() + timeout
        query = dns.message.make_query("ready.invalid.", dns.rdatatype.A)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                dns.query.udp(query, "127.0.0.1", port=self.port, timeout=0.2)
                return True
            except Exception:  # noqa: BLE001 - not up yet
                time.sleep(0.05)
        return False

    def restart(self) -> None:
        """Apply the records (dnsmasq reads TXT and MX records only at start), on the same port."""
        self.stop()
        for _ in range(20):
            if self._spawn():
                return
            time.sleep(0.1)
        raise RuntimeError("dnsmasq did not restart on its port")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
