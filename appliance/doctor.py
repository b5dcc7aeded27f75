"""`gentbox doctor`: one set of health checks, for the command line and the admin dashboard.

run_checks() asks the store, the local ports, DNS, the certificate files, the disk and the
clock, and returns one Check per question. Every network probe has a time limit
(doctor_timeout), and the groups run side by side, so a dead peer costs one limit, not the sum.
A check that cannot tell says so as a warning with a fix: it never passes on missing evidence.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import http.client
import json
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Callable

import dns.reversename
from sqlalchemy import func, select, text

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.db import MIGRATIONS_DIR, Store, current_revision, is_sqlite
from appliance.dns import Outcome, Resolver
from appliance.heartbeat import KINDS, stale_after
from appliance.models import Domain, OutboundQueue, ProcessHeartbeat

PASS, WARN, FAIL = "pass", "warn", "fail"
CERT_WARN_DAYS = 14
CLOCK_WARN_SECONDS, CLOCK_FAIL_SECONDS = 5.0, 60.0


@dataclass(frozen=True)
class Check:
    """One answer: name (stable id), status (pass | warn | fail), what was seen, how to fix it."""

    name: str
    status: str
    detail: str
    fix: str = ""


@dataclass(frozen=True)
class Context:
    """What every check gets: the store, the settings, the resolver and the time to judge by."""
    store: Store
    settings: Settings
    resolver: Resolver
    now: dt.datetime


def run_checks(store: Store, settings: Settings, *, resolver: Resolver | None = None,
               now: dt.datetime | None = None) -> list[Check]:
    """Every health check, in a stable order."""
    ctx = Context(store, settings, resolver or Resolver(settings), now or utcnow())
    groups: list[Callable[[Context], list[Check]]] = [
        check_processes, check_ports, check_imap, check_submission, check_outbound, check_domains, check_reverse_dns,
        check_certificate, check_disk, check_database, check_audit_owner, check_queue, check_clock]
    with ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="doctor") as pool:
        futures = [(group, pool.submit(group, ctx)) for group in groups]
    checks: list[Check] = []
    for group, future in futures:
        try:
            checks.extend(future.result())
        except Exception as exc:  # noqa: BLE001 - one broken check must not hide the others
            name = group.__name__.removeprefix("check_")
            checks.append(Check(name, FAIL, f"the check could not run: {type(exc).__name__}: {exc}",
                                "Run `gentbox doctor` again; if this persists, report it with this message."))
    return checks


def overall(checks: list[Check]) -> str:
    """fail if any check failed, else warn if any warned, else pass."""
    statuses = {c.status for c in checks}
    return FAIL if FAIL in statuses else WARN if WARN in statuses else PASS


def report_json(checks: list[Check]) -> str:
    """The checks as one JSON document: {"status": ..., "checks": [{name, status, detail, fix}]}."""
    return json.dumps({"status": overall(checks), "checks": [asdict(c) for c in checks]}, indent=2)


def report_text(checks: list[Check]) -> str:
    """The checks as lines for a terminal, each failure or warning followed by its fix."""
    width = max((len(c.name) for c in checks), default=0)
    lines = []
    for c in checks:
        lines.append(f"{c.status.upper():4}  {c.name:{width}}  {c.detail}")
        if c.fix:
            lines.append(f"{'':4}  {'':{width}}  fix: {c.fix}")
    lines.append(f"\n{overall(checks).upper()}: " + ", ".join(
        f"{sum(c.status == s for c in checks)} {s}" for s in (PASS, WARN, FAIL)))
    return "\n".join(lines)


def _ago(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


# --- processes -----------------------------------------------------------------------------
_START = {"web": "gentbox web", "smtp": "gentbox smtp", "worker": "gentbox worker", "imap": "gentbox imap"}


def check_processes(ctx: Context) -> list[Check]:
    """Each kind of process has beaten recently (appliance/heartbeat.py)."""
    h = ProcessHeartbeat
    with ctx.store.read_sessions() as db:
        rows = db.execute(select(h.kind, h.host, h.pid, h.beat_at, h.version)).all()
    limit = stale_after(ctx.settings.heartbeat_interval)
    checks = []
    for kind in KINDS:
        mine = sorted((r for r in rows if r.kind == kind), key=lambda r: r.beat_at, reverse=True)
        fresh = [r for r in mine if (ctx.now - r.beat_at).total_seconds() <= limit]
        name = f"process.{kind}"
        if fresh:
            hosts = sorted({r.host for r in fresh})
            checks.append(Check(name, PASS, f"{len(fresh)} {kind} process(es) up on {', '.join(hosts)} "
                                f"(version {fresh[0].version}, last beat {_ago((ctx.now - fresh[0].beat_at).total_seconds())} ago)"))
            continue
        fix = (f"Start it: systemctl start gentbox-{kind}.service, and see why it stopped: "
               f"journalctl -u gentbox-{kind}.service -n 50 (without systemd: {_START[kind]}).")
        if mine:
            last = mine[0]
            detail = (f"no {kind} process has reported for {_ago((ctx.now - last.beat_at).total_seconds())} "
                      f"(the last: pid {last.pid} on {last.host}); it is down or cannot write to the store")
        else:
            detail = f"no {kind} process has ever reported"
        checks.append(Check(name, FAIL, detail, fix))
    return checks


# --- ports ---------------------------------------------------------------------------------
def _local_host(bind: str) -> str:
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(bind, bind)


def _greeting(host: str, port: int, timeout: float) -> str:
    """The first line a server at host:port says (an SMTP greeting); raises OSError."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        data = b""
        while b"\n" not in data and len(data) < 1024:
            chunk = sock.recv(1024)
            if not chunk:
                break
            data += chunk
        try:
            sock.sendall(b"QUIT\r\n")
        except OSError:
            pass
    return data.split(b"\n", 1)[0].decode("latin-1").strip()


