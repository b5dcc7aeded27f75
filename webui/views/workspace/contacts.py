"""Contacts per inbox (issue 17): search, create and edit (addresses, phones, labels, dates),
delete with confirmation, import and export of a .vcf file, and the share offers other inboxes
sent, with Accept and Decline. The same service functions as /v1/contacts/."""
from __future__ import annotations

from flask import Response, flash, redirect, render_template, request, url_for

from appliance.errors import ValidationError
from appliance.httputil import content_disposition
from appliance.models import MANAGER_ROLES
from appliance.services.identity.auth import inbox_for
from appliance.services.workspace import contact_shares, contacts, vcards
from webui import bp, current_principal, manager_required, nav_item
from webui.pages import confirmation, inbox_home
from webui.store import attempt, reading

nav_item("Contacts", "webui.contacts_home", order=41, audience="tenant", roles=MANAGER_ROLES)
PAGE = 50


@bp.route("/admin/contacts/")
@manager_required
def contacts_home():  # noqa: ANN201
    """The inboxes, each with its contacts page (the only one's shown at once)."""
    return inbox_home("webui.contacts_page", "contacts/home.html")


@bp.route("/admin/inboxes/<inbox_id>/contacts/")
@manager_required
def contacts_page(inbox_id: str):  # noqa: ANN201
    q, label = request.args.get("q", "").strip(), request.args.get("label", "").strip()
    position = request.args.get("position", "0")
    if len(q) > 200 or len(label) > 100 or not (position.isascii() and position.isdigit()):
        raise ValidationError("q, label or position is out of range", field="q")
    with reading() as db:
        inbox = inbox_for(db, current_principal(), inbox_id)
        rows, total = contacts.list_contacts(db, inbox, q=q or None, label=label or None,
                                             position=int(position), limit=PAGE)
        shown = contacts.render_contacts(db, rows)
        offers = contacts.pending_agenda_items(db, inbox.id)
    return render_template("contacts/index.html", inbox=inbox, rows=shown, total=total, q=q, label=label,
                           position=int(position), page=PAGE, offers=offers)


def _lines(name: str, key: str) -> list[dict]:
    """A textarea of `label: value` lines (the label optional) as [{label, key}]."""
    out = []
    for line in request.form.get(name, "").splitlines():
        label, sep, value = line.rpartition(": ") if ": " in line else ("", "", line)
        if value.strip():
            out.append({"label": label.strip(), key: value.strip()})
    return out


def _form() -> dict:
    form = request.form
    return {"full_name": form.get("full_name", "").strip()[:200], "company": form.get("company", "").strip()[:200],
            "notes": form.get("notes", "")[:20_000], "emails": _lines("emails", "address"),
            "phones": _lines("phones", "number"),
            "labels": [n.strip()[:100] for n in form.get("labels", "").split(",") if n.strip()],
            "anniversaries": [{"type": a["label"] or "birthday", "date": a["date"]}
                              for a in _lines("anniversaries", "date")]}


def _own(inbox_id: str) -> None:
    """Another tenant's inbox is a 404 page, before anything else (no redirect naming it)."""
    with reading() as db:
        inbox_for(db, current_principal(), inbox_id)


@bp.route("/admin/inboxes/<inbox_id>/contacts/", methods=["POST"])
@manager_required
def contact_create(inbox_id: str):  # noqa: ANN201
    _own(inbox_id)
    with attempt() as work:
        inbox = inbox_for(work.db, current_principal(), inbox_id)
        contact = contacts.create_contact(work.db, inbox, _form(), actor=current_principal().id)
        name = contact.full_name
    if work.ok:
        flash(f"Created the contact {name}.", "success")
    return redirect(url_for("webui.contacts_page", inbox_id=inbox_id), code=303)


@bp.route("/admin/inboxes/<inbox_id>/contacts/<contact_id>/")
@manager_required
def contact_page(inbox_id: str, contact_id: str):  # noqa: ANN201
    with reading() as db:
        inbox = inbox_for(db, current_principal(), inbox_id)
        contact = contacts.contact_to_dict(db, contacts.get_contact(db, inbox, contact_id), detail=True)
    return render_template("contacts/detail.html", inbox=inbox, c=contact)


