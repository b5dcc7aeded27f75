"""SMTP submission for people's mail clients (contract section 20; RFC 6409, RFC 8314): port 587
with STARTTLS and port 465 with TLS from the first byte, served by the SMTP process beside the
inbound listener, with the same strict protocol handling (smtp.server.GentSMTP).

- AUTH PLAIN and LOGIN only over TLS (on 587 only after STARTTLS; 538 before), with the inbox's
  address and an app password, the owner's password (no TOTP), or an agent token of that inbox
  (appliance.services.identity.app_passwords). The check runs in a store thread, never on the
  event loop: aiosmtpd calls its authenticator synchronously, so `_authenticate` only defers and
  auth_PLAIN/auth_LOGIN await the real check. Failures are throttled per IP and per account
  (454 when over) and recorded in the audit log.
- Nothing without AUTH (530): no relay for anyone who has not signed in.
- MAIL FROM must be the signed-in inbox's address (550 5.7.1); the From/Sender fields are checked
  at DATA by appliance.services.mail.submission, which sends through the one send path. The 250
  comes only after that transaction (message, queue rows, audit entry) has committed.
"""
from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any, Callable

from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session
from sqlalchemy.exc import OperationalError

from appliance.config import Settings
from appliance.db import Store
from appliance.errors import GentError, RateLimitedError
from appliance.services.governance import audit
from appliance.services.identity import app_passwords
from appliance.services.mail import compose, submission
from appliance.threads import LoopThread
from smtp.server import CALL_LIMITS, ConnectionLimits, GentSMTP
from smtp.tls import server_context

log = logging.getLogger("gentbox.smtp")


@dataclass(frozen=True)
class _Deferred:
    """Credentials aiosmtpd handed to `_authenticate`, checked later off the event loop."""
    login: bytes
    password: bytes


def reply_for(exc: GentError) -> str:
    """The SMTP reply for a service's refusal: temporary for caps and state, permanent otherwise."""
    text = " ".join(exc.message.split())[:300].encode("ascii", "replace").decode()
    if exc.status == 429:
        return f"451 4.7.1 {text}"
    if exc.status == 409:
        return f"451 4.7.0 {text}"
    if exc.status == 413:
        return f"552 5.3.4 {text}"
    if exc.status == 400 and exc.field == "recipients":
        return f"553 5.1.3 {text}"
    if exc.status == 400:
        return f"550 5.6.0 {text}"
    return f"550 5.7.1 {text}"