def check_ports(ctx: Context) -> list[Check]:
    """The SMTP and web ports answer on this host, and the HTTPS front when public_url is https."""
    s, timeout = ctx.settings, ctx.settings.doctor_timeout
    host = _local_host(s.bind)
    checks = []
    try:
        line = _greeting(host, s.smtp_port, timeout)
        ok = line.startswith("220")
        checks.append(Check("port.smtp", PASS if ok else FAIL, f"{host}:{s.smtp_port} greets: {line[:120]!r}",
                            "" if ok else f"Something other than Gentbox answers on port {s.smtp_port}: "
                            f"find it with ss -ltnp 'sport = :{s.smtp_port}'."))
    except OSError as exc:
        checks.append(Check("port.smtp", FAIL, f"{host}:{s.smtp_port} does not answer ({exc})",
                            "Start the listener: systemctl start gentbox-smtp.service (journalctl -u "
                            "gentbox-smtp.service says why it stopped)."))
    checks.append(_http_check("port.web", "http", host, s.http_port, "", timeout,
                              "Start the web app: systemctl start gentbox-web.service (journalctl -u "
                              "gentbox-web.service says why it stopped)."))
    public = urllib.parse.urlsplit(s.public_url) if s.public_url else None
    if public is None or public.scheme != "https":
        checks.append(Check("port.https", WARN, f"public_url is {s.public_url or 'not set'}: the web UI and "
                            "API are not served over HTTPS", "Put the HTTPS front in place (the Ansible role "
                            f"sets up nginx) and set public_url = \"https://{s.hostname}\"."))
    else:
        checks.append(_http_check("port.https", "https", "127.0.0.1", public.port or 443, public.hostname or "",
                                  timeout, "Start the HTTPS front: systemctl start nginx; nginx -t shows "
                                  "configuration errors."))
    return checks


def _imap_capability(host: str, port: int, timeout: float, tls: bool) -> str:
    """The greeting of an IMAP server at host:port (over TLS, any certificate: the certificate
    check judges the certificate); raises OSError."""
    return _tls_greeting(host, port, timeout, b"z LOGOUT\r\n", tls=tls)


def _tls_greeting(host: str, port: int, timeout: float, bye: bytes, *, tls: bool = True) -> str:
    """The first line a server at host:port says (over TLS, any certificate), then `bye`."""
    with contextlib.ExitStack() as stack:
        sock = stack.enter_context(socket.create_connection((host, port), timeout=timeout))
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            sock = stack.enter_context(context.wrap_socket(sock))
        sock.settimeout(timeout)
        data = b""
        while b"\n" not in data and len(data) < 4096:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        try:
            sock.sendall(bye)
        except OSError:
            pass
    return data.split(b"\n", 1)[0].decode("latin-1").strip()


