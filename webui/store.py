"""The store from a page: short units of work, read-only ones that never take SQLite's write lock."""
from __future__ import annotations

import contextlib
from typing import Iterator

from flask import current_app, request
from sqlalchemy.orm import Session

from appliance.config import Settings
from appliance.db import Store
from appliance.errors import GentError
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
    """A unit of work: committed when the block ends normally, rolled back otherwise."""
    with store().session() as db:
        yield db


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