class SubmissionSMTP(GentSMTP):
    """One submission session: GentSMTP's strictness plus AUTH checked in a store thread."""

    def __init__(self, *args: Any, implicit_tls: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._implicit_tls = implicit_tls

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # aiosmtpd knows TLS only through STARTTLS: on 465 the connection is TLS from the first
        # byte, which must count as TLS for AUTH (aiosmtpd only tests _tls_protocol for truth).
        if self._implicit_tls and transport.get_extra_info("ssl_object") is not None:
            self._tls_protocol = transport

    def _authenticate(self, mechanism: str, auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            return AuthResult(success=False, handled=False, auth_data=_Deferred(auth_data.login, auth_data.password))
        return AuthResult(success=False, handled=False)

    async def auth_PLAIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._finish(await super().auth_PLAIN(_, args))

    async def auth_LOGIN(self, _: Any, args: list[str]) -> AuthResult:
        return await self._finish(await super().auth_LOGIN(_, args))

    async def _finish(self, result: AuthResult) -> AuthResult:
        data = result.auth_data
        if not isinstance(data, _Deferred):
            return result
        ip = self.session.peer[0] if isinstance(self.session.peer, tuple) else ""
        outcome = await self.loop.run_in_executor(self._executor, self.event_handler.sign_in,
                                                  data.login, data.password, ip)
        if isinstance(outcome, str):
            await self.push(outcome)
            return AuthResult(success=False, handled=True)
        if outcome is None:
            return AuthResult(success=False, handled=False)  # 535 5.7.8
        return AuthResult(success=True, auth_data=outcome)


class SubmissionHandler:
    """What submission does with each command after aiosmtpd's checks (AUTH is required first)."""

    def __init__(self, store: Store, settings: Settings, executor: ThreadPoolExecutor) -> None:
        self.store = store
        self.settings = settings
        self.executor = executor
        self.storing = 0

    def sign_in(self, login: bytes, password: bytes, ip: str) -> app_passwords.MailLogin | str | None:
        """The MailLogin, None for wrong credentials (535), or a reply to send instead (throttled)."""
        username = login.decode("utf-8", "replace")
        try:
            with self.store.session() as db, self.store.counter_sessions() as counters:
                try:
                    return app_passwords.authenticate(db, counters, self.settings, username,
                                                      password.decode("utf-8", "replace"), ip)
                finally:
                    counters.commit()
        except RateLimitedError:
            return "454 4.7.0 Too many failed sign-ins; try again later"
        except GentError as exc:
            self._audit_failure(username, exc, ip)
            return None
        except OperationalError:
            log.warning("submission sign-in: the store is unavailable")
            return "454 4.3.0 Temporary failure; try again later"

    def _audit_failure(self, username: str, exc: GentError, ip: str) -> None:
        try:
            with self.store.session() as db:
                audit.record(db, self.settings.secret_key, action="smtp.submission.sign_in.failed",
                             actor=audit.Actor("anonymous", None, username[:320]), tenant_id=None, edge="smtp",
                             changes={"code": exc.code}, ip=ip)
        except OperationalError:  # a busy store must not turn a 535 into a dropped connection
            log.warning("could not record a failed submission sign-in in the audit log")

    async def handle_EHLO(self, server: Any, session: Session, envelope: Envelope, hostname: str,
                          responses: list[str]) -> list[str]:
        session.host_name = hostname
        return responses

    async def handle_MAIL(self, server: Any, session: Session, envelope: Envelope, address: str,
                          mail_options: list[str]) -> str:
        inbox = session.auth_data.inbox.address
        if (address or "").strip().lower() != inbox:
            return f"550 5.7.1 The envelope sender must be <{inbox}>, the address you signed in as"
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Session, envelope: Envelope, address: str,
                          rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= min(self.settings.smtp_max_recipients, compose.MAX_RECIPIENTS):
            return "452 4.5.3 Too many recipients"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        ip = session.peer[0] if isinstance(session.peer, tuple) else ""
        context = contextvars.copy_context()
        self.storing += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(
                self.executor, partial(context.run, self.submit, session.auth_data, envelope.mail_from,
                                       list(envelope.rcpt_tos), bytes(envelope.content), ip))
        finally:
            self.storing -= 1

    def submit(self, login: app_passwords.MailLogin, mail_from: str, recipients: list[str], raw: bytes,
               ip: str) -> str:
        """Send in one transaction with its audit entry; the reply says what happened."""
        actor = audit.actor_from(login.principal)
        try:
            with self.store.session() as db:
                message = submission.submit(db, self.settings, login, mail_from=mail_from, recipients=recipients,
                                            raw=raw)
                held = message.status == "held"
                audit.record(db, self.settings.secret_key, action="smtp.submission." + ("held" if held else "send"),
                             actor=actor, tenant_id=login.inbox.tenant_id, edge="smtp", resource_type="messages",
                             resource_id=message.id, changes={"recipients": len(recipients), "bytes": len(raw)},
                             ip=ip)
        except GentError as exc:
            return reply_for(exc)
        except OperationalError:
            log.warning("submission: the store is unavailable")
            return "451 4.3.0 Temporary failure; try again later"
        except Exception:  # nothing was stored (the transaction rolled back): the client may retry
            log.exception("submission: the message could not be sent")
            return "451 4.3.0 Temporary failure; try again later"
        if held:
            return f"250 2.0.0 Held for approval as {message.id}: it is sent when a person approves it"
        return f"250 2.0.0 Ok: queued as {message.id}"


class Submission(LoopThread):
    """Submission on host:port (STARTTLS) and host:tls_port (implicit TLS), in a thread of its own
    with its own event loop; port 0 picks a free one (`addresses` tells which)."""

    def __init__(self, store: Store, settings: Settings, *, host: str | None = None, port: int | None = None,
                 tls_port: int | None = None) -> None:
        self.store = store
        self.settings = settings
        self.host = settings.bind if host is None else host
        self.ports = (settings.submission_port if port is None else port,
                      settings.submissions_port if tls_port is None else tls_port)
        self.tls_context = server_context(settings)
        if self.tls_context is None:
            raise ValueError("submission needs a TLS certificate (tls_cert_file and tls_key_file)")
        self.executor = ThreadPoolExecutor(settings.smtp_store_threads, thread_name_prefix="submission")
        self.handler = SubmissionHandler(store, settings, self.executor)
        self.limits = ConnectionLimits(store, settings)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.addresses: list[tuple[str, int]] = []
        self._servers: list[asyncio.AbstractServer] = []
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def _session(self, implicit_tls: bool) -> SubmissionSMTP:
        return SubmissionSMTP(
            self.handler, limits=self.limits, data_timeout=self.settings.smtp_data_timeout,
            executor=self.executor, hostname=self.settings.hostname, ident="ESMTP Gentbox submission",
            data_size_limit=self.settings.max_message_bytes, enable_SMTPUTF8=True, decode_data=False,
            tls_context=None if implicit_tls else self.tls_context, timeout=self.settings.smtp_command_timeout,
            auth_required=True, auth_require_tls=True, command_call_limit=CALL_LIMITS, loop=self.loop,
            implicit_tls=implicit_tls)

    async def _serve(self, ready: Callable[[list[tuple[str, int]] | BaseException], None]) -> None:
        self._stopping = asyncio.Event()
        try:
            self._servers = [
                await self.loop.create_server(partial(self._session, False), self.host, self.ports[0],
                                              reuse_address=True),
                await self.loop.create_server(partial(self._session, True), self.host, self.ports[1],
                                              reuse_address=True, ssl=self.tls_context),  # RFC 8314
            ]
        except OSError as exc:
            for server in self._servers:
                server.close()
            ready(exc)
            return
        self.addresses = [tuple(s.sockets[0].getsockname()[:2]) for s in self._servers]
        ready(self.addresses)
        await self._stopping.wait()
        for server in self._servers:
            server.close()
        deadline = self.loop.time() + 20
        while self.handler.storing and self.loop.time() < deadline:
            await asyncio.sleep(0.02)
        tasks = [t for t in asyncio.all_tasks(self.loop) if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _run(self, ready: Callable[[list[tuple[str, int]] | BaseException], None]) -> None:
        self.loop = asyncio.new_event_loop()
        try:
            self.loop.run_until_complete(self._serve(ready))
        finally:
            self.executor.shutdown(wait=True)
            self.loop.close()

    def start(self) -> list[tuple[str, int]]:
        """Serve in a background thread; returns the (host, port) of 587's and 465's equivalents.
        Raises OSError when a port cannot be bound."""
        return self._start_thread("smtp-submission", "submission")