def check_imap(ctx: Context) -> list[Check]:
    """IMAP answers for mail clients: STARTTLS offered (and LOGIN refused before it) on imap_port,
    TLS on imaps_port."""
    s, timeout = ctx.settings, ctx.settings.doctor_timeout
    host = _local_host(s.bind)
    start = ("Start it: systemctl start gentbox-imap.service (journalctl -u gentbox-imap.service says why it "
             "stopped; without systemd: gentbox imap).")
    checks = []
    for name, port, tls in (("port.imap", s.imap_port, False), ("port.imaps", s.imaps_port, True)):
        try:
            line = _imap_capability(host, port, timeout, tls)
        except (OSError, ssl.SSLError) as exc:
            checks.append(Check(name, FAIL, f"{host}:{port} does not answer IMAP{'S' if tls else ''} ({exc})", start))
            continue
        wanted = "* OK" if tls else "STARTTLS LOGINDISABLED"
        ok = line.startswith("* OK") and wanted in line
        fix = "" if ok else (f"Something other than Gentbox answers on port {port}, or no certificate is set "
                             "(tls_cert_file/tls_key_file): mail clients cannot log in safely.")
        checks.append(Check(name, PASS if ok else FAIL, f"{host}:{port} greets: {line[:160]!r}", fix))
    return checks


def check_submission(ctx: Context) -> list[Check]:
    """SMTP submission for mail clients (smtp/submission.py, in the SMTP process): a greeting on
    submission_port (STARTTLS) and, over TLS from the first byte, on submissions_port."""
    s, timeout = ctx.settings, ctx.settings.doctor_timeout
    host = _local_host(s.bind)
    if s.tls_cert_file is None:
        return [Check("port.submission", WARN, "submission is off: no certificate (tls_cert_file)",
                      "Set tls_cert_file and tls_key_file (gentbox init makes a self-signed pair; the Ansible "
                      "role uses the site's) so mail clients can send with an app password.")]
    start = ("Start the SMTP process, which serves submission: systemctl start gentbox-smtp.service "
             "(journalctl -u gentbox-smtp.service says why it stopped).")
    checks = []
    for name, port, tls in (("port.submission", s.submission_port, False), ("port.submissions", s.submissions_port,
                                                                             True)):
        try:
            line = _tls_greeting(host, port, timeout, b"QUIT\r\n") if tls else _greeting(host, port, timeout)
        except (OSError, ssl.SSLError) as exc:
            checks.append(Check(name, FAIL, f"{host}:{port} does not answer ({exc})", start))
            continue
        ok = line.startswith("220")
        checks.append(Check(name, PASS if ok else FAIL, f"{host}:{port} greets: {line[:120]!r}",
                            "" if ok else f"Something other than Gentbox answers on port {port}: "
                            f"find it with ss -ltnp 'sport = :{port}'."))
    return checks


def _http_check(name: str, scheme: str, host: str, port: int, server_name: str, timeout: float,
                fix: str) -> Check:
    """GET /v1/openapi.json at host:port (over TLS for https, any certificate: this asks whether it
    answers, the certificate check judges the certificate)."""
    if scheme == "https":
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    where = f"{scheme}://{host}:{port}"
    try:
        conn.request("GET", "/v1/openapi.json", headers={"Host": server_name or host})
        status = conn.getresponse().status
    except (OSError, http.client.HTTPException) as exc:
        return Check(name, FAIL, f"{where} does not answer ({exc})", fix)
    finally:
        conn.close()
    if status != 200:
        return Check(name, FAIL, f"{where}/v1/openapi.json answers HTTP {status}, not 200",
                     fix + " If it answers but not with the app, check the proxy's upstream.")
    return Check(name, PASS, f"{where} serves the API")


