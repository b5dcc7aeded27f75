"""The audit log's owner role on PostgreSQL (issue 23 point 2): `gentbox db harden` and its check.

The triggers that refuse UPDATE and DELETE on `audit_entries` only hold if the application role
cannot drop or disable them, and PostgreSQL lets a table's owner (and the owner of its schema)
do both. Hardening, run once by a role that may create roles (the `postgres` superuser, as the
Ansible role does), gives the audit tables, their trigger function and `audit_prune()` to a
NOLOGIN owner role nobody can log in as, gives the `public` schema to that role too (so the
application role, which owns the database, can no longer DROP a table it does not own), and
grants the application role exactly what it needs: SELECT and INSERT on the entries, UPDATE of
`pii` alone (erasure; the trigger checks the rest), its chain heads, and EXECUTE on
`audit_prune()` (retention's one sanctioned DELETE). It keeps CREATE on `public`, so later
migrations still create their tables. It is idempotent. SQLite has no roles: nothing to do.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection

from appliance.errors import ValidationError

DEFAULT_OWNER = "gentbox_audit"
TABLES = ("audit_entries", "audit_heads", "audit_prunes")
FUNCTIONS = ("audit_entries_append_only()", "audit_prune(text, bigint)")
_ROLE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _ident(name: str, what: str) -> str:
    if not _ROLE.match(name or ""):
        raise ValidationError(f"{what} {name!r} is not a plain role name (lower-case letters, digits, _).")
    return f'"{name}"'


def harden_sql(app_role: str, owner_role: str = DEFAULT_OWNER) -> list[str]:
    """The statements, in order, for a superuser to run in the appliance's database."""
    app, owner = _ident(app_role, "the application role"), _ident(owner_role, "the owner role")
    tables = ", ".join(TABLES)
    return [
        f"DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{owner_role}') THEN "
        f"CREATE ROLE {owner} NOLOGIN; END IF; END$$",
        # ALTER ... OWNER checks that the new owner may create there (a superuser is not asked).
        f"GRANT CREATE ON SCHEMA public TO {owner}",
        f"DO $$BEGIN EXECUTE format('GRANT CREATE ON DATABASE %I TO {owner}', current_database()); END$$",
        *(f"ALTER TABLE {t} OWNER TO {owner}" for t in TABLES),
        *(f"ALTER FUNCTION {f} OWNER TO {owner}" for f in FUNCTIONS),
        f"ALTER SCHEMA public OWNER TO {owner}",  # a schema's owner may DROP any table in it
        f"GRANT USAGE, CREATE ON SCHEMA public TO {app}",
        f"REVOKE ALL ON {tables} FROM PUBLIC, {app}",
        f"GRANT SELECT, INSERT ON audit_entries TO {app}",
        f"GRANT UPDATE (pii) ON audit_entries TO {app}",
        f"GRANT SELECT, INSERT, UPDATE ON audit_heads TO {app}",
        f"GRANT SELECT ON audit_prunes TO {app}",
        "REVOKE ALL ON FUNCTION audit_prune(text, bigint) FROM PUBLIC",
        f"GRANT EXECUTE ON FUNCTION audit_prune(text, bigint) TO {app}",
    ]


def undo_sql(app_role: str, owner_role: str = DEFAULT_OWNER) -> list[str]:
    """The statements that give the audit log back to the application role (before a restore, or a
    migration that alters the audit tables; harden again after)."""
    app, owner = _ident(app_role, "the application role"), _ident(owner_role, "the owner role")
    return [*(f"ALTER TABLE {t} OWNER TO {app}" for t in TABLES),
            *(f"ALTER FUNCTION {f} OWNER TO {app}" for f in FUNCTIONS),
            "ALTER SCHEMA public OWNER TO pg_database_owner",
            f"GRANT ALL ON {', '.join(TABLES)} TO {app}",
            f"REVOKE CREATE ON SCHEMA public FROM {owner}"]


def harden(conn: Connection, app_role: str, owner_role: str = DEFAULT_OWNER, *, undo: bool = False) -> None:
    """Run harden_sql (undo_sql) as the connection's role (a superuser, or one with CREATEROLE) in one transaction."""
    if app_role == owner_role:
        raise ValidationError("The owner role must not be the application role.")
    superuser = conn.scalar(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user"))
    statements = (undo_sql if undo else harden_sql)(app_role, owner_role)
    if not superuser:  # a CREATEROLE role acts through membership; PostgreSQL checks it at each ALTER
        at = 0 if undo else 1  # hardening creates the owner role first
        statements[at:at] = [f'GRANT "{owner_role}" TO current_user', f'GRANT "{app_role}" TO current_user']
    for statement in statements:
        conn.execute(text(statement))
    if conn.scalar(text("SELECT pg_has_role(:app, :owner, 'MEMBER')"), {"app": app_role, "owner": owner_role}):
        raise ValidationError(f"The role {app_role} is a member of {owner_role}, so it could still drop the "
                              f"triggers: REVOKE {owner_role} FROM {app_role} and run this again.")


@dataclass(frozen=True)
class Guard:
    """Whether the connected (application) role could drop or disable the audit triggers."""
    hardened: bool
    detail: str


def guard(conn: Connection) -> Guard:
    """Look at who owns the audit log and the public schema, from the application role's side."""
    row = conn.execute(text(
        "SELECT r.rolsuper, t.tableowner, n.nspowner::regrole::text, "
        "pg_has_role(current_user, t.tableowner, 'MEMBER'), pg_has_role(current_user, n.nspowner, 'MEMBER') "
        "FROM pg_roles r, pg_tables t, pg_namespace n "
        "WHERE r.rolname = current_user AND t.schemaname = 'public' AND t.tablename = 'audit_entries' "
        "AND n.nspname = 'public'")).first()
    if row is None:
        return Guard(False, "the audit_entries table is missing")
    superuser, owner, schema_owner, owns_table, owns_schema = row
    if superuser:
        return Guard(False, "the application connects as a superuser, which may drop any trigger")
    if owns_table:
        return Guard(False, f"the application role owns audit_entries (owner {owner}), so it may drop "
                            "or disable the triggers that keep the log append-only")
    if owns_schema:
        return Guard(False, f"the application role owns the public schema ({schema_owner}), so it may drop "
                            "the audit tables")
    return Guard(True, f"the audit log belongs to {owner}; the application role may append but not drop "
                       "or disable its triggers")
