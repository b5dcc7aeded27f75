"""Domains: adding, DNS guidance, checks and verification, DKIM rotation, deletion.

A domain row is one tenant's claim on a name. Adding a name claims it (pending, for
settings.domain_claim_ttl); several tenants may hold pending claims on one name, since adding
proves nothing. The first to verify (publish the records, which needs control of the zone) becomes
the name's one verified holder, and the other claims lapse. Only a verified domain is hosted here:
its mail is delivered locally and its inboxes receive; a pending, lapsed or expired claim changes
nothing for anyone else's mail.
"""
from __future__ import annotations

import datetime as dt
import ipaddress
import re
import secrets
from concurrent.futures import ThreadPoolExecutor

import idna
from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.dns import Answer, Outcome, Resolver, public_suffixes
from appliance.errors import ConflictError, NotFoundError, ValidationError
from appliance.ids import new_id
from appliance.models import Domain, Inbox
from appliance.services import tenancy
from appliance.services.automation import events
from appliance.services.automation.events import iso
from appliance.services.domains import dkim, dnsrecords
from appliance.services.identity.auth import Principal, require_manager

DOMAIN_USES = ("existing_domain", "dedicated_subdomain")
DMARC_POLICIES = ("none", "quarantine", "reject")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalize_domain(value: str, field: str = "domain") -> str:
    """A host name in lower-case punycode, or a 400 that names the problem."""
    fix = "Send a domain name like example.com or mail.example.com."
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{field} is required", field=field, fix=fix)
    name = value.strip()
    if any(c.isspace() for c in name):
        raise ValidationError(f"{field} must not contain spaces", field=field, fix=fix)
    name = name[:-1] if name.endswith(".") else name  # the root dot of an FQDN means nothing here
    try:
        ipaddress.ip_address(name.strip("[]"))
        raise ValidationError(f"{field} is an IP address, not a domain name", field=field, fix=fix)
    except ValueError:
        pass
    if len(name) > 253:
        raise ValidationError(f"{field} is longer than 253 characters", field=field, fix=fix)
    # Checked before IDNA, whose messages ("Codepoint U+005F not allowed") do not say what to fix.
    for label in name.lower().split("."):
        if "_" in label:
            raise ValidationError(f"{field} has an underscore in '{label}'; host names cannot",
                                  field=field, fix=fix)
        if label.isascii() and len(label) > 63:
            raise ValidationError(f"{field} has a label of {len(label)} characters; at most 63 are allowed",
                                  field=field, fix=fix)
    try:
        ascii_name = idna.encode(name.lower(), uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValidationError(f"{field} is not a valid domain name: {exc}", field=field, fix=fix) from None
    labels = ascii_name.split(".")
    if len(labels) < 2:
        raise ValidationError(f"{field} needs at least two labels (name.tld)", field=field, fix=fix)
    for label in labels:
        if not _LABEL.match(label):
            raise ValidationError(f"{field} has an invalid label '{label}' (letters, digits and inner "
                                  "hyphens, 1 to 63 characters)", field=field, fix=fix)
    if len(ascii_name) > 253:
        raise ValidationError(f"{field} is longer than 253 characters", field=field, fix=fix)
    if labels[-1].isdigit():
        raise ValidationError(f"{field} ends in a numeric label", field=field, fix=fix)
    if public_suffixes().is_public(ascii_name):
        raise ValidationError(f"{field} '{ascii_name}' is a public suffix, not a domain you can own",
                              field=field, fix="Use a domain registered under it, e.g. example." + ascii_name)
    return ascii_name


def add_domain(db: Session, settings: Settings, principal: Principal, name: str,
               domain_use: str = "existing_domain", dmarc_policy: str | None = None) -> Domain:
    require_manager(principal)
    ascii_name = normalize_domain(name)
    if domain_use not in DOMAIN_USES:
        raise ValidationError("domain_use must be existing_domain or dedicated_subdomain", field="domain_use")
    if dmarc_policy is None:
        dmarc_policy = "reject" if domain_use == "dedicated_subdomain" else "quarantine"
    if dmarc_policy not in DMARC_POLICIES:
        raise ValidationError("dmarc_policy must be none, quarantine or reject", field="dmarc_policy")
    now = utcnow()
    _refuse_taken(db, principal, ascii_name)
    _clear_own_claim(db, principal, ascii_name, now)
    domain = Domain(id=new_id("dom"), tenant_id=principal.tenant_id, name=ascii_name, status="pending",
                    domain_use=domain_use, dmarc_policy=dmarc_policy,
                    verification_token=secrets.token_urlsafe(24), created_at=now, dns_results={},
                    expires_at=now + dt.timedelta(seconds=settings.domain_claim_ttl))
    db.add(domain)
    db.flush()
    dkim.new_key(db, settings, domain, dkim.FIRST_SELECTOR, "active")
    dkim.ensure_ed25519_key(db, settings, domain)  # pending: it signs once DNS shows its record
    return domain


def _refuse_taken(db: Session, principal: Principal, ascii_name: str) -> None:
    """409 when another tenant verified the name: it is hosted here. Who holds it is not said."""
    holder = db.scalar(select(Domain.tenant_id).where(Domain.name == ascii_name, Domain.status == "verified"))
    if holder is not None and holder != principal.tenant_id:
        raise ConflictError(f"{ascii_name} is already verified by another account on this appliance.",
                            field="domain", code="domain_taken",
                            fix=f"If {ascii_name} is yours, ask the appliance's operator to look into it; "
                                "an account that proved ownership in DNS holds it now.")


def _clear_own_claim(db: Session, principal: Principal, ascii_name: str, now: dt.datetime) -> None:
    """The tenant's earlier claim on the name: a live one is a conflict; a lapsed or expired one
    gives way to the new claim (a new ownership token, DKIM key and window)."""
    mine = db.scalar(select(Domain).where(Domain.name == ascii_name, Domain.tenant_id == principal.tenant_id))
    if mine is None:
        return
    if claim_status(mine, now) in ("pending", "verified"):
        raise ConflictError(f"{ascii_name} is already registered on this appliance.", field="domain")
    db.delete(mine)
    db.flush()


def claim_status(domain: Domain, now: dt.datetime | None = None) -> str:
    """pending, verified, lapsed (another tenant verified the name first), or expired (a pending
    claim past its expires_at: it can no longer be verified and blocks nothing)."""
    if domain.status == "pending" and domain.expires_at is not None and domain.expires_at <= (now or utcnow()):
        return "expired"
    return domain.status


def _require_live_claim(domain: Domain) -> None:
    """409 for a lapsed or expired claim: it cannot be verified (nor its key rotated)."""
    status = claim_status(domain)
    if status == "lapsed":
        raise ConflictError(f"Another account verified {domain.name} first, so this claim has lapsed.",
                            code="domain_claim_lapsed",
                            fix=f"If {domain.name} is yours, ask the appliance's operator; delete this claim "
                                f"(DELETE /v1/domains/{domain.name}/) to clear it.")
    if status == "expired":
        raise ConflictError(f"The claim on {domain.name} expired unverified at {iso(domain.expires_at)}.",
                            code="domain_claim_expired",
                            fix=f"Add it again (POST /v1/domains/ {{\"domain\": \"{domain.name}\"}}) for a new "
                                "claim, publish its records, then verify.")


def get_domain(db: Session, principal: Principal, name: str) -> Domain:
    """The tenant's domain by name (Unicode or punycode); 404 for anyone else's."""
    try:
        ascii_name = normalize_domain(name)
    except ValidationError:
        raise NotFoundError("No such domain.") from None
    domain = tenancy.find_owned(db, Domain, principal.tenant_id, Domain.name == ascii_name)
    if domain is None:
        raise NotFoundError("No such domain.")
    return domain


def list_domains(db: Session, principal: Principal) -> list[Domain]:
    return list(db.scalars(tenancy.owned(select(Domain), Domain, principal.tenant_id).order_by(Domain.id)))


def _spec(db: Session, domain: Domain) -> dnsrecords.DomainSpec:
    keys = dkim.listed_keys(db, domain.id)
    return dnsrecords.DomainSpec(
        name=domain.name, domain_use=domain.domain_use, dmarc_policy=domain.dmarc_policy,
        verification_token=domain.verification_token,
        dkim=tuple((k.selector, k.public_key, k.status == "active", k.algorithm) for k in keys),
        mta_sts_id=domain.created_at.strftime("%Y%m%d%H%M%S"))


def _lookups(resolver: Resolver, domain: str, records: list[dnsrecords.Record]) -> dict[str, Answer]:
    """Every record's answer, queried in parallel so a slow server costs one lifetime, not seven."""
    names = {(r.fqdn(domain), r.type) for r in records}
    with ThreadPoolExecutor(max_workers=len(names)) as pool:
        futures = {key: pool.submit(resolver.query, *key) for key in names}
    return {f"{name} {rtype}": fut.result() for (name, rtype), fut in futures.items()}


def run_check(db: Session, settings: Settings, domain: Domain, resolver: Resolver | None = None) -> list[dict]:
    """Query DNS for every record and compare by meaning. Changes nothing."""
    resolver = resolver or Resolver(settings)
    spec = _spec(db, domain)
    # End the unit of work before going to the network: on SQLite an open transaction holds the
    # write lock, and a slow DNS server must not stall every other writer of the appliance.
    db.commit()
    base = dnsrecords.build_records(spec, settings)
    answers = _lookups(resolver, domain.name, base)
    apex_txt = answers[f"{domain.name} TXT"]
    records = dnsrecords.build_records(spec, settings,
                                       existing_spf=dnsrecords.existing_spf(list(apex_txt.records)))
    results = []
    for record in records:
        answer = answers[f"{record.fqdn(domain.name)} {record.type}"]
        found = list(answer.records)
        if record.purpose == "spf":
            found = [f for f in found if dnsrecords.is_spf(f)]
        elif record.purpose in ("dkim", "dmarc", "mta_sts", "tls_rpt"):
            found = [f for f in found if "=" in f]
        if not answer.definite:
            status = "unknown"
        elif not found:
            status = "missing"
        else:
            status = "ok" if dnsrecords.matches(record, found, domain.name) else "mismatch"
        results.append(_record_dict(record, status, found if answer.definite else None, answer.outcome))
    return results


def _record_dict(record: dnsrecords.Record, status: str, found: list[str] | None, outcome: Outcome | None) -> dict:
    body = {"type": record.type, "host": record.host, "value": record.value, "purpose": record.purpose,
            "required": record.required, "status": status, "found": found}
    if outcome in (Outcome.TIMEOUT, Outcome.SERVFAIL):
        body["detail"] = ("The DNS server did not answer in time; try again." if outcome is Outcome.TIMEOUT
                          else "The DNS server failed (SERVFAIL); try again or check the zone.")
    if record.warnings:
        body["warnings"] = list(record.warnings)
    return body


def check_domain(db: Session, settings: Settings, principal: Principal, name: str,
                 resolver: Resolver | None = None) -> dict:
    """GET …/check/: what DNS says now, record by record. Read-only."""
    domain = get_domain(db, principal, name)
    return {"domain": domain.name, "checked_at": iso(utcnow()),
            "records": run_check(db, settings, domain, resolver)}


def verify_domain(db: Session, settings: Settings, principal: Principal, name: str,
                  resolver: Resolver | None = None) -> Domain:
    """POST …/verify/: a fresh check; the domain is verified when every required record is ok."""
    require_manager(principal)
    domain = get_domain(db, principal, name)
    _require_live_claim(domain)
    dkim.ensure_ed25519_key(db, settings, domain)  # a domain from before migration 0041 gets one
    results = run_check(db, settings, domain, resolver)
    # Lock every claim on the name, in one order and before this transaction writes anything (its
    # own row first would deadlock with a rival's verify): two verifies of one name then run one
    # after the other (on SQLite the write lock already does), and the second sees the first's win.
    db.execute(select(Domain.id).where(Domain.name == domain.name).order_by(Domain.id).with_for_update())
    now = utcnow()
    # The detail (timeout or SERVFAIL) is kept so the domain object can say why a record is unknown.
    domain.dns_results = {f"{r['purpose']}:{r['host']}": {k: r[k] for k in ("status", "found", "detail") if k in r}
                          for r in results}
    domain.dns_checked_at = now
    published = {r["host"].split(".")[0] for r in results if r["purpose"] == "dkim" and r["status"] == "ok"}
    for promoted in dkim.finish_rotation(db, domain.id, published):
        events.emit(db, "domain.dkim_rotated", tenant_id=domain.tenant_id, resource_id=domain.id,
                    actor=principal.id, payload={"selector": promoted.selector, "algorithm": promoted.algorithm})
    dkim.retire_expired(db, domain.id)
    if all(r["status"] == "ok" for r in results if r["required"]) and domain.status != "verified":
        _take_name(db, principal, domain, now)
        db.refresh(domain)
        if domain.status == "lapsed":
            db.commit()  # the lapse (and this check's results) stand; the answer is the refusal
            _require_live_claim(domain)
    return domain


def _take_name(db: Session, principal: Principal, domain: Domain, now: dt.datetime) -> None:
    """Make domain the name's verified holder and lapse the other claims on it; when another
    tenant's claim won first, this one lapses instead. The caller holds the name's claims locked."""
    if db.scalar(select(exists().where(Domain.name == domain.name, Domain.status == "verified",
                                       Domain.id != domain.id))):
        _lapse(db, [domain], now)
        return
    # Conditional update: of two verifies racing, exactly one records the transition.
    won = db.execute(update(Domain).where(Domain.id == domain.id, Domain.status == "pending")
                     .values(status="verified", verified_at=now, expires_at=None)).rowcount == 1
    if won:
        events.emit(db, "domain.verified", tenant_id=domain.tenant_id, resource_id=domain.id,
                    actor=principal.id, payload={"domain": domain.name})
        _lapse(db, list(db.scalars(select(Domain).where(Domain.name == domain.name, Domain.id != domain.id,
                                                        Domain.status == "pending"))), now)


def _lapse(db: Session, claims: list[Domain], now: dt.datetime) -> None:
    """Pending claims whose name another tenant verified: lapsed, each tenant told by an event
    that names neither the winner nor who verified (its actor is the system)."""
    for claim in claims:
        changed = db.execute(update(Domain).where(Domain.id == claim.id, Domain.status == "pending")
                             .values(status="lapsed", lapsed_at=now, expires_at=None)).rowcount
        if changed:  # once per claim, though the loser's own verify may find it lapsed already
            # The appliance's doing, never the winner's: the loser must not learn who verified.
            events.emit(db, "domain.claim_lapsed", tenant_id=claim.tenant_id, resource_id=claim.id,
                        actor=events.SYSTEM, payload={"domain": claim.name})


def rotate_dkim(db: Session, settings: Settings, principal: Principal, name: str) -> Domain:
    require_manager(principal)
    domain = get_domain(db, principal, name)
    _require_live_claim(domain)
    key = dkim.start_rotation(db, settings, domain)
    events.emit(db, "domain.dkim_rotation_started", tenant_id=domain.tenant_id, resource_id=domain.id,
                actor=principal.id, payload={"selector": key.selector})
    return domain


def delete_domain(db: Session, principal: Principal, name: str) -> None:
    require_manager(principal)
    domain = get_domain(db, principal, name)
    if db.scalar(select(exists().where(Inbox.domain_id == domain.id, Inbox.status != "deleted"))):
        raise ConflictError(f"{domain.name} still has active inboxes.", code="domain_in_use",
                            fix="Delete its inboxes first (DELETE /v1/inboxes/{inbox_id}/).")
    for inbox in db.scalars(select(Inbox).where(Inbox.domain_id == domain.id)):
        db.delete(inbox)
    db.flush()
    db.delete(domain)


def _needs_attention(domain: Domain, records: list[dict]) -> bool:
    """A required record is not ok in the last check; the ownership token may go once verified."""
    if domain.dns_checked_at is None:
        return False
    return any(r["required"] and r["status"] != "ok"
               and not (r["purpose"] == "verification" and domain.status == "verified") for r in records)


def domain_to_dict(db: Session, settings: Settings, domain: Domain) -> dict:
    """The contract's domain object; record statuses come from the last verify (unknown before)."""
    spf = (domain.dns_results.get("spf:@") or {}).get("found") or []
    records = dnsrecords.build_records(_spec(db, domain), settings, existing_spf=dnsrecords.existing_spf(spf))
    out = []
    for record in records:
        last = domain.dns_results.get(record.key) or {}
        body = _record_dict(record, last.get("status", "unknown"), last.get("found"), None)
        if last.get("detail"):
            body["detail"] = last["detail"]
        out.append(body)
    status = claim_status(domain)
    return {"domain_id": domain.id, "domain": domain.name, "status": status,
            "domain_use": domain.domain_use, "dmarc_policy": domain.dmarc_policy,
            "created_at": iso(domain.created_at), "verified_at": iso(domain.verified_at),
            "expires_at": iso(domain.expires_at) if status in ("pending", "expired") else None,
            "lapsed_at": iso(domain.lapsed_at),
            "checked_at": iso(domain.dns_checked_at),
            "needs_attention": _needs_attention(domain, out),
            "dns_records": out}


DNS_CHECK_WINDOW = 3600


def count_dns_check(counters: Session, settings: Settings, principal: Principal) -> None:
    """Count one DNS check (verify now, check) against the caller's tenant; 429 once its hour is
    full, so that a loop cannot make the resolver, and the domain's servers, work for it."""
    from appliance.errors import RateLimitedError  # here, not at the top: one hunk of this module
    from appliance.services import ratelimit
    limit = settings.rate_limit_dns_checks
    try:
        ratelimit.hit(counters, f"dns-check:{principal.tenant_id or principal.id}", limit, DNS_CHECK_WINDOW)
    except RateLimitedError as exc:
        raise RateLimitedError(exc.retry_after, f"At most {limit} DNS checks per hour for this account.",
                               fix=f"DNS changes take a while to show; check again in {exc.retry_after} seconds.",
                               headers=exc.headers) from None
    finally:
        counters.commit()  # at once: no request holds the counter while DNS answers
