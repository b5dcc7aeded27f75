"""Real remote peers for the outbound-delivery tests: the far side of the worker.

- `RemoteReceiver`: an aiosmtpd capture MTA in its own thread and event loop, on a loopback
  address (Linux routes all of 127/8 to lo), told at run time how to answer: 250, 4xx or 5xx at
  RCPT or DATA, drop the connection, or stall. Optional STARTTLS, implicit TLS and AUTH.
- `RemoteWorld` (fixture `remote_world`): receivers on 127.0.0.x sharing one port (MX records
  carry no port: the worker dials `settings.delivery_port`), and the MX/A records of "remote"
  domains published in the test dnsmasq, including null MX, A-only, and SERVFAIL/timeout.
- `SmtpSink`: Postfix's own smtp-sink, capturing each transaction to a file.
- `independent_dkim_check`: Mail::DKIM (Perl), not the dkimpy we sign with, against the test DNS.

Test modules import the fixture they use:
    from tests.integration.remote_mail import remote_world  # noqa: F401
"""
from __future__ import annotations

import asyncio
import collections
import email
import email.message
import email.policy
import enum
import functools
import getpass
import ipaddress
import json
import logging
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.rcode
import pytest
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from smtp.tls import write_self_signed
from tests.dnsserver import DnsServer

log = logging.getLogger(__name__)

DKIM_VERIFY = Path(__file__).with_name("dkim_verify.pl")
REPLIES = {
    "tempfail": "451 4.3.0 Temporary failure, try again later (test receiver)",
    "permfail_rcpt": "550 5.1.1 No such user here (test receiver)",
    "permfail_data": "550 5.7.1 Message refused (test receiver)",
}


class Behaviour(enum.Enum):
    """How a receiver answers. Per recipient, DROP_CONNECT and STALL act at that RCPT."""
    ACCEPT = "accept"
    TEMPFAIL_RCPT = "tempfail_rcpt"  # 451 4.3.0 to RCPT
    PERMFAIL_RCPT = "permfail_rcpt"  # 550 5.1.1 to RCPT
    TEMPFAIL_DATA = "tempfail_data"  # 451 4.3.0 after the message
    PERMFAIL_DATA = "permfail_data"  # 550 5.7.1 after the message
    DROP_CONNECT = "drop_connect"  # close without a greeting
    DROP_DATA = "drop_data"  # read the message, then close without a reply
    STALL = "stall"  # accept the connection, never say a word (until stopped)
    STALL_DATA = "stall_data"  # read the message, never answer it

    @property
    def stage(self) -> str:
        return {"TEMPFAIL_RCPT": "RCPT", "PERMFAIL_RCPT": "RCPT", "DROP_CONNECT": "CONNECT",
                "STALL": "CONNECT", "ACCEPT": "ANY"}.get(self.name, "DATA")

    @property
    def reply(self) -> str | None:
        return {"TEMPFAIL_RCPT": REPLIES["tempfail"], "TEMPFAIL_DATA": REPLIES["tempfail"],
                "PERMFAIL_RCPT": REPLIES["permfail_rcpt"],
                "PERMFAIL_DATA": REPLIES["permfail_data"]}.get(self.name)


@dataclass(frozen=True)
class Delivery:
    """One transaction the receiver accepted (250 to the final dot)."""
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes  # exactly as received, dot-unstuffed, CRLF line ends
    tls: bool
    tls_version: str | None
    auth_user: str | None
    ehlo: str | None
    mail_options: tuple[str, ...]
    peer: tuple[str, int]

    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)


@dataclass(frozen=True)
class Refusal:
    """A refused, dropped or stalled step: stage CONNECT, RCPT or DATA."""
    stage: str
    behaviour: Behaviour
    reply: str | None  # None when the receiver dropped or stalled
    mail_from: str | None = None
    rcpt_tos: tuple[str, ...] = ()


@dataclass
class _Rule:
    behaviour: Behaviour
    reply: str | None
    remaining: int | None  # None: until changed


def _tls_context(tls_files: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*tls_files)
    return context


