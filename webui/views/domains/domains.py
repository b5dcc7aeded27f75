"""Domains for a tenant's owners and admins: add one, the DNS records to publish with a status per
record, verify now, DKIM rotation, delete. The same service functions as /v1/domains/."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from appliance.errors import GentError
from appliance.models import MANAGER_ROLES
from appliance.services.domains import domains
from webui import bp, current_principal, manager_required, nav_item
from webui.pages import confirmation
from webui.store import attempt, counting, reading, settings

nav_item("Domains", "webui.domains_page", order=30, audience="tenant", roles=MANAGER_ROLES)

PURPOSES = {"mx": "Mail exchanger", "spf": "SPF (who may send)", "dkim": "DKIM signing key",
            "dmarc": "DMARC policy", "verification": "Ownership proof", "mta_sts": "MTA-STS",
            "tls_rpt": "TLS reports"}


@bp.route("/admin/domains/")
@manager_required
def domains_page():  # noqa: ANN201
    with reading() as db:
        rows = [domains.domain_to_dict(db, settings(), d) for d in domains.list_domains(db, current_principal())]
    return render_template("domains/index.html", rows=rows, uses=domains.DOMAIN_USES,
                           policies=domains.DMARC_POLICIES)


@bp.route("/admin/domains/", methods=["POST"])
@manager_required
def domain_add():  # noqa: ANN201
    form = request.form
    with attempt() as work:
        name = domains.add_domain(work.db, settings(), current_principal(), form.get("domain", ""),
                                  form.get("domain_use") or "existing_domain", form.get("dmarc_policy") or None).name
    if work.failed:
        return redirect(url_for("webui.domains_page"), code=303)
    flash(f"Added {name}. Publish the records below at your DNS provider, then press Verify now.", "success")
    _verify(name, announce=False)  # a first look at DNS, so each record shows missing / ok at once
    return redirect(url_for("webui.domain_page", name=name), code=303)


@bp.route("/admin/domains/<name>/")
@manager_required
def domain_page(name: str):  # noqa: ANN201
    with reading() as db:
        domain = domains.get_domain(db, current_principal(), name)
        body = domains.domain_to_dict(db, settings(), domain)
    return render_template("domains/detail.html", domain=body, purposes=PURPOSES)


def _verify(name: str, *, announce: bool = True) -> None:
    with attempt() as work:
        with counting() as counters:  # counted (and committed) before DNS is asked, like the API
            domains.count_dns_check(counters, settings(), current_principal())
        domain = domains.verify_domain(work.db, settings(), current_principal(), name)
        body = domains.domain_to_dict(work.db, settings(), domain)
    if work.failed:
        return
    if not announce:
        return
    pending = [r for r in body["dns_records"] if r["required"] and r["status"] != "ok"]
    if body["status"] == "verified" and not pending:
        flash(f"{body['domain']} is verified: every required record is published.", "success")
    else:
        flash(f"{len(pending)} required record(s) of {body['domain']} are not right yet; see the table.", "error")


@bp.route("/admin/domains/<name>/verify/", methods=["POST"])
@manager_required
def domain_verify(name: str):  # noqa: ANN201
    _verify(name)
    return _back_to(name)


@bp.route("/admin/domains/<name>/dkim/rotate/", methods=["POST"])
@manager_required
def domain_rotate_dkim(name: str):  # noqa: ANN201
    name = _own(name)
    asked = confirmation(f"Start a DKIM key rotation for {name}? A new selector is created: publish its "
                         "record, then verify; the old key keeps signing until then.", button="Start rotation")
    if asked is not None:
        return asked
    with attempt() as work:
        domains.rotate_dkim(work.db, settings(), current_principal(), name)
    if work.ok:
        flash("A new DKIM key is ready: publish its record (marked missing below), then press Verify now.",
              "success")
    return _back_to(name)


@bp.route("/admin/domains/<name>/delete/", methods=["POST"])
@manager_required
def domain_delete(name: str):  # noqa: ANN201
    name = _own(name)
    asked = confirmation(f"Delete the domain {name}? Mail to it is refused from then on.", button="Delete domain")
    if asked is not None:
        return asked
    with attempt() as work:
        domains.delete_domain(work.db, current_principal(), name)
    if work.failed:
        return _back_to(name)
    flash(f"Deleted {name}.", "success")
    return redirect(url_for("webui.domains_page"), code=303)


def _own(name: str) -> str:
    """The caller's domain's name as stored; another tenant's is a 404 page (before any question)."""
    with reading() as db:
        return domains.get_domain(db, current_principal(), name).name


def _back_to(name: str):  # noqa: ANN202
    """The domain's page when it is the caller's, else the list (never echo another tenant's name)."""
    try:
        with reading() as db:
            domains.get_domain(db, current_principal(), name)
    except GentError:
        return redirect(url_for("webui.domains_page"), code=303)
    return redirect(url_for("webui.domain_page", name=name), code=303)
