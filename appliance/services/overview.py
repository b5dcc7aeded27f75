"""The dashboard's figures: the queue of a tenant or of the whole box, the domains that need their
owner, and the health checks cheap enough to run on every page view (the rest stay behind a
button: DNS and port probes wait for their time limits)."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from appliance import doctor
from appliance.clock import utcnow
from appliance.config import Settings
from appliance.db import Store
from appliance.dns import Resolver
from appliance.models import OutboundQueue
from appliance.services.domains import domains
from appliance.services.identity.auth import Principal

WAITING = ("queued", "deferred", "delivering")
QUICK_CHECKS = (doctor.check_processes, doctor.check_queue, doctor.check_disk, doctor.check_certificate)


@dataclass(frozen=True)
class QueueFigures:
    waiting: int  # rows not delivered yet (queued, deferred or being delivered)
    deferred: int
    oldest_deferred_at: dt.datetime | None


def queue_figures(db: Session, tenant_id: str | None) -> QueueFigures:
    """The outbound queue of one tenant, or of the whole box when tenant_id is None."""
    scope = [] if tenant_id is None else [OutboundQueue.tenant_id == tenant_id]
    waiting, deferred, oldest = db.execute(
        select(func.count(), func.count().filter(OutboundQueue.status == "deferred"),
               func.min(OutboundQueue.created_at).filter(OutboundQueue.status == "deferred"))
        .where(OutboundQueue.status.in_(WAITING), *scope)).one()
    return QueueFigures(waiting, deferred, oldest)


def domains_needing_attention(db: Session, settings: Settings, principal: Principal) -> list[dict]:
    """The tenant's domains not verified yet, or whose last check found a required record wrong,
    as domain objects with a `reason`."""
    out = []
    for domain in domains.list_domains(db, principal):
        body = domains.domain_to_dict(db, settings, domain)
        wrong = [r["purpose"] for r in body["dns_records"] if r["required"] and r["status"] not in ("ok", "unknown")]
        if body["status"] != "verified":
            body["reason"] = "not verified yet" + (f": {', '.join(wrong)} not right" if wrong else "")
        elif body["needs_attention"]:
            body["reason"] = f"the last check found {', '.join(wrong) or 'a record'} not right"
        else:
            continue
        out.append(body)
    return out


def failing_alerts(db: Session, principal: Principal) -> list[dict]:
    """The tenant's alerts whose deliveries are failing, or that were disabled for failing (issue
    15), as alert objects."""
    from appliance.services.automation import alerts  # the dashboard's only use of alerts
    return [alerts.alert_to_dict(a) for a in alerts.failing_alerts(db, principal.tenant_id)]


def quick_checks(store: Store, settings: Settings, now: dt.datetime | None = None) -> list[doctor.Check]:
    """The doctor's checks that only read the store, the disk and files: processes, queue, disk,
    certificate. `doctor.run_checks` runs them all."""
    ctx = doctor.Context(store, settings, Resolver(settings), now or utcnow())
    checks: list[doctor.Check] = []
    for check in QUICK_CHECKS:
        checks.extend(check(ctx))
    return checks
