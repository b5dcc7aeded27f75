"""The store from a page: short units of work, read-only ones that never take SQLite's write lock."""
from __future__ import annotations

import contextlib
from typing import Iterator

from flask import current_app, request
from sqlalchemy.orm import Session

from appliance.config import Settings
from appliance.db import Store


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


def client_ip() -> str:
    return request.remote_addr or "unknown"