class _Session(SMTP):
    """aiosmtpd's SMTP protocol, reporting connections and commands to its receiver and
    acting out the connect-time behaviours."""

    def __init__(self, receiver: "RemoteReceiver", **kwargs) -> None:
        super().__init__(_Handler(receiver), **kwargs)
        self.receiver = receiver
        self._smtp_methods = {name: self._counted(name, method) for name, method in self._smtp_methods.items()}

    def _counted(self, name: str, method):  # noqa: ANN001, ANN202
        @functools.wraps(method)
        async def counted(arg):  # noqa: ANN001, ANN202
            self.receiver._count(name)
            await method(arg)
        return counted

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._original_transport is None and self.transport is None:  # not the STARTTLS upgrade
            self.receiver._opened(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self.receiver._closed(self)
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        rule = self.receiver._take("CONNECT", None)
        if rule is not None:
            self.receiver._refused(Refusal("CONNECT", rule.behaviour, None))
            await self.act_silently(rule.behaviour)
        await super()._handle_client()

    async def act_silently(self, behaviour: Behaviour) -> None:
        """Drop or stall: either way no reply, and this coroutine ends only by cancellation."""
        if behaviour in (Behaviour.DROP_CONNECT, Behaviour.DROP_DATA) and self.transport is not None:
            self.transport.close()
        await asyncio.get_running_loop().create_future()  # cancelled on connection_lost or stop()

    @property
    def tls_version(self) -> str | None:
        ssl_object = self.transport.get_extra_info("ssl_object") if self.transport else None
        return ssl_object.version() if ssl_object is not None else None


class _Handler:
    """The aiosmtpd hooks. No attribute may start with auth_ or handle_ unless it is one."""

    def __init__(self, receiver: "RemoteReceiver") -> None:
        self.receiver = receiver

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: ANN001, ANN201
        session.host_name = hostname
        if self.receiver.credentials is None:
            responses = [r for r in responses if not r[4:].startswith("AUTH")]
        return responses

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # noqa: ANN001, ANN201
        if self.receiver.credentials is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001, ANN201
        rule = self.receiver._take("RCPT", address)
        if rule is not None:
            self.receiver._refused(Refusal("RCPT", rule.behaviour, rule.reply, envelope.mail_from, (address,)))
            if rule.reply is None:
                await server.act_silently(rule.behaviour)
            return rule.reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201
        rule = self.receiver._take("DATA", tuple(envelope.rcpt_tos))
        if rule is not None:
            self.receiver._refused(Refusal("DATA", rule.behaviour, rule.reply, envelope.mail_from,
                                           tuple(envelope.rcpt_tos)))
            if rule.reply is None:
                await server.act_silently(rule.behaviour)
            return rule.reply
        login = session.auth_data.login if isinstance(session.auth_data, LoginPassword) else None
        self.receiver._delivered(Delivery(
            mail_from=envelope.mail_from, rcpt_tos=tuple(envelope.rcpt_tos), data=envelope.original_content,
            tls=server.tls_version is not None, tls_version=server.tls_version,
            auth_user=login.decode("utf-8", "replace") if login is not None else None, ehlo=session.host_name,
            mail_options=tuple(envelope.mail_options), peer=tuple(session.peer[:2])))
        return "250 2.0.0 OK: queued"

    async def handle_exception(self, error: Exception) -> str:
        log.exception("test receiver error")
        return "451 4.3.0 Test receiver error"


class RemoteReceiver:
    """An aiosmtpd capture MTA on host:port (port 0: picked, read back in .port)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, hostname: str = "mx.remote.test",
                 starttls: bool = False, implicit_tls: bool = False,
                 credentials: dict[str, str] | None = None,
                 tls_files: tuple[Path, Path] | None = None) -> None:
        if starttls and implicit_tls:
            raise ValueError("a receiver offers STARTTLS or implicit TLS, not both")
        self.host, self.port, self.hostname = host, port, hostname
        self.starttls, self.implicit_tls = starttls, implicit_tls
        self.credentials = dict(credentials) if credentials is not None else None
        self._tls_files = tls_files
        self._tmpdir: tempfile.TemporaryDirectory | None = None
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._default: _Rule | None = None
        self._per_recipient: dict[str, _Rule] = {}
        self._deliveries: list[Delivery] = []
        self._refusals: list[Refusal] = []
        self._commands: collections.Counter[str] = collections.Counter()
        self._connections = 0
        self._sessions: set[_Session] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._starttls: ssl.SSLContext | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def __repr__(self) -> str:
        return f"<RemoteReceiver {self.host}:{self.port}>"

    # --- behaviour ----------------------------------------------------------------------------
    def set_behaviour(self, behaviour: Behaviour | str, *, recipient: str | None = None,
                      reply: str | None = None, times: int | None = None) -> None:
        """Answer this way from now on (for `times` connections/RCPTs/DATAs, then accept again),
        for every transaction or only for one recipient address; `reply` replaces the 4xx/5xx."""
        behaviour = Behaviour(behaviour)
        rule = None if behaviour is Behaviour.ACCEPT else _Rule(behaviour, reply or behaviour.reply, times)
        with self._lock:
            if recipient is None:
                self._default = rule
            elif rule is None:
                self._per_recipient.pop(recipient.lower(), None)
            else:
                self._per_recipient[recipient.lower()] = rule

    def reset_behaviour(self) -> None:
        """Accept everything again (for every recipient)."""
        with self._lock:
            self._default, self._per_recipient = None, {}

    def _take(self, stage: str, recipients: str | tuple[str, ...] | None) -> _Rule | None:
        """The rule acting at this stage now (spending one of its `times`), or None to accept.
        recipients: the address at RCPT, the transaction's recipients at DATA."""
        with self._lock:
            rule = None
            if isinstance(recipients, str):  # RCPT: connect-time rules for one recipient act here
                rule = self._per_recipient.get(recipients.lower())
                rule = rule if rule is not None and rule.behaviour.stage in ("RCPT", "CONNECT") else None
            elif recipients:  # DATA: the first recipient with a DATA rule decides
                rules = (self._per_recipient.get(r.lower()) for r in recipients)
                rule = next((r for r in rules if r is not None and r.behaviour.stage == "DATA"), None)
            if rule is None and self._default is not None and self._default.behaviour.stage == stage:
                rule = self._default
            if rule is not None and rule.remaining is not None:
                rule.remaining -= 1
                if rule.remaining <= 0:  # spent: forget it wherever it is
                    self._default = None if self._default is rule else self._default
                    self._per_recipient = {k: v for k, v in self._per_recipient.items() if v is not rule}
            return rule

    # --- records ------------------------------------------------------------------------------
    @property
    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    @property
    def refusals(self) -> list[Refusal]:
        with self._lock:
            return list(self._refusals)

    @property
    def connections(self) -> int:
        with self._lock:
            return self._connections

    @property
    def commands(self) -> collections.Counter[str]:
        """How many times each command (EHLO, MAIL, RCPT, DATA, STARTTLS, AUTH, QUIT...) came in."""
        with self._lock:
            return collections.Counter(self._commands)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._sessions)

    def clear(self) -> None:
        """Forget the deliveries, refusals and counters so far (not the behaviour)."""
        with self._lock:
            self._deliveries, self._refusals = [], []
            self._commands, self._connections = collections.Counter(), 0

    def wait_for(self, n: int = 1, timeout: float = 10.0) -> list[Delivery]:
        """At least n accepted transactions, waiting up to timeout seconds; AssertionError if not."""
        return self._wait(lambda: self._deliveries if len(self._deliveries) >= n else None, timeout,
                          f"{n} deliveries")

    def wait_for_connections(self, n: int = 1, timeout: float = 10.0) -> int:
        """Wait until at least n connections have been made in all; returns the count."""
        return self._wait(lambda: self._connections if self._connections >= n else None, timeout,
                          f"{n} connections")

    def _wait(self, ready, timeout: float, what: str):  # noqa: ANN001, ANN202
        with self._changed:
            if not self._changed.wait_for(lambda: ready() is not None, timeout):
                raise AssertionError(f"{self!r}: no {what} within {timeout}s (deliveries "
                                     f"{len(self._deliveries)}, connections {self._connections}, "
                                     f"refusals {self._refusals})")
            value = ready()
            return list(value) if isinstance(value, list) else value

    def _count(self, command: str) -> None:
        with self._lock:
            self._commands[command] += 1

    def _opened(self, session: _Session) -> None:
        with self._changed:
            self._connections += 1
            self._sessions.add(session)
            self._changed.notify_all()

    def _closed(self, session: _Session) -> None:
        with self._lock:
            self._sessions.discard(session)

    def _refused(self, refusal: Refusal) -> None:
        with self._changed:
            self._refusals.append(refusal)
            self._changed.notify_all()

    def _delivered(self, delivery: Delivery) -> None:
        with self._changed:
            self._deliveries.append(delivery)
            self._changed.notify_all()

    # --- process ------------------------------------------------------------------------------
    def _session(self) -> _Session:
        return _Session(self, hostname=self.hostname, tls_context=self._starttls, enable_SMTPUTF8=True,
                        timeout=3600,  # a stall lasts until stop(), not aiosmtpd's idle timeout
                        # aiosmtpd cannot see implicit TLS; plain AUTH is allowed when no TLS is offered
                        auth_require_tls=self.starttls, authenticator=self._authenticate,
                        loop=self._loop)

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:  # noqa: ANN001
        ok = (self.credentials is not None and isinstance(auth_data, LoginPassword)
              and self.credentials.get(auth_data.login.decode("utf-8", "replace"))
              == auth_data.password.decode("utf-8", "replace"))
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    def _ensure_tls_files(self) -> tuple[Path, Path]:
        if self._tls_files is None:
            self._tmpdir = tempfile.TemporaryDirectory(prefix="receiver-tls-")
            folder = Path(self._tmpdir.name)
            write_self_signed(folder / "cert.pem", folder / "key.pem", self.hostname)
            self._tls_files = (folder / "cert.pem", folder / "key.pem")
        return self._tls_files

    def start(self) -> "RemoteReceiver":
        """Bind and serve in a background thread; OSError when host:port cannot be bound.
        After stop(), start() serves again on the same port (a host that comes back)."""
        server_ssl = _tls_context(self._ensure_tls_files()) if self.implicit_tls else None
        self._starttls = _tls_context(self._ensure_tls_files()) if self.starttls else None
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = self._loop
            asyncio.set_event_loop(loop)
            try:
                self._stop = asyncio.Event()
                server = loop.run_until_complete(
                    loop.create_server(self._session, self.host, self.port, ssl=server_ssl))
                self.port = server.sockets[0].getsockname()[1]
            except BaseException as exc:  # noqa: BLE001 - handed to start()
                failure.append(exc)
                loop.close()
                started.set()
                return
            started.set()
            try:
                loop.run_until_complete(self._stop.wait())
                loop.run_until_complete(self._shutdown(server))
            finally:
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name=f"receiver-{self.host}", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError(f"{self!r} did not start within 10s")
        if failure:
            self._thread.join()
            self._thread = None
            self._cleanup_tls()
            raise failure[0]
        return self

    async def _shutdown(self, server: asyncio.base_events.Server) -> None:
        server.close()
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            if session.transport is not None:
                session.transport.abort()
        await server.wait_closed()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        """Stop serving and close every connection, stalled ones included. Idempotent."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            thread.join(10)
            if thread.is_alive():
                raise RuntimeError(f"{self!r} did not stop")
        self._cleanup_tls()

    def _cleanup_tls(self) -> None:
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir, self._tls_files = None, None

    def __enter__(self) -> "RemoteReceiver":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- Postfix smtp-sink ----------------------------------------------------------------------------
def _smtp_sink_binary() -> str:
    for candidate in (shutil.which("smtp-sink"), "/usr/sbin/smtp-sink", "/usr/lib/postfix/sbin/smtp-sink"):
        if candidate and Path(candidate).exists():
            return candidate
    raise RuntimeError("smtp-sink is not installed: make test installs postfix (scripts/test-services.sh)")


def _listening_port(pid: int, host: str) -> int | None:
    """The TCP port process pid listens on at host (IPv4), from /proc; None if not (yet)."""
    try:
        inodes = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        table = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return None
    want = socket.inet_aton(host)[::-1].hex().upper()  # /proc/net/tcp: little-endian hex
    for row in table:
        cols = row.split()
        local, state, inode = cols[1], cols[3], cols[9]
        address, port = local.split(":")
        if state == "0A" and address == want and f"socket:[{inode}]" in inodes:
            return int(port, 16)
    return None


@dataclass(frozen=True)
class SinkMessage:
    """One transaction captured by smtp-sink (its dump file: LF line ends)."""
    path: Path
    mail_from: str
    rcpt_tos: tuple[str, ...]
    helo: str | None
    data: bytes  # the message as smtp-sink wrote it: dot-unstuffed, LF line ends

    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)


def _parse_dump(path: Path) -> SinkMessage:
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    fields: dict[str, list[str]] = collections.defaultdict(list)
    i = 0
    while not lines[i].startswith(b"Received:"):
        name, _, value = lines[i].decode().partition(": ")
        fields[name].append(value)
        i += 1
    i += 1
    while lines[i].startswith(b"\t"):  # Received: continuation lines
        i += 1
    body = b"\n".join(lines[i:])
    body = body[:-1] if body.endswith(b"\n\n") else body  # smtp-sink appends one empty line
    strip = lambda value: value.split()[0].strip("<>") if value.split() else ""  # noqa: E731
    return SinkMessage(path, strip(fields["X-Mail-Args"][0]), tuple(strip(v) for v in fields["X-Rcpt-Args"]),
                       (fields.get("X-Helo-Args") or [None])[0], body)


class SmtpSink:
    """Postfix's smtp-sink on host:port (port 0: picked and read back from /proc), dumping each
    transaction to a file in dump_dir (`dump=False` for pure speed: then nothing is counted)."""

    def __init__(self, host: str, port: int, dump_dir: Path, *, hostname: str = "sink.remote.test",
                 dump: bool = True, extra_args: tuple[str, ...] = ()) -> None:
        self.host, self.port, self.dump_dir, self.hostname = host, port, Path(dump_dir), hostname
        self.dump, self.extra_args = dump, tuple(extra_args)
        self.proc: subprocess.Popen | None = None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def __repr__(self) -> str:
        return f"<SmtpSink {self.host}:{self.port}>"

    def start(self, timeout: float = 5.0) -> "SmtpSink":
        """Start and wait until it listens; OSError when host:port cannot be bound."""
        self.dump_dir.mkdir(parents=True, exist_ok=True)
        args = [_smtp_sink_binary(), "-h", self.hostname, "-t", "60", *self.extra_args]
        if os.geteuid() == 0:  # smtp-sink insists on a user to run as when started by root
            args += ["-u", getpass.getuser()]
        if self.dump:
            args += ["-d", str(self.dump_dir).replace("%", "%%") + "/msg."]
        args += [f"inet:{self.host}:{self.port}", "256"]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                error = self.proc.stderr.read().decode(errors="replace").strip()
                self.proc.stderr.close()
                self.proc = None
                raise OSError(f"smtp-sink on {self.host}:{self.port} exited: {error}")
            port = _listening_port(self.proc.pid, self.host)
            if port:
                self.port = port
                return self
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"smtp-sink on {self.host}:{self.port} did not listen within {timeout}s")

    def messages(self) -> list[SinkMessage]:
        """The completed transactions (dump files smtp-sink no longer holds open), oldest first."""
        files = sorted(self.dump_dir.glob("msg.*"), key=lambda p: (p.stat().st_mtime_ns, p.name))
        open_now = set()
        if self.proc is not None:
            try:
                fd_dir = f"/proc/{self.proc.pid}/fd"
                open_now = {os.readlink(f"{fd_dir}/{fd}") for fd in os.listdir(fd_dir)}
            except OSError:
                pass
        return [_parse_dump(p) for p in files if str(p) not in open_now]

    def count(self) -> int:
        return len(self.messages())

    def wait_for(self, n: int = 1, timeout: float = 10.0) -> list[SinkMessage]:
        """At least n completed transactions within timeout seconds; AssertionError if not."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages()
            if len(found) >= n:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"{self!r}: {len(found)} messages, not {n}, within {timeout}s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            self.proc.stderr.close()
            self.proc = None

    def __enter__(self) -> "SmtpSink":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


