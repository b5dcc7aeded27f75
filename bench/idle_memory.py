"""The whole appliance's memory when idle: `gentbox run` on the SQLite default, every process's PSS.

PSS (proportional set size) charges each shared page to its sharers in equal parts, so the sum over
the process tree is what the appliance really takes from the machine (RSS would count the pages a
forked worker shares with its master twice). Usage:

    .venv/bin/python bench/idle_memory.py [--settle 20] [--mail 0] [--mcp]

starts `gentbox init` and `gentbox run` in a temporary data directory on free ports, waits until
every port answers and `--settle` seconds more, optionally sends `--mail` messages through the
listener (to see how the figure grows after work), `--mcp` connects to the MCP port once (its
process starts on the first connection), then prints each process's PSS and the total.
"""
from __future__ import annotations

import argparse
import os
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pss(proc: psutil.Process, field: str = "Pss") -> int:
    """PSS (or Pss_Anon, Pss_File) in bytes. Anonymous pages are shared only within the process
    tree (forks), so their sum does not move with what other programs on the machine map; the
    file-backed part (libpython, the extension modules) is split with every process mapping them."""
    try:
        text = Path(f"/proc/{proc.pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return 0


def _private(proc: psutil.Process) -> int:
    """Private_Dirty: the pages only this process wrote (its own heap, or shared ones it copied)."""
    try:
        text = Path(f"/proc/{proc.pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    return sum(int(line.split()[1]) * 1024 for line in text.splitlines() if line.startswith("Private_Dirty:"))


def _label(proc: psutil.Process, ports: dict[str, int]) -> str:
    """What the process serves, from the ports it listens on (forked children share one command line)."""
    names = {port: name for name, port in ports.items()}
    try:
        listening = sorted({names.get(c.laddr.port, str(c.laddr.port)) for c in proc.net_connections("inet")
                            if c.status == psutil.CONN_LISTEN})
        threads = proc.num_threads()
    except psutil.Error:
        return "?"
    return f"{'+'.join(listening) or '-'} ({threads} threads)"


def _wait_port(port: int, deadline: float) -> None:
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"port {port} never answered")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--settle", type=float, default=20.0)
    parser.add_argument("--mail", type=int, default=0)
    parser.add_argument("--mcp", action="store_true", help="use the MCP port once (its process starts on demand)")
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="gentbox-idle-"))
    ports = {name: _free_port() for name in ("HTTP", "SMTP", "SUBMISSION", "SUBMISSIONS", "IMAP", "IMAPS", "MCP")}
    env = {**os.environ, "GENTBOX_DATA_DIR": str(data), "GENTBOX_BIND": "127.0.0.1",
           **{f"GENTBOX_{name}_PORT": str(port) for name, port in ports.items()}}
    exe = [sys.executable, "-m", "appliance.cli"]
    subprocess.run([*exe, "init", "--if-needed"], env=env, cwd=ROOT, check=True, capture_output=True)
    run = subprocess.Popen([*exe, "run"], env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        for name in ("HTTP", "SMTP", "IMAP"):
            _wait_port(ports[name], deadline)
        if args.mcp:  # one request answered (401 without a token): the MCP process has started
            try:
                urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{ports['MCP']}/mcp", data=b"{}"),
                                       timeout=120)
            except urllib.error.HTTPError:
                pass
        if args.mail:
            with smtplib.SMTP("127.0.0.1", ports["SMTP"]) as smtp:
                for i in range(args.mail):
                    try:
                        smtp.sendmail("bench@example.net", ["nobody@localhost"], f"Subject: {i}\r\n\r\nhello\r\n")
                    except smtplib.SMTPException:
                        pass  # refused recipients still exercise the listener
        time.sleep(args.settle)  # a benchmark, not a test: let start-up garbage settle
        if os.environ.get("IDLE_MEMORY_PAUSE"):
            print("supervisor pid", run.pid, flush=True)
            time.sleep(float(os.environ["IDLE_MEMORY_PAUSE"]))
        root = psutil.Process(run.pid)
        procs = [root, *root.children(recursive=True)]
        total = anon = 0
        for proc in procs:
            pss = _pss(proc)
            total += pss
            anon += _pss(proc, "Pss_Anon")
            print(f"{proc.pid:>8} {pss / 2**20:8.1f} MiB PSS {_private(proc) / 2**20:6.1f} MiB private  "
                  f"{_label(proc, ports)}")
        print(f"{len(procs)} processes, {total / 2**20:.1f} MiB PSS in all, {anon / 2**20:.1f} MiB of it anonymous "
              f"(cores: {os.cpu_count()}, load: {os.getloadavg()[0]:.1f})")
    finally:
        os.killpg(run.pid, signal.SIGTERM)
        run.wait(timeout=30)


if __name__ == "__main__":
    main()
