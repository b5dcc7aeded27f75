"""Sender rules and forwarding per inbox (issue 20.3, 20.4): who may write to the inbox and whom it
may write to (open, allowlist or blocklist, one pattern a line), and where it forwards what it
receives. The same service functions as /v1/sender-rules/ and /v1/forwarding/."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from appliance.services.identity import inboxes
from appliance.services.mail import forwarding, sender_rules
from webui import bp, current_principal, login_required_page, nav_item
from webui.pages import inbox_home
from webui.store import attempt, reading

nav_item("Sender rules", "webui.sender_rules_home", order=43)


@bp.route("/admin/sender-rules/")
@login_required_page
def sender_rules_home():  # noqa: ANN201
    """The inboxes, each with its sender rules and forwarding (the only one's shown straight away)."""
    return inbox_home("webui.sender_rules_page", "sender_rules/home.html")


@bp.route("/admin/inboxes/<inbox_id>/sender-rules/")
@login_required_page
def sender_rules_page(inbox_id: str):  # noqa: ANN201
    principal = current_principal()
    with reading() as db:
        inbox = inboxes.get_inbox(db, principal, inbox_id)
        rules = sender_rules.get_rules(db, principal, inbox.id)
        forward = forwarding.get_forwarding(db, principal, inbox.id)
    return render_template("sender_rules/index.html", inbox=inbox, rules=rules, forward=forward)


def _lines(name: str) -> list[str]:
    return [line.strip() for line in request.form.get(name, "").splitlines() if line.strip()]


@bp.route("/admin/inboxes/<inbox_id>/sender-rules/", methods=["POST"])
@login_required_page
def sender_rules_save(inbox_id: str):  # noqa: ANN201
    with reading() as db:  # another tenant's inbox is a 404 page, before anything else
        inboxes.get_inbox(db, current_principal(), inbox_id)
    form = request.form
    data = {"inbound_mode": form.get("inbound_mode", "open"), "outbound_mode": form.get("outbound_mode", "open"),
            "inbound_patterns": _lines("inbound_patterns"), "outbound_patterns": _lines("outbound_patterns")}
    with attempt() as work:
        sender_rules.put_rules(work.db, current_principal(), inbox_id, data)
    if work.ok:
        flash("Saved the sender rules.", "success")
    return redirect(url_for("webui.sender_rules_page", inbox_id=inbox_id), code=303)


@bp.route("/admin/inboxes/<inbox_id>/forwarding/", methods=["POST"])
@login_required_page
def forwarding_save(inbox_id: str):  # noqa: ANN201
    with reading() as db:
        inboxes.get_inbox(db, current_principal(), inbox_id)
    form = request.form
    data = {"default_address": form.get("default_address", "").strip() or None,
            "enabled": form.get("enabled") == "on", "keep_copy": form.get("keep_copy") == "on"}
    with attempt() as work:
        forwarding.put_forwarding(work.db, current_principal(), inbox_id, data)
    if work.ok:
        flash("Saved the forwarding.", "success")
    return redirect(url_for("webui.sender_rules_page", inbox_id=inbox_id), code=303)