Target = RemoteReceiver | SmtpSink | str  # an MX or A target: a peer, an IPv4 address, a host name


# --- DNS that fails -------------------------------------------------------------------------------
class _BrokenUpstream:
    """Two UDP "name servers" dnsmasq can forward a zone to: one answers every query SERVFAIL,
    the other never answers (a timeout). Both bound by us, so no other process can answer."""

    def __init__(self) -> None:
        self.servfail = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for sock in (self.servfail, self.silent):
            sock.bind(("127.0.0.1", 0))
        self.servfail.settimeout(0.1)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dns-servfail", daemon=True)
        self._thread.start()

    def port(self, mode: str) -> int:
        return {"servfail": self.servfail, "timeout": self.silent}[mode].getsockname()[1]

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                data, peer = self.servfail.recvfrom(4096)
            except (TimeoutError, socket.timeout):
                continue
            except OSError:
                return
            try:
                reply = dns.message.make_response(dns.message.from_wire(data))
            except Exception:  # noqa: BLE001 - not a query: ignore it
                continue
            reply.set_rcode(dns.rcode.SERVFAIL)
            self.servfail.sendto(reply.to_wire(), peer)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self.servfail.close()
        self.silent.close()


def _extra_config(dns_server: DnsServer) -> list[str]:
    """Raw dnsmasq lines appended to this server's configuration at every restart.

    DnsServer writes only TXT/MX/A/CNAME records; forwarding a zone (`server=/zone/addr#port`)
    needs a line of its own. The hook is on this one instance, for this one test.
    """
    lines = getattr(dns_server, "_remote_mail_lines", None)
    if lines is None:
        lines = []
        base = dns_server._config
        dns_server._config = lambda: base() + "".join(f"{line}\n" for line in lines)
        dns_server._remote_mail_lines = lines
    return lines


