"""The inbound SMTP listener: aiosmtpd's SMTP protocol, tightened, served on one host and port.

What this adds to aiosmtpd 1.4.6:
- Command lines must end in CRLF and hold no other CR or LF; one that does not is answered
  500 and the connection is closed (aiosmtpd splits commands at a bare LF). DATA already ends
  only at CRLF.CRLF in aiosmtpd. A bare LF in the content is taken as a line end and stored as
  CRLF (`smtp_bare_newline = normal`, Postfix 3.9's default), or refused (`strict`); the
  handler refuses content with a bare CR (550) either way.
- Every 2xx/4xx/5xx reply carries an enhanced status code (ENHANCEDSTATUSCODES, RFC 2034).
- Source routes (`<@relay:user@host>`) are refused as relaying; aiosmtpd silently drops them.
- Per-IP limits on concurrent connections (this process; an IPv6 client counts by its /64) and
  new connections per minute (the store, so they hold across processes), and a cap on all
  connections at once (this process): 421 over any.
- Authentication (DNS) in a thread pool of its own, beside the one for admission, RCPT lookups
  and parsing, so a sender's slow DNS never holds up other clients' RCPT (smtp.handler).
- A data timeout for the whole of DATA besides the command timeout, and 421 before a
  timed-out connection is closed.
- Several processes on one port (`smtp_processes`): each child has its own socket on the port
  (SO_REUSEPORT, so the kernel spreads new connections over them), its own event loop and store
  threads. The parent binds, forks, and stores every child's messages with its one committer
  (smtp.committer.CommitterService); a child dies with it.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import ipaddress
import logging
import os
import re
import signal
import socket
import sys
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any, AnyStr, Callable

from aiosmtpd.smtp import SMTP
from sqlalchemy.orm import configure_mappers

from appliance.config import Settings
from appliance.db import Store
from appliance.threads import LoopThread
from appliance.errors import RateLimitedError
from appliance.heartbeat import start_heartbeat
from appliance.services import ratelimit
from smtp.committer import CommitterService
from smtp.handler import Authenticator, InboundEnvelope, InboundHandler
from smtp.tls import server_context

log = logging.getLogger("gentbox.smtp")

DATA_CHUNK = 256 * 1024  # bytes of DATA taken from the stream at a time
LINGER_SECONDS = 5.0  # how long a closing connection's further input is drained
SHUTDOWN_GRACE = 20.0  # seconds a stopping listener waits for messages being stored
CALL_LIMITS = {"*": 1_000_000, "NOOP": 100, "HELP": 20, "VRFY": 20, "EXPN": 20, "EHLO": 20,
               "HELO": 20, "STARTTLS": 3, "AUTH": 5}

_ENHANCED = re.compile(r"[245]\.\d{1,3}\.\d{1,3}(\s|$)")
_REPLY = re.compile(r"([245]\d\d)([ -])(.*)", re.S)
_DEFAULT_ENHANCED = {
    220: "2.0.0", 221: "2.0.0", 250: "2.0.0", 252: "2.5.0",
    421: "4.3.0", 450: "4.2.0", 451: "4.3.0", 452: "4.3.1", 454: "4.7.0",
    500: "5.5.2", 501: "5.5.4", 502: "5.5.1", 503: "5.5.1", 504: "5.5.4", 530: "5.7.0",
    538: "5.7.11", 550: "5.0.0", 552: "5.3.4", 553: "5.1.3", 554: "5.0.0", 555: "5.5.4",
}
_SOURCE_ROUTE = re.compile(r"\s*TO:\s*<\s*@", re.I)


def with_enhanced_code(reply: str) -> str:
    """reply with an RFC 3463 enhanced status code after the basic one, if it has none."""
    match = _REPLY.fullmatch(reply)
    if match is None or _ENHANCED.match(match.group(3)):
        return reply
    code = int(match.group(1))
    return f"{code}{match.group(2)}{_DEFAULT_ENHANCED.get(code, f'{reply[0]}.0.0')} {match.group(3)}"


class BareLineEndingError(Exception):
    """A command line ended in a bare LF, or held a CR or LF before its CRLF."""


class _StrictLineReader(asyncio.StreamReader):
    closed_for_input = False  # set when the session has said its last word

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        if self.closed_for_input:  # lines still buffered are never read: wait for the close
            await asyncio.get_running_loop().create_future()
        line = await super().readuntil(separator)
        # aiosmtpd reads commands with the default separator, b"\n"; DATA uses b"\r\n".
        if separator == b"\n" and (not line.endswith(b"\r\n") or b"\r" in line[:-2]):
            raise BareLineEndingError()
        return line


    async def read_data(self, size_limit: int | None, line_limit: int, *,
                        normalize: bool = False) -> tuple[bytes | None, str]:
        """The content of DATA, through the line holding a lone dot, with dot-stuffing undone: what
        aiosmtpd's smtp_DATA reads line by line, read a buffer at a time. Returns (content, ""),
        or (None, reply) when it was read but is refused, with aiosmtpd's reply: more than
        size_limit bytes (552), or a line longer than line_limit bytes with its CRLF (500).
        normalize: every bare LF ends a line, as a CRLF would (normalize_bare_lf), before the
        limits are counted and dot-stuffing is undone; only CRLF.CRLF still ends DATA."""
        data = bytearray(b"\r\n")  # a line start before the first line, so one search finds the end
        keep = size_limit + line_limit + 4 if size_limit else 0  # more decides nothing: it is refused
        head = b""  # data[:keep] once more than that arrived; data then keeps only the last bytes
        scanned = 0  # data[:scanned] holds no end marker
        while True:
            chunk = await self.read(DATA_CHUNK)
            if not chunk:
                raise asyncio.IncompleteReadError(bytes(head or data), None)
            data += chunk
            end = data.find(b"\r\n.\r\n", max(scanned - 4, 0))
            if end != -1:
                self._buffer[:0] = data[end + 5:]  # a pipelined command after the end stays unread
                del data[end + 2:]
                break
            if keep and len(data) > keep:
                head = head or bytes(data[:keep])
                del data[:-4]  # an end marker may start in these
            scanned = len(data)
        if normalize and head:
            head = normalize_bare_lf(head)  # refused anyway: the head tells the reply
        elif normalize:
            data = normalize_bare_lf(data)
        refusal = _data_refusal(head or data, size_limit, line_limit, complete=not head)
        if refusal:
            return None, refusal
        return bytes(data).replace(b"\r\n.", b"\r\n")[2:], ""


def normalize_bare_lf(data: bytes | bytearray) -> bytes | bytearray:
    """DATA as read (after the leading CRLF, dot-stuffed) as Postfix 3.9 takes it with
    smtpd_forbid_bare_newline = normalize: a bare LF ends a line as CRLF does and becomes CRLF, and
    a line holding a lone dot that ends in a bare LF, or follows a line that does, is dropped (it
    never ends DATA, and is not stored). Anything else is kept, a bare CR included."""
    if data.count(b"\n") == data.count(b"\r\n"):
        return data  # no bare LF: nothing to do (C-level counts, as in has_bare_line_ending)
    *lines, rest = bytes(data).split(b"\n")
    out, previous_bare = [], False
    for line in lines:
        bare = not line.endswith(b"\r")
        text = line if bare else line[:-1]
        if not (text == b"." and (bare or previous_bare)):
            out.append(text)
        previous_bare = bare
    return b"".join(text + b"\r\n" for text in out) + rest


def _data_refusal(data: bytes | bytearray, size_limit: int | None, line_limit: int, *, complete: bool) -> str:
    """aiosmtpd's verdict on DATA content (after the leading CRLF that data starts with): its first
    reason to refuse, in the order it reads the lines, or "" to accept."""
    lines = data.split(b"\r\n")[1:]  # the last is what follows the last CRLF: nothing, when complete
    if complete and (not size_limit or len(data) - 2 <= size_limit) and max(map(len, lines)) + 2 <= line_limit:
        return ""
    total = 0
    for line in lines[:-1]:
        if len(line) > line_limit:  # aiosmtpd's reader overruns on it before counting it
            return "500 Line too long (see RFC5321 4.5.3.1.6)"
        total += len(line) + 2
        if size_limit and total > size_limit:
            return "552 Error: Too much mail data"
        if len(line) + 2 > line_limit:
            return "500 Line too long (see RFC5321 4.5.3.1.6)"
    # Only when data was cut short (complete=False) is there a line after the last CRLF.
    return "500 Line too long (see RFC5321 4.5.3.1.6)" if len(lines[-1]) > line_limit else ""


class _StrictReaderProtocol(asyncio.StreamReaderProtocol):
    """Sits between aiosmtpd's SMTP and StreamReaderProtocol in the MRO, so the reader SMTP
    builds in its __init__ is swapped for one that refuses bare line endings in commands."""

    def __init__(self, stream_reader: asyncio.StreamReader, client_connected_cb: Any = None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        strict = _StrictLineReader(limit=SMTP.line_length_limit, loop=loop)
        super().__init__(strict, client_connected_cb, loop)


class _Drain(asyncio.Protocol):
    """Takes over a connection after its last reply: the client's further input is read and
    dropped until it closes, or for `linger` seconds. Closing at once with unread input would
    make the kernel answer with a reset, which can destroy the reply before the client reads it."""

    def __init__(self, session: "GentSMTP", transport: asyncio.Transport, linger: float) -> None:
        self._session = session
        self._timer = session.loop.call_later(linger, transport.close)

    def data_received(self, data: bytes) -> None:
        pass

    def eof_received(self) -> bool:
        return False  # the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        self._timer.cancel()
        self._session.connection_lost(exc)


TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections; try again later"
TOO_MANY_FROM_YOU = "421 4.7.0 Too many connections from your address; try again later"


def client_key(ip: str) -> str:
    """What a client's connections count against: its IPv4 address (an IPv4-mapped IPv6 address
    is the IPv4 one), or its IPv6 /64, which one host or customer usually gets whole."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return ip  # not an IP peer (a UNIX socket): its own group
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


