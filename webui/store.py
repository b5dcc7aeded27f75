"""The store from a page: short units of work, read-only ones that never take SQLite's write lock."""
from __future__ import annotations

import contextlib
from typing import Iterator

from flask import current_app, g, has_request_context, request
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from appliance.config import Settings
from appliance.db import Store
from appliance.errors import GentError
from appliance.services.governance import audit
from webui.errors import flash_error


def store() -> Store:
    return current_app.extensions["gentbox"]


def settings() -> Settings:
    return store().settings


@contextlib.contextmanager
def reading() -> Iterator[Session]:
    """A read-only session. Closing it ends its transaction without expiring what it loaded, so
    objects read here (the signed-in user) stay usable for the rest of the request."""
    with store().read_sessions() as db:
        yield db


@contextlib.contextmanager
def writing() -> Iterator[Session]:
    """A unit of work: committed when the block ends normally, rolled back otherwise. A form's
    unit of work (a POST) writes its audit entry in the same transaction (issue 23)."""
    with store().session() as db:
        if not (has_request_context() and request.method == "POST"):
            yield db
            return
        from webui.auth import current_principal  # webui.auth reads through this module

        principal = current_principal()
        with audit.scope("webui", audit.actor_from(principal), principal.tenant_id if principal else None,
                         ip=client_ip(), request_id=g.get("request_id")) as current:
            yield db
            audit.record_scope(db, settings().secret_key, current, action=request.endpoint or "webui",
                               resource_type=None, resource_id=_view_arg_id(), changes=_form_summary())


def _view_arg_id() -> str | None:
    values = [str(v) for v in (request.view_args or {}).values()]
    return values[-1] if values else None


def _form_summary() -> dict:
    """The submitted fields (secrets redacted by the audit module), never the CSRF token or files."""
    return {key: request.form.getlist(key) if len(request.form.getlist(key)) > 1 else request.form.get(key)
            for key in request.form if key != "csrf_token"}


def audit_failure(action: str, label: str, exc: GentError) -> None:
    """A refused form worth recording (a failed sign-in), in its own transaction."""
    try:
        with store().session() as db:
            audit.record(db, settings().secret_key, action=action, actor=audit.Actor("anonymous", None, label[:320]),
                         tenant_id=None, edge="webui", changes={"code": exc.code}, ip=client_ip(),
                         request_id=g.get("request_id"))
    except OperationalError:  # a busy store must not turn a refused sign-in into an error page
        pass


@contextlib.contextmanager
def counting() -> Iterator[Session]:
    """The rate-limit counters' session, committed even when the block fails (failures count)."""
    with store().counter_sessions() as counters:
        try:
            yield counters
        finally:
            counters.commit()


class Work:
    """A form's unit of work: its session (and counters), and whether a typed error ended it."""

    def __init__(self) -> None:
        self.db: Session
        self.counters: Session | None = None
        self.failed = False

    @property
    def ok(self) -> bool:
        return not self.failed


@contextlib.contextmanager
def attempt(*, counted: bool = False) -> Iterator[Work]:
    """The try/writing/flash_error block of every form, once: committed when the block ends
    normally; a service's typed error rolls it back and becomes a flash message (work.failed)
    instead of an error page. counted=True also opens the rate-limit counters (work.counters),
    committed either way, so failures count."""
    work = Work()
    try:
        with contextlib.ExitStack() as stack:
            work.db = stack.enter_context(writing())
            if counted:
                work.counters = stack.enter_context(counting())
            yield work
    except GentError as exc:
        flash_error(exc)
        work.failed = True


def client_ip() -> str:
    return request.remote_addr or "unknown"