@dataclass(frozen=True)
class _Reserved:
    host: str
    port: int


# --- the world ------------------------------------------------------------------------------------
class RemoteWorld:
    """Remote MX hosts on 127.0.0.x, all on one port, and their domains in the test DNS."""

    FIRST_HOST = 2  # 127.0.0.1 is ours (listener, dnsmasq)

    def __init__(self, dns_server: DnsServer, workdir: Path) -> None:
        self.dns = dns_server
        self.workdir = Path(workdir)
        self.port = 0
        self.receivers: list[RemoteReceiver] = []
        self.sinks: list[SmtpSink] = []
        self._taken: set[str] = set()
        self._reserved: list[socket.socket] = []
        self._records: dict[str, list[tuple[str, str, str]]] = {}  # by domain
        self._published: set[tuple[str, str, str]] = set()  # as DnsServer holds them
        self._broken: dict[str, str] = {}
        self._upstream: _BrokenUpstream | None = None
        self._tls_files: tuple[Path, Path] | None = None

    @property
    def dns_address(self) -> str:
        """For Settings.dns_servers."""
        return self.dns.address

    @property
    def dns_port(self) -> int:
        return self.dns.port

    def start(self, receivers: int = 2) -> "RemoteWorld":
        for _ in range(receivers):
            self.add_receiver()
        return self

    # --- peers --------------------------------------------------------------------------------
    def _hosts(self):  # noqa: ANN202
        for last in range(self.FIRST_HOST, 255):
            host = f"127.0.0.{last}"
            if host not in self._taken:
                yield host

    def _bind_shared(self, start):  # noqa: ANN001, ANN202
        """Start a peer on the next 127.0.0.x where the shared port is free: the first peer picks
        the port (port 0), each later one skips addresses where another process holds it."""
        last_error: OSError | None = None
        for host in self._hosts():
            try:
                peer = start(host, self.port)
            except OSError as exc:
                last_error = exc
                continue
            self._taken.add(host)
            self.port = self.port or peer.port
            return peer
        raise RuntimeError(f"no 127.0.0.x address free on port {self.port}: {last_error}")

    def tls_files(self) -> tuple[Path, Path]:
        """One self-signed certificate (mx.remote.test) for all TLS receivers of this world."""
        if self._tls_files is None:
            cert, key = self.workdir / "remote-tls" / "cert.pem", self.workdir / "remote-tls" / "key.pem"
            write_self_signed(cert, key, "mx.remote.test")
            self._tls_files = (cert, key)
        return self._tls_files

    def add_receiver(self, *, shared_port: bool = True, **options) -> RemoteReceiver:
        """A new RemoteReceiver on the next 127.0.0.x, on the world's port (or its own port with
        shared_port=False, e.g. a smarthost). Options: starttls, implicit_tls, credentials."""
        if options.get("starttls") or options.get("implicit_tls"):
            options.setdefault("tls_files", self.tls_files())

        def start(host: str, port: int) -> RemoteReceiver:
            receiver = RemoteReceiver(host, port, **options).start()
            self.receivers.append(receiver)
            return receiver
        if shared_port:
            return self._bind_shared(start)
        host = next(self._hosts())
        self._taken.add(host)
        return start(host, 0)

    def add_sink(self, **options) -> SmtpSink:
        """Postfix's smtp-sink on the next 127.0.0.x and the world's port."""
        def start(host: str, port: int) -> SmtpSink:
            sink = SmtpSink(host, port, self.workdir / f"sink-{host}", **options).start()
            self.sinks.append(sink)
            return sink
        return self._bind_shared(start)

    def dead_host(self) -> str:
        """An address where the world's port refuses connections (bound by us, not listening)."""
        def start(host: str, port: int) -> _Reserved:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                raise
            self._reserved.append(sock)
            return _Reserved(host, sock.getsockname()[1])
        return self._bind_shared(start).host

    # --- DNS ----------------------------------------------------------------------------------
    def domain(self, name: str, *, mx: list[tuple[int, Target]] = (), a: Target | None = None) -> list[str]:
        """Publish name's MX records (preference, target); a target is a receiver or sink (an A
        record is published for it as mxN.<name>), an IPv4 address (likewise), or a host name
        used as it is. `a` also gives name an A record. Returns the MX host names."""
        name = name.rstrip(".").lower()
        records: list[tuple[str, str, str]] = []
        hosts = []
        for i, (preference, target) in enumerate(mx, start=1):
            address = self._address_of(target)
            host = f"mx{i}.{name}" if address else str(target).rstrip(".").lower()
            if address:
                records.append((host, "A", address))
            records.append((name, "MX", f"{int(preference)} {host}"))
            hosts.append(host)
        if a is not None:
            records.append((name, "A", self._ip(a)))
        self._replace(name, records)
        return hosts

    def null_mx(self, name: str, *, a: Target | None = None) -> None:
        """RFC 7505: `name MX 0 .` ("accepts no mail"); with `a`, an A record too, which a
        conforming sender must ignore."""
        name = name.rstrip(".").lower()
        # DnsServer writes `mx-host=name,,0`; dnsmasq serves an empty target as the root: MX 0 .
        records = [(name, "MX", "0 .")]
        if a is not None:
            records.append((name, "A", self._ip(a)))
        self._replace(name, records)

    def a_only(self, name: str, target: Target) -> None:
        """No MX, only an A record: RFC 5321's implicit MX (the A fallback)."""
        name = name.rstrip(".").lower()
        self._replace(name, [(name, "A", self._ip(target))])

    def remove(self, name: str) -> None:
        """Unpublish what this world published for name (NXDOMAIN, unless the test published
        something else there)."""
        self._replace(name.rstrip(".").lower(), [])

    def break_dns(self, name: str, mode: str = "servfail") -> None:
        """Queries at or under name fail: "servfail" (an immediate SERVFAIL answer) or "timeout"
        (no answer at all). The world's records for name are withheld until fix_dns(name); records
        the test published itself under name are still answered (dnsmasq's local data wins)."""
        if mode not in ("servfail", "timeout"):
            raise ValueError("mode is servfail or timeout")
        name = name.rstrip(".").lower()
        if self._upstream is None:
            self._upstream = _BrokenUpstream()
        self._broken[name] = mode
        self._apply()

    def fix_dns(self, name: str) -> None:
        """Undo break_dns: the name's records (if any) are served again."""
        self._broken.pop(name.rstrip(".").lower(), None)
        self._apply()

    def _replace(self, name: str, records: list[tuple[str, str, str]]) -> None:
        self._records[name] = records
        self._apply()

    def _apply(self) -> None:
        """Make dnsmasq serve exactly our current records and breakages (one restart)."""
        # Take back what we published before (not what the test published itself), then publish.
        self.dns.records = [r for r in self.dns.records if r not in self._published]
        self._published = {r for zone, records in self._records.items() if zone not in self._broken
                           for r in records}  # a broken zone's local records would win over forwarding
        for owner, rtype, value in sorted(self._published):
            self.dns.publish(owner, rtype, value, restart=False)
        lines = _extra_config(self.dns)
        lines[:] = [f"server=/{zone}/127.0.0.1#{self._upstream.port(mode)}" for zone, mode in
                    sorted(self._broken.items())]
        self.dns.restart()

    @classmethod
    def _ip(cls, target: Target) -> str:
        address = cls._address_of(target)
        if address is None:
            raise ValueError(f"an A record needs a peer or an IPv4 address, not {target!r}")
        return address

    @staticmethod
    def _address_of(target: Target) -> str | None:
        if isinstance(target, (RemoteReceiver, SmtpSink)):
            return target.host
        try:
            return str(ipaddress.IPv4Address(str(target)))
        except ValueError:
            return None

    # --- teardown -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop every peer this world started (receivers, sinks, reserved ports, broken DNS)."""
        errors = []
        for peer in [*self.receivers, *self.sinks]:
            try:
                peer.stop()
            except Exception as exc:  # noqa: BLE001 - stop the rest, then report
                errors.append(exc)
        for sock in self._reserved:
            sock.close()
        if self._upstream is not None:
            self._upstream.stop()
        if errors:
            raise errors[0]