class ConnectionLimits:
    """Admission: connections at once in this process, from each client (IPv4 address or IPv6
    /64) and from all; and new connections per minute per client counted in the store (so that
    limit holds across processes and restarts)."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.max_open = settings.smtp_max_connections_per_ip
        self.max_total = settings.smtp_max_connections
        self.rate = settings.smtp_connection_rate_per_ip
        self.open: collections.Counter[str] = collections.Counter()  # used on the loop thread only
        self.total = 0

    def enter(self, ip: str) -> str:
        """Count a new connection from ip: "" when admitted (leave() it later), else the refusal."""
        key = client_key(ip)
        if self.total >= self.max_total:
            return TOO_MANY_CONNECTIONS
        if self.open[key] >= self.max_open:
            return TOO_MANY_FROM_YOU
        self.open[key] += 1
        self.total += 1
        return ""

    def leave(self, ip: str) -> None:
        key = client_key(ip)
        self.total -= 1
        self.open[key] -= 1
        if self.open[key] <= 0:
            del self.open[key]

    def over_rate(self, ip: str) -> bool:
        """Count one connection; True when the IP is over its rate. Runs in a worker thread."""
        try:
            with self.store.counter_sessions() as counters:
                ratelimit.hit(counters, f"smtp:conn:{client_key(ip)}", self.rate, 60)
                counters.commit()
        except RateLimitedError:
            return True
        except Exception:  # noqa: BLE001 - the counters are a guard; mail still flows without them
            log.warning("smtp: connection rate counter unavailable; admitting %s", ip, exc_info=True)
        return False


class GentSMTP(SMTP, _StrictReaderProtocol):
    """One SMTP session of the inbound listener."""

    def __init__(self, handler: InboundHandler, *, limits: ConnectionLimits, data_timeout: float,
                 executor: ThreadPoolExecutor, **kwargs: Any) -> None:
        # aiosmtpd keeps these limits in a class attribute, which every session clears and
        # grows on EHLO; give each session its own.
        self.command_size_limits = collections.defaultdict(lambda: SMTP.command_size_limit)
        super().__init__(handler, **kwargs)
        self._limits = limits
        self._data_timeout = data_timeout
        self._executor = executor
        self._greeted = False
        self._lingering = False
        self._plain_replies = False  # HELO/EHLO answers carry no enhanced code (RFC 2034)
        self._close_after_reply = False

    def _create_envelope(self) -> InboundEnvelope:
        return InboundEnvelope()

    async def push(self, status: AnyStr) -> None:
        if self._lingering:
            return  # the connection is closing: nothing more is said
        if not self._greeted:
            self._greeted = True  # the first reply is the greeting, which carries no enhanced code
        elif isinstance(status, str) and not self._plain_replies:
            status = with_enhanced_code(status)
        await super().push(status)
        if self._close_after_reply:
            self._close_gracefully()

    def _close_gracefully(self) -> None:
        """Stop reading commands; send FIN after what was written; drain, then close."""
        transport = self.transport
        if self._lingering or transport is None:
            return
        self._lingering = True
        self._reader.closed_for_input = True
        if not isinstance(transport, asyncio.Transport) or not transport.can_write_eof():
            transport.close()  # TLS: close_notify, then close
            return
        transport.set_protocol(_Drain(self, transport, LINGER_SECONDS))
        if not transport.is_reading():
            transport.resume_reading()
        transport.write_eof()

    async def _handle_client(self) -> None:
        ip = self.session.peer[0] if isinstance(self.session.peer, tuple) else ""
        refusal = self._limits.enter(ip)
        if refusal:
            await self._refuse(refusal)
            return
        try:
            over = await self.loop.run_in_executor(self._executor, self._limits.over_rate, ip)
            if over:
                await self._refuse("421 4.7.0 Too many connections from your address recently; "
                                   "try again later")
                return
            await super()._handle_client()
        finally:
            self._limits.leave(ip)

    async def _refuse(self, reply: str) -> None:
        self._close_after_reply = True
        await self.push(reply)

    async def smtp_HELO(self, hostname: str) -> None:
        await self._plain(super().smtp_HELO(hostname))

    async def smtp_EHLO(self, hostname: str) -> None:
        await self._plain(super().smtp_EHLO(hostname))

    async def _plain(self, call: Any) -> None:
        self._plain_replies = True
        try:
            await call
        finally:
            self._plain_replies = False

    async def smtp_RCPT(self, arg: str | None) -> None:
        if arg and _SOURCE_ROUTE.match(arg):
            await self.push("554 5.7.1 Source routes are not accepted: relay access denied")
            return
        await super().smtp_RCPT(arg)

    async def smtp_DATA(self, arg: str) -> None:
        self._reset_timeout(self._data_timeout)
        try:
            await self._data(arg)
        finally:
            self._reset_timeout()

    async def _data(self, arg: str) -> None:
        """aiosmtpd's smtp_DATA (same checks and replies), reading the content a buffer at a time
        instead of a line at a time: a 100 KiB message is some 1,300 lines."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            content, refusal = await self._reader.read_data(
                self.data_size_limit, self.line_length_limit,
                normalize=self.event_handler.settings.smtp_bare_newline == "normal")
        except asyncio.CancelledError:  # the connection was lost during DATA
            self._writer.close()
            raise
        if content is None:
            await self.push(refusal)
            self._set_post_data_state()
            return
        self.envelope.content = self.envelope.original_content = content  # decode_data=False
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, BareLineEndingError):
            self._close_after_reply = True
            return "500 5.5.2 Bare CR or LF in a command line; closing the connection"
        return await super().handle_exception(error)

    def say_goodbye(self) -> None:
        """The listener is stopping: tell the client (421, RFC 5321 3.8) and close."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if not self._lingering:
            transport.write(f"421 4.3.2 {self.hostname} Service shutting down\r\n".encode())
        transport.close()

    def _timeout_cb(self) -> None:
        if self._lingering:
            return
        if self.transport is None or self.transport.is_closing():
            super()._timeout_cb()
            return
        self.transport.write(f"421 4.4.2 {self.hostname} Timeout; closing the connection\r\n".encode())
        self._close_gracefully()


class Listener(LoopThread):
    """The inbound listener on host:port (port 0 picks a free one; `address` tells which)."""

    def __init__(self, store: Store, settings: Settings, *, host: str | None = None, port: int | None = None,
                 authenticate: Authenticator | None = None) -> None:
        self.store = store
        self.settings = settings
        self.host = settings.bind if host is None else host
        self.port = settings.smtp_port if port is None else port
        self.loop: asyncio.AbstractEventLoop | None = None  # made by the thread that serves
        # Admission, RCPT lookups and parsing; authentication (DNS) has a pool of its own.
        self.executor = ThreadPoolExecutor(settings.smtp_store_threads, thread_name_prefix="smtp-store")
        self.auth_executor = ThreadPoolExecutor(settings.smtp_auth_threads, thread_name_prefix="smtp-auth")
        self.handler = InboundHandler(store, settings, self.executor, authenticate=authenticate,
                                      auth_executor=self.auth_executor)
        self.limits = ConnectionLimits(store, settings)
        self.tls_context = server_context(settings)
        self.address: tuple[str, int] | None = None
        self._servers: list[asyncio.AbstractServer] = []
        self._sessions: weakref.WeakSet[GentSMTP] = weakref.WeakSet()
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._commit_socket: socket.socket | None = None  # a child's line to its parent's committer

    def _session(self) -> GentSMTP:
        session = GentSMTP(
            self.handler, limits=self.limits, data_timeout=self.settings.smtp_data_timeout,
            executor=self.executor, hostname=self.settings.hostname, ident="ESMTP Gentbox",
            data_size_limit=self.settings.max_message_bytes, enable_SMTPUTF8=True, decode_data=False,
            tls_context=self.tls_context, timeout=self.settings.smtp_command_timeout,
            auth_exclude_mechanism=["LOGIN", "PLAIN"], command_call_limit=CALL_LIMITS, loop=self.loop)
        self._sessions.add(session)
        return session

    async def _serve(self, ready: Callable[[tuple[str, int] | BaseException], None],
                     sockets: list[socket.socket] | None) -> None:
        self._stopping = asyncio.Event()
        try:
            if sockets is None:
                self._servers = [await self.loop.create_server(self._session, self.host, self.port,
                                                               reuse_address=True)]
            else:  # bound by the parent process: one server per address
                self._servers = [await self.loop.create_server(self._session, sock=sock) for sock in sockets]
        except OSError as exc:
            ready(exc)
            return
        host, port = self._servers[0].sockets[0].getsockname()[:2]
        self.address = (host, port)
        ready(self.address)
        await self._stopping.wait()
        for server in self._servers:
            server.close()
        # Messages being stored get their answer (a 250 for a commit is never swallowed by us).
        deadline = self.loop.time() + SHUTDOWN_GRACE
        while self.handler.storing and self.loop.time() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0)  # let the replies of finished stores be written
        for session in list(self._sessions):
            session.say_goodbye()
        tasks = [t for t in asyncio.all_tasks(self.loop) if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()

    def _run(self, ready: Callable[[tuple[str, int] | BaseException], None],
             sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.handler.start(self._commit_socket)
        heartbeat = start_heartbeat(self.store, "smtp")  # per process: a forked child beats as itself
        try:
            self.loop.run_until_complete(self._serve(ready, sockets))
        finally:
            heartbeat.stop()
            # Let store calls still in flight finish (a commit is never cut short by us).
            self.auth_executor.shutdown(wait=True, cancel_futures=True)  # each ends by its deadline
            self.executor.shutdown(wait=True)
            self.handler.stop()
            self.loop.run_until_complete(asyncio.sleep(0))
            self.loop.close()

    def serve_forever(self, on_ready: Callable[[tuple[str, int]], None] = lambda _a: None) -> None:
        """Serve until SIGTERM or SIGINT: in this thread, or in `smtp_processes` child processes.
        Raises OSError when it cannot bind."""
        if self.settings.smtp_processes > 1:
            self._serve_in_children(self.settings.smtp_processes, on_ready)
            return
        self._serve_here(on_ready)

    def _serve_here(self, on_ready: Callable[[tuple[str, int]], None],
                    sockets: list[socket.socket] | None = None) -> None:
        failure: list[BaseException] = []

        def ready(result: tuple[str, int] | BaseException) -> None:
            if isinstance(result, BaseException):
                failure.append(result)
                return
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.loop.add_signal_handler(sig, self._stopping.set)
            # A forked child has had them blocked so far: one sent meanwhile is handled now.
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM, signal.SIGINT})
            on_ready(result)

        self._run(ready, sockets)
        if failure:
            raise failure[0]

    def _serve_in_children(self, count: int, on_ready: Callable[[tuple[str, int]], None]) -> None:
        """Bind count sockets to the port, fork a child to serve each, and wait for them. SIGTERM or
        SIGINT is passed on; a child that exits on its own stops them all (exit status 1)."""
        per_child = _bind_shared(self.host, self.port, count)
        self.address = per_child[0][0].getsockname()[:2]
        configure_mappers()  # once, here, not in each child on its first message
        self.store.dispose()  # no database connection crosses the fork
        lines = [socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM) for _ in per_child]  # (parent, child)
        children: set[int] = set()
        stopping = False

        def stop(*_args: object) -> None:
            nonlocal stopping
            stopping = True
            for pid in children:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)

        parent = os.getpid()
        signals = {signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)  # none may arrive between fork and setup
        try:
            for index, sockets in enumerate(per_child):
                pid = os.fork()
                if pid == 0:
                    self._commit_socket = lines[index][1]
                    self._child(parent, sockets, [s for other in per_child if other is not sockets for s in other]
                                + [s for n, pair in enumerate(lines) for s in pair if n != index] + [lines[index][0]])
                children.add(pid)
            for sig in signals:
                signal.signal(sig, stop)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)
            for sockets in per_child:
                for sock in sockets:
                    sock.close()
            for _parent_end, child_end in lines:
                child_end.close()
        # This process stores for all of them (see smtp.committer.CommitterService).
        service = CommitterService(self.store, [parent_end for parent_end, _child_end in lines])
        on_ready(self.address)
        failed = False
        try:
            while children:
                try:
                    pid, status = os.wait()
                except ChildProcessError:
                    break
                children.discard(pid)
                if not stopping:
                    log.error("smtp: listener process %d exited (%s); stopping the others", pid,
                              os.waitstatus_to_exitcode(status))
                    failed = True
                    stop()
                elif os.waitstatus_to_exitcode(status) != 0:
                    failed = True
        finally:
            service.close()  # every child has exited: what they handed over is stored
        if failed:
            raise SystemExit(1)

    def _child(self, parent: int, sockets: list[socket.socket], others: list[socket.socket]) -> None:
        """In a forked child: serve on sockets until SIGTERM; never returns."""
        code = 1
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                signal.signal(sig, signal.SIG_DFL)
            _die_with_parent(parent)
            for sock in others:
                sock.close()
            self._serve_here(lambda _address: None, sockets)
            code = 0
        except BaseException:  # noqa: BLE001 - reported, and the parent stops the others
            log.exception("smtp: listener process %d failed", os.getpid())
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def start(self) -> tuple[str, int]:
        """Serve in a background thread; returns the (host, port) it listens on."""
        return self._start_thread("smtp-listener", "the SMTP listener")


def _bind_shared(host: str, port: int, count: int) -> list[list[socket.socket]]:
    """For each of count processes, a listening socket on every address of host, all on one port
    (port 0: the one the first socket gets). SO_REUSEPORT lets them share it; the kernel spreads
    new connections over the processes. Raises OSError (closing what it bound) when one cannot bind."""
    addresses = list(dict.fromkeys(
        (family, address) for family, _type, _proto, _name, address
        in socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)))
    bound: list[list[socket.socket]] = []
    try:
        for _ in range(count):
            sockets: list[socket.socket] = []
            bound.append(sockets)
            for family, address in addresses:
                sock = socket.socket(family, socket.SOCK_STREAM)
                sockets.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind((address[0], port, *address[2:]))
                port = port or sock.getsockname()[1]
                sock.listen(100)
                sock.setblocking(False)
    except OSError:
        for sock in (s for sockets in bound for s in sockets):
            sock.close()
        raise
    return bound


def _die_with_parent(parent: int) -> None:
    """Have the kernel kill this process when its parent dies (Linux), so a killed listener never
    leaves children serving on its port."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # it died before that took effect
        os._exit(1)
