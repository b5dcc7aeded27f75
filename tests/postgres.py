"""Fresh PostgreSQL databases for tests and benchmarks: made, migrated and dropped in one place."""
from __future__ import annotations

import time

import psycopg

from appliance.db import make_engine, migrate


def url_of(admin_url: str, name: str) -> str:
    """The URL of database `name` on the server admin_url points at."""
    return admin_url.rsplit("/", 1)[0] + "/" + name


def create_database(admin_url: str, name: str, *, migrated: bool = True) -> str:
    """A new database `name` (an old one of that name dropped first), migrated unless told not
    to; returns its URL."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = url_of(admin_url, name)
    if migrated:
        engine = make_engine(url)
        migrate(engine)
        engine.dispose()
    return url


def drop_database(admin_url: str, name: str, timeout: float = 30.0) -> None:
    """Drop the database; a backend this role may not end (autovacuum on a fresh database) finishes
    on its own soon, so this tries again until the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