# --- outbound port 25 ----------------------------------------------------------------------
def check_outbound(ctx: Context) -> list[Check]:
    """Mail can leave: the smarthost answers, or a remote port 25 is reachable."""
    s = ctx.settings
    if s.relay_host:
        try:
            with socket.create_connection((s.relay_host, s.relay_port), timeout=s.doctor_timeout):
                pass
        except OSError as exc:
            return [Check("outbound", FAIL, f"the smarthost {s.relay_host}:{s.relay_port} cannot be reached ({exc})",
                          "Check GENTBOX_RELAY_HOST and GENTBOX_RELAY_PORT, and that the firewall allows "
                          "outgoing connections to that port.")]
        return [Check("outbound", PASS, f"mail leaves through the smarthost {s.relay_host}:{s.relay_port}, "
                      "which accepts connections")]
    host, _, port = s.outbound_probe.rpartition(":")
    host = host.strip("[]")
    fix = ("Ask the VPS provider to open outgoing port 25 (many block it on new accounts), or send "
           "through a smarthost: set GENTBOX_RELAY_HOST, GENTBOX_RELAY_PORT, GENTBOX_RELAY_USERNAME and "
           "GENTBOX_RELAY_PASSWORD_FILE.")
    try:
        line = _greeting(host, int(port), s.doctor_timeout)
    except OSError as exc:
        return [Check("outbound", FAIL, f"outgoing SMTP to {s.outbound_probe} fails ({exc or 'timed out'}); "
                      "no smarthost is set", fix)]
    if not line.startswith("220"):
        return [Check("outbound", WARN, f"{s.outbound_probe} accepted the connection but greeted {line[:120]!r}",
                      "Something between this host and the Internet may be intercepting port 25. " + fix)]
    return [Check("outbound", PASS, f"outgoing port 25 works ({s.outbound_probe} greets)")]


# --- DNS -----------------------------------------------------------------------------------
def check_domains(ctx: Context) -> list[Check]:
    """Every hosted domain's records, as the domains API checks them (appliance/services/domains/domains.py)."""
    with ctx.store.read_sessions() as db:
        ids = list(db.scalars(select(Domain.id).order_by(Domain.name)))
    if not ids:
        return [Check("dns", PASS, "no domains yet: nothing to check")]
    with ThreadPoolExecutor(max_workers=min(8, len(ids)), thread_name_prefix="doctor-dns") as pool:
        return list(pool.map(lambda domain_id: _check_domain(ctx, domain_id), ids))


def _check_domain(ctx: Context, domain_id: str) -> Check:
    from appliance.services.domains import dkim, domains
    with ctx.store.read_sessions() as db:
        domain = db.get(Domain, domain_id)
        ed25519 = dkim.ed25519_selector(db, domain_id)
        results = domains.run_check(db, ctx.settings, domain, ctx.resolver)
        name, verified = domain.name, domain.status == "verified"
    needed = [r for r in results if r["required"] and not (r["purpose"] == "verification" and verified)]
    wrong = [r for r in needed if r["status"] in ("missing", "mismatch")]
    unknown = [r for r in needed if r["status"] == "unknown"]
    check = f"dns.{name}"
    if wrong:
        detail = "; ".join(f"{r['type']} {_fqdn(r, name)} {r['status']}"
                           + (f" (found {', '.join(r['found'])[:200]})" if r["found"] else "") for r in wrong)
        fix = "Publish at the domain's DNS provider: " + "; ".join(
            f"{r['type']} {_fqdn(r, name)} = {r['value']}" for r in wrong)
        # A domain still being set up is not yet broken: its owner is publishing the records.
        return Check(check, FAIL if verified else WARN, detail + ("" if verified else " (domain not verified yet)"), fix)
    if unknown:
        return Check(check, WARN, "DNS did not answer for " + ", ".join(
            f"{r['type']} {_fqdn(r, name)}" for r in unknown), "Check GENTBOX_DNS_SERVERS and that this "
            "host can reach them, then run gentbox doctor again.")
    if (warning := _ed25519_warning(results, ed25519, name)) is not None:
        return warning
    return Check(check, PASS, f"all {len(needed)} required records are published ({'verified' if verified else 'pending verification'})")


def _ed25519_warning(results: list[dict], selector: str | None, name: str) -> Check | None:
    """A warning, not a failure: receivers still verify the RSA signature without Ed25519's."""
    if selector is None:
        return Check(f"dns.{name}", WARN, "no Ed25519 DKIM key yet (domain added before Ed25519 signing)",
                     f"Run gentbox domain verify {name} (or Verify on its page) to create it, then publish its record.")
    record = next((r for r in results if r["host"] == f"{selector}._domainkey"), None)
    if record is None or record["status"] not in ("missing", "mismatch"):
        return None
    return Check(f"dns.{name}", WARN, f"TXT {_fqdn(record, name)} {record['status']}: the Ed25519 DKIM key does "
                 "not sign until it is published (RSA still signs)",
                 f"Publish TXT {_fqdn(record, name)} = {record['value']}, then verify the domain.")