@pytest.fixture
def remote_world(dns_server: DnsServer, tmp_path: Path):
    """Two aiosmtpd receivers on 127.0.0.x sharing one port (remote_world.port, for
    Settings.delivery_port) and the test DNS server (remote_world.dns_address) to publish
    remote domains in. More peers: add_receiver(), add_sink(), dead_host()."""
    world = RemoteWorld(dns_server, tmp_path / "remote")
    try:
        world.start()
        yield world
    finally:
        world.stop()


# --- independent DKIM verification -------------------------------------------------------------
def independent_dkim_check(raw: bytes, dns_port: int, dns_host: str = "127.0.0.1") -> dict:
    """Verify raw's DKIM signatures with Perl's Mail::DKIM against the test DNS server:
    {"result": "pass"|"fail"|"invalid"|"temperror"|"none", "detail": str,
     "signatures": [{"result", "detail", "d", "s", "h", "a", "c", "i"}, ...]}."""
    perl = shutil.which("perl") or "/usr/bin/perl"
    done = subprocess.run([perl, str(DKIM_VERIFY), str(dns_port), dns_host], input=raw,
                          capture_output=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"dkim_verify.pl failed ({done.returncode}): "
                           f"{done.stderr.decode(errors='replace').strip()} (make test installs "
                           f"libmail-dkim-perl: scripts/test-services.sh)")
    return json.loads(done.stdout)