@bp.route("/admin/inboxes/<inbox_id>/contacts/<contact_id>/", methods=["POST"])
@manager_required
def contact_update(inbox_id: str, contact_id: str):  # noqa: ANN201
    with reading() as db:  # another tenant's (or inbox's) contact is a 404 page
        contacts.get_contact(db, inbox_for(db, current_principal(), inbox_id), contact_id)
    with attempt() as work:
        inbox = inbox_for(work.db, current_principal(), inbox_id)
        contacts.update_contact(work.db, inbox, contact_id, _form(), actor=current_principal().id)
    if work.ok:
        flash("Saved the contact.", "success")
    return redirect(url_for("webui.contact_page", inbox_id=inbox_id, contact_id=contact_id), code=303)


@bp.route("/admin/inboxes/<inbox_id>/contacts/<contact_id>/delete/", methods=["POST"])
@manager_required
def contact_delete(inbox_id: str, contact_id: str):  # noqa: ANN201
    with reading() as db:  # another tenant's contact is a 404 page, before any question
        name = contacts.get_contact(db, inbox_for(db, current_principal(), inbox_id), contact_id).full_name
    asked = confirmation(f"Delete the contact {name}? Its planned anniversaries are dropped too.", button="Delete")
    if asked is not None:
        return asked
    with attempt() as work:
        inbox = inbox_for(work.db, current_principal(), inbox_id)
        contacts.delete_contact(work.db, inbox, contact_id, actor=current_principal().id)
    if work.ok:
        flash(f"Deleted the contact {name}.", "success")
    return redirect(url_for("webui.contacts_page", inbox_id=inbox_id), code=303)


@bp.route("/admin/inboxes/<inbox_id>/contacts/import/", methods=["POST"])
@manager_required
def contacts_import(inbox_id: str):  # noqa: ANN201
    _own(inbox_id)
    upload = request.files.get("file")
    data = upload.read() if upload is not None else b""
    with attempt() as work:
        inbox = inbox_for(work.db, current_principal(), inbox_id)
        if not data:
            raise ValidationError("Choose a .vcf file to import.", field="file")
        result = vcards.import_vcards(work.db, inbox, data, actor=current_principal().id)
    if work.ok:
        flash(f"Imported: {result['created']} created, {result['updated']} updated, {result['skipped']} unchanged.",
              "success")
        for error in result["errors"][:20]:
            flash(f"Card {error['index'] + 1} was not imported: {error['message']}", "error")
    return redirect(url_for("webui.contacts_page", inbox_id=inbox_id), code=303)


@bp.route("/admin/inboxes/<inbox_id>/contacts/export.vcf")
@manager_required
def contacts_export(inbox_id: str):  # noqa: ANN201
    with reading() as db:
        inbox = inbox_for(db, current_principal(), inbox_id)
        body = vcards.export_vcards(db, inbox)
    return Response(body.encode("utf-8"), mimetype="text/vcard", headers={
        "Content-Disposition": content_disposition(f"{inbox.address}.vcf"), "X-Content-Type-Options": "nosniff"})


@bp.route("/admin/inboxes/<inbox_id>/contacts/shares/<share_id>/<verb>/", methods=["POST"])
@manager_required
def contact_share_answer(inbox_id: str, share_id: str, verb: str):  # noqa: ANN201
    if verb not in ("accept", "decline"):
        raise ValidationError("accept or decline", field="verb")
    answer = contact_shares.accept_share if verb == "accept" else contact_shares.decline_share
    _own(inbox_id)
    with attempt() as work:
        inbox = inbox_for(work.db, current_principal(), inbox_id)
        answer(work.db, inbox, share_id, actor=current_principal().id)
    if work.ok:
        flash("Accepted the card: it is in this inbox's contacts now." if verb == "accept"
              else "Declined the share.", "success")
    return redirect(url_for("webui.contacts_page", inbox_id=inbox_id), code=303)