def _fqdn(record: dict, domain: str) -> str:
    return domain if record["host"] == "@" else f"{record['host']}.{domain}"


def check_reverse_dns(ctx: Context) -> list[Check]:
    """Each public address's PTR names the host name, and the host name resolves back to it."""
    s = ctx.settings
    addresses = [(a, rtype) for a, rtype in ((s.public_ipv4, "A"), (s.public_ipv6, "AAAA")) if a]
    if not addresses:
        return [Check("reverse_dns", WARN, "the public addresses are not set, so reverse DNS was not checked",
                      "Set GENTBOX_PUBLIC_IPV4 (and GENTBOX_PUBLIC_IPV6) to the addresses mail leaves from; "
                      "receivers reject mail whose address has no matching reverse DNS.")]
    checks = []
    for address, rtype in addresses:
        name = f"reverse_dns.{address}"
        ptr = ctx.resolver.query(dns.reversename.from_address(address).to_text(), "PTR")
        fix = (f"Ask the VPS provider to set the reverse DNS (PTR) of {address} to {s.hostname} "
               "(most have a field for it in their control panel).")
        if not ptr.definite:
            checks.append(Check(name, WARN, f"DNS did not answer for the PTR of {address} ({ptr.outcome.value})",
                                "Check GENTBOX_DNS_SERVERS, then run gentbox doctor again."))
        elif s.hostname not in ptr.records:
            found = ", ".join(ptr.records) or "no PTR record"
            checks.append(Check(name, FAIL, f"{address} points back to {found}, not {s.hostname}", fix))
        else:
            forward = ctx.resolver.query(s.hostname, rtype)
            if address in forward.records:
                checks.append(Check(name, PASS, f"{address} <-> {s.hostname}"))
            else:
                checks.append(Check(name, FAIL, f"{address} points back to {s.hostname}, but {s.hostname} has "
                                    f"{rtype} {', '.join(forward.records) or forward.outcome.value}",
                                    f"Publish {rtype} {s.hostname} = {address} at the DNS provider."))
    return checks


# --- TLS -----------------------------------------------------------------------------------
def check_certificate(ctx: Context) -> list[Check]:
    """The configured certificate: readable, matching its key, valid now, not about to expire."""
    from cryptography import x509
    s = ctx.settings
    if s.tls_cert_file is None or s.tls_key_file is None:
        return [Check("tls_certificate", WARN, "no certificate is configured: SMTP offers no STARTTLS",
                      "Set tls_cert_file and tls_key_file (gentbox init makes a self-signed pair; the Ansible "
                      "role gets one from Let's Encrypt).")]
    renew = (f"Renew it (certbot renew, which the Ansible role schedules) or replace {s.tls_cert_file} and "
             f"{s.tls_key_file}, then systemctl restart gentbox-smtp.service.")
    try:
        cert = x509.load_pem_x509_certificate(s.tls_cert_file.read_bytes())
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(s.tls_cert_file, s.tls_key_file)
    except (OSError, ValueError, ssl.SSLError) as exc:
        return [Check("tls_certificate", FAIL, f"{s.tls_cert_file} cannot be used with its key: {exc}", renew)]
    after, before = cert.not_valid_after_utc, cert.not_valid_before_utc
    days = (after - ctx.now).total_seconds() / 86400
    if after <= ctx.now:
        return [Check("tls_certificate", FAIL, f"expired on {after:%Y-%m-%d %H:%M} UTC ({-days:.0f} days ago)", renew)]
    if before > ctx.now:
        return [Check("tls_certificate", FAIL, f"not valid before {before:%Y-%m-%d %H:%M} UTC",
                      "Check the clock (see the clock check), or replace the certificate.")]
    names = _cert_names(cert)
    self_signed = cert.issuer == cert.subject
    detail = (f"valid until {after:%Y-%m-%d} ({days:.0f} days), for {', '.join(names) or 'no names'}"
              + (", self-signed" if self_signed else f", issued by {cert.issuer.rfc4514_string()[:80]}"))
    if days < CERT_WARN_DAYS:
        return [Check("tls_certificate", WARN, f"expires in {days:.1f} days: " + detail, renew)]
    if s.hostname not in names and f"*.{s.hostname.split('.', 1)[1]}" not in names:
        return [Check("tls_certificate", WARN, f"does not name {s.hostname}: " + detail,
                      f"Get a certificate for {s.hostname}. " + renew)]
    return [Check("tls_certificate", PASS, detail)]


