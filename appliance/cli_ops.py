"""`gentbox backup` and `gentbox restore` (the store and the data dir's files in one archive), `doctor`,
`audit verify` and `db harden`."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from appliance.config import config_path_from, load_settings
from appliance.errors import ValidationError


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _passphrase(path: str | None) -> str | None:
    if not path:
        return None
    try:
        passphrase = Path(path).read_text().rstrip("\r\n")
    except OSError as exc:
        raise ValidationError(f"--passphrase-file: cannot read {path}: {exc.strerror}") from None
    if not passphrase:
        raise ValidationError(f"--passphrase-file: {path} is empty.")
    return passphrase


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name}={count}" for name, count in counts.items())


def cmd_backup(args: argparse.Namespace) -> int:
    """Write a consistent snapshot of the store, the config, the secret key and TLS files."""
    from appliance.backup import create_backup
    passphrase = _passphrase(args.passphrase_file)
    settings = load_settings()
    started = time.monotonic()
    result = create_backup(settings, config_path_from(os.environ), Path(args.path),
                           passphrase=passphrase, unencrypted=args.no_encryption, progress=_progress)
    m = result.manifest
    print(f"Backed up to {result.path} ({result.size / 2**20:.1f} MiB, "
          f"{'encrypted' if passphrase else 'not encrypted'}, {time.monotonic() - started:.1f} s): "
          f"{m['backend']} schema {m['schema_revision']}, {_counts(m['counts'])}")
    print(f"Erasures carried out since the previous backup: {len(m['erasures']['completed'])} (listed in its "
          "manifest; restoring an older archive means carrying them out again)")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Restore an archive into the configured, empty store and data dir, then migrate."""
    from appliance.backup import restore_backup
    passphrase = _passphrase(args.passphrase_file)
    started = time.monotonic()
    result = restore_backup(Path(args.path), dict(os.environ), config_path_from(os.environ),
                            passphrase=passphrase, force=args.force, progress=_progress)
    for warning in result.warnings:
        print(f"gentbox: warning: {warning}", file=sys.stderr)
    print(f"Restored the backup of {result.manifest['created_at']} ({result.manifest['backend']}, "
          f"schema {result.manifest['schema_revision']}) in {time.monotonic() - started:.1f} s: "
          f"{_counts(result.counts)}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Run every health check; exit 1 when any fails."""
    from appliance.db import Store
    from appliance.doctor import FAIL, report_json, report_text, run_checks
    settings = load_settings()
    store = Store(settings)  # not migrated: a schema behind the code is one of the findings
    try:
        checks = run_checks(store, settings)
    finally:
        store.dispose()
    print(report_json(checks) if args.json else report_text(checks), flush=True)
    return 1 if any(c.status == FAIL for c in checks) else 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Verify every audit chain (or one); print the first broken link; exit 1 when one is broken."""
    import json

    from sqlalchemy import select

    from appliance.db import Store
    from appliance.models import AuditHead
    from appliance.services.governance import audit
    settings = load_settings()
    store = Store(settings)
    try:
        with store.read_sessions() as db:
            chains = [args.chain] if args.chain else list(db.scalars(select(AuditHead.chain).order_by(AuditHead.chain)))
            verdicts = [audit.verify(db, settings.secret_key, chain) for chain in chains]
    finally:
        store.dispose()
    for verdict in verdicts:
        if args.json:
            print(json.dumps(verdict.to_dict()))
        elif verdict.ok:
            print(f"{verdict.chain}: ok, {verdict.entries} entries, last checkpoint at seq {verdict.last_checkpoint_seq}")
        else:
            where = f"seq {verdict.broken_at} ({verdict.audit_id})" if verdict.broken_at else "the tail"
            print(f"{verdict.chain}: BROKEN at {where}: {verdict.reason}")
    return 0 if all(v.ok for v in verdicts) else 1


def cmd_db_harden(args: argparse.Namespace) -> int:
    """Give the audit log to its own owner role on PostgreSQL (or print the SQL for a superuser)."""
    from sqlalchemy.engine import make_url

    from appliance.services.governance import audit_owner
    app_role = args.app_role
    if not app_role:
        url = make_url(load_settings().database_url)
        if not url.drivername.startswith("postgresql"):
            print("SQLite has no roles: the triggers are all there is to harden, and they are in place.")
            return 0
        app_role = url.username
    if not app_role:
        raise ValidationError("--app-role: the database URL names no user; name the application role.")
    if args.sql:
        statements = (audit_owner.undo_sql if args.undo else audit_owner.harden_sql)(app_role, args.owner_role)
        print(";\n".join(statements) + ";")
        return 0
    if not args.admin_url:
        raise ValidationError("--admin-url: a URL of this database for a role that may create roles "
                              "(e.g. postgresql:///gentbox?host=/var/run/postgresql run as postgres), or use --sql.")
    from appliance.db import make_engine
    engine = make_engine(args.admin_url)
    try:
        with engine.begin() as conn:
            audit_owner.harden(conn, app_role, args.owner_role, undo=args.undo)
    finally:
        engine.dispose()
    if args.undo:
        print(f"The audit log belongs to {app_role} again: run `gentbox db harden` once the restore or migration is done.")
        return 0
    print(f"The audit log now belongs to {args.owner_role}; {app_role} may append to it but not drop, disable "
          "or change its triggers.")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the backup, restore, doctor, audit and db commands."""
    audit_cmd = sub.add_parser("audit", help="the audit log").add_subparsers(dest="action", required=True)
    p = audit_cmd.add_parser("verify", help="verify the hash chains and checkpoints; exit 1 when one is broken")
    p.add_argument("--chain", help="one chain: a tenant id, or 'box'")
    p.add_argument("--json", action="store_true", help="one JSON verdict per line")
    p.set_defaults(func=cmd_audit_verify)
    db_cmd = sub.add_parser("db", help="database provisioning").add_subparsers(dest="action", required=True)
    p = db_cmd.add_parser("harden", help="PostgreSQL: give the audit log to a separate owner role, so the "
                                         "application role cannot drop its triggers")
    p.add_argument("--admin-url", help="this database as a superuser (or a role with CREATEROLE)")
    p.add_argument("--app-role", help="the application role (default: the user of database_url)")
    p.add_argument("--owner-role", default="gentbox_audit", help="the NOLOGIN owner role (default gentbox_audit)")
    p.add_argument("--sql", action="store_true", help="print the statements for a superuser instead of running them")
    p.add_argument("--undo", action="store_true", help="give the audit log back to the application role "
                                                       "(before a restore, or a migration that alters the audit tables)")
    p.set_defaults(func=cmd_db_harden)
    p = sub.add_parser("doctor", help="check the appliance's health; exit 1 when a check fails")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.set_defaults(func=cmd_doctor)
    p = sub.add_parser("backup", help="write the store, config, secret key and TLS files to one archive")
    p.add_argument("path", help="the archive to write (replaced atomically)")
    p.add_argument("--passphrase-file", help="encrypt with the passphrase in this file (required unless "
                                             "--no-encryption)")
    p.add_argument("--no-encryption", action="store_true",
                   help="write the archive unencrypted on purpose (it holds the secret key and all mail)")
    p.set_defaults(func=cmd_backup)
    p = sub.add_parser("restore", help="restore an archive on a fresh install")
    p.add_argument("path")
    p.add_argument("--passphrase-file", help="the passphrase of an encrypted archive")
    p.add_argument("--force", action="store_true", help="replace a store that already has users or mail")
    p.set_defaults(func=cmd_restore)