def _cert_names(cert) -> list[str]:  # noqa: ANN001
    from cryptography import x509
    try:
        return [n.lower() for n in cert.extensions.get_extension_for_class(
            x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        return [a.value.lower() for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]


# --- disk, database, queue -----------------------------------------------------------------
def check_disk(ctx: Context) -> list[Check]:
    """Free space on the data dir's filesystem."""
    usage = shutil.disk_usage(ctx.settings.data_dir)
    free_gib, share = usage.free / 2**30, usage.free / usage.total
    detail = f"{free_gib:.1f} GiB free ({share:.0%}) on the filesystem of {ctx.settings.data_dir}"
    fix = ("Free space (journalctl --vacuum-size=200M; move old backups elsewhere) or grow the disk: "
           "when it fills, the store refuses mail.")
    if usage.free < 256 * 2**20 or share < 0.01:
        return [Check("disk", FAIL, detail, fix)]
    if usage.free < 2**30 or share < 0.05:
        return [Check("disk", WARN, detail, fix)]
    return [Check("disk", PASS, detail)]


def _head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return ScriptDirectory.from_config(cfg).get_current_head() or ""


def check_database(ctx: Context) -> list[Check]:
    """SQLite: PRAGMA quick_check; both: it answers and its schema is at the newest migration."""
    engine = ctx.store.engine
    backend = "SQLite" if is_sqlite(engine) else "PostgreSQL"
    try:
        with ctx.store.read_engine.connect() as conn:
            if is_sqlite(engine):
                problems = [row[0] for row in conn.execute(text("PRAGMA quick_check"))]
            else:
                conn.execute(text("SELECT 1"))
                problems = ["ok"]
        revision = current_revision(engine)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the store is this check's answer
        return [Check("database", FAIL, f"{backend} does not answer: {type(exc).__name__}: {exc}",
                      "Check database_url and that the database server runs (systemctl status postgresql)."
                      if backend == "PostgreSQL" else f"Check that {ctx.settings.data_dir} is readable by gentbox.")]
    if problems != ["ok"]:
        return [Check("database", FAIL, f"PRAGMA quick_check reports: {'; '.join(problems[:5])}",
                      "Stop the services, keep a copy of the data dir, then restore the newest backup "
                      "(gentbox restore --force PATH), or salvage with sqlite3 gentbox.db .recover.")]
    head = _head_revision()
    if revision != head:
        return [Check("database", FAIL, f"the schema is at {revision or 'nothing'}, the code expects {head}",
                      "Run gentbox migrate (the Ansible role does on upgrade), then restart the services.")]
    return [Check("database", PASS, f"{backend} answers" + (", quick_check ok" if backend == "SQLite" else "")
                  + f", schema at {head}")]


def check_audit_owner(ctx: Context) -> list[Check]:
    """PostgreSQL: the application role cannot drop the audit log's triggers (SQLite has no roles)."""
    if is_sqlite(ctx.store.engine):
        return []
    from appliance.services.governance.audit_owner import guard
    with ctx.store.read_engine.connect() as conn:
        found = guard(conn)
    if found.hardened:
        return [Check("audit_owner", PASS, found.detail)]
    return [Check("audit_owner", WARN, found.detail,
                  "As the PostgreSQL superuser: gentbox db harden --sql --app-role gentbox | sudo -u postgres psql "
                  "-v ON_ERROR_STOP=1 gentbox (the Ansible role does it; see docs/audit.md).")]


def check_queue(ctx: Context) -> list[Check]:
    """How much mail waits to leave, how long the oldest deferred one has waited, and whether
    due rows are being picked up."""
    waiting = ("queued", "deferred", "delivering")
    with ctx.store.read_sessions() as db:
        depth = db.scalar(select(func.count()).select_from(OutboundQueue).where(OutboundQueue.status.in_(waiting)))
        oldest = db.scalar(select(func.min(OutboundQueue.created_at)).where(OutboundQueue.status == "deferred"))
        overdue = db.scalar(select(func.count()).select_from(OutboundQueue).where(
            OutboundQueue.status.in_(("queued", "deferred")),
            OutboundQueue.next_attempt_at < ctx.now - dt.timedelta(minutes=10)))
    age = (ctx.now - oldest).total_seconds() if oldest else 0.0
    detail = f"{depth} queue row(s) waiting" + (f", the oldest deferred since {_ago(age)}" if oldest else
                                                ", none deferred")
    if overdue:
        return [Check("queue", WARN, f"{detail}; {overdue} due more than 10 min ago and not picked up",
                      "The worker is down or cannot keep up: see the process.worker check and "
                      "journalctl -u gentbox-worker.service.")]
    if oldest and age > (ctx.settings.delay_notice_after or 4 * 3600):
        return [Check("queue", WARN, detail, "Look at the last SMTP replies of the deferred messages "
                      "(delivery[] in GET /v1/messages/{message_id}/) and journalctl -u gentbox-worker.service; "
                      "if remote hosts time out, check outgoing port 25 (the outbound check).")]
    return [Check("queue", PASS, detail)]


# --- clock ---------------------------------------------------------------------------------
def check_clock(ctx: Context) -> list[Check]:
    """The clock is synchronised: per clock_reference_url when set, else timedatectl or chrony."""
    s = ctx.settings
    if s.clock_reference_url:
        return [_clock_by_http(s.clock_reference_url, s.doctor_timeout)]
    for probe in (_clock_by_timedatectl, _clock_by_chrony):
        check = probe(s.doctor_timeout)
        if check is not None:
            return [check]
    return [Check("clock", WARN, "cannot tell whether the clock is synchronised: neither timedatectl nor "
                  "chronyc answered",
                  "Run a time daemon (apt install chrony, or systemctl enable --now systemd-timesyncd), or set "
                  "GENTBOX_CLOCK_REFERENCE_URL to an https:// URL whose Date header doctor compares with.")]


_NTP_FIX = "Enable time synchronisation: timedatectl set-ntp true (or apt install chrony)."


def _run(argv: list[str], timeout: float) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _clock_by_timedatectl(timeout: float) -> Check | None:
    out = _run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"], timeout)
    if out is None:
        return None
    if out.strip() == "yes":
        return Check("clock", PASS, "timedatectl: the system clock is synchronised (NTP)")
    return Check("clock", FAIL, "timedatectl: the system clock is not synchronised", _NTP_FIX)


def _clock_by_chrony(timeout: float) -> Check | None:
    out = _run(["chronyc", "tracking"], timeout)
    if out is None:
        return None
    fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}
    leap, offset = fields.get("Leap status", ""), fields.get("System time", "?")
    if leap == "Normal":
        return Check("clock", PASS, f"chrony: synchronised (system time {offset})")
    return Check("clock", FAIL, f"chrony: not synchronised (leap status {leap or 'unknown'})", _NTP_FIX)


def _clock_by_http(url: str, timeout: float) -> Check:
    started = time.time()
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout) as resp:
            date = resp.headers.get("Date")
    except urllib.error.HTTPError as exc:  # an error answer still carries the server's Date
        date = exc.headers.get("Date")
    except (OSError, ValueError) as exc:
        return Check("clock", WARN, f"{url} did not answer ({exc}), so the clock was not compared",
                     "Check GENTBOX_CLOCK_REFERENCE_URL, or run a time daemon (apt install chrony).")
    finished = time.time()
    if not date:
        return Check("clock", WARN, f"{url} sent no Date header", "Point GENTBOX_CLOCK_REFERENCE_URL at another server.")
    remote = email.utils.parsedate_to_datetime(date).timestamp()
    # The Date header has one-second resolution: compare with the middle of the round trip.
    offset = (started + finished) / 2 - (remote + 0.5)
    detail = f"{abs(offset):.1f} s {'ahead of' if offset > 0 else 'behind'} {url} (by its Date header)"
    if abs(offset) > CLOCK_FAIL_SECONDS:
        return Check("clock", FAIL, detail, _NTP_FIX + " Then restart the services.")
    if abs(offset) > CLOCK_WARN_SECONDS + (finished - started):
        return Check("clock", WARN, detail, _NTP_FIX)
    return Check("clock", PASS, detail)
