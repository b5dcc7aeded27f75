"""Labels in the web UI (issue 16): the labels page of an inbox (create with a colour and a type,
rename, recolour, delete with confirmation, message counts), and applying and removing labels on
a message's page. The same service functions as /v1/labels/ and PATCH /v1/messages/{id}/."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from appliance.services.identity.auth import inbox_for
from appliance.services.mail import labels, messages
from webui import bp, current_principal, manager_required
from webui.pages import confirmation
from webui.store import attempt, reading


def colors_of(db, inbox) -> dict[str, str | None]:  # noqa: ANN001
    """name -> colour of every label of the inbox, for chips on the mail pages."""
    page, _ = labels.list_labels(db, inbox, limit=1000)
    return {label.name: label.color for label in page}


def _usable(inbox_id: str) -> None:
    """Another tenant's inbox is a 404 page, before a form's unit of work could flash about it."""
    with reading() as db:
        inbox_for(db, current_principal(), inbox_id)


@bp.route("/admin/mail/<inbox_id>/labels/")
@manager_required
def labels_page(inbox_id: str):  # noqa: ANN201
    with reading() as db:
        inbox = inbox_for(db, current_principal(), inbox_id)
        page, _ = labels.list_labels(db, inbox, limit=1000)
        counted = labels.counts(db, inbox)
        rows = [labels.label_to_dict(label, counted) for label in page]
    return render_template("mail/labels.html", inbox=inbox, rows=rows)


@bp.route("/admin/mail/<inbox_id>/labels/", methods=["POST"])
@manager_required
def label_create(inbox_id: str):  # noqa: ANN201
    _usable(inbox_id)
    form, principal = request.form, current_principal()
    with attempt() as work:
        inbox = inbox_for(work.db, principal, inbox_id)
        label = labels.create_label(work.db, inbox, name=form.get("name", ""), color=form.get("color") or None,
                                    type_=form.get("type", "any"), actor=principal.id)
        name = label.name
    if work.ok:
        flash(f"Created the label “{name}”.", "success")
    return redirect(url_for("webui.labels_page", inbox_id=inbox_id), code=303)


@bp.route("/admin/mail/<inbox_id>/labels/<label_id>/", methods=["POST"])
@manager_required
def label_update(inbox_id: str, label_id: str):  # noqa: ANN201
    _usable(inbox_id)
    form, principal = request.form, current_principal()
    with attempt() as work:
        inbox = inbox_for(work.db, principal, inbox_id)
        labels.update_label(work.db, inbox, label_id, name=form.get("name") or None, color=form.get("color") or None,
                            type_=form.get("type") or None, actor=principal.id)
    if work.ok:
        flash("Saved the label.", "success")
    return redirect(url_for("webui.labels_page", inbox_id=inbox_id), code=303)


@bp.route("/admin/mail/<inbox_id>/labels/<label_id>/delete/", methods=["POST"])
@manager_required
def label_delete(inbox_id: str, label_id: str):  # noqa: ANN201
    principal = current_principal()
    with reading() as db:  # another tenant's label is a 404 page before the question
        name = labels.get_label(db, inbox_for(db, principal, inbox_id), label_id).name
    asked = confirmation(f"Delete the label “{name}”? It is removed from every message and contact of the inbox.",
                         button="Delete")
    if asked is not None:
        return asked
    with attempt() as work:
        labels.delete_label(work.db, inbox_for(work.db, principal, inbox_id), label_id, actor=principal.id)
    if work.ok:
        flash(f"Deleted the label “{name}”.", "success")
    return redirect(url_for("webui.labels_page", inbox_id=inbox_id), code=303)


@bp.route("/admin/mail/<inbox_id>/messages/<message_id>/labels/", methods=["POST"])
@manager_required
def message_labels(inbox_id: str, message_id: str):  # noqa: ANN201
    """Apply (`add`) or remove (`remove`) one label on a message."""
    with reading() as db:  # another tenant's message is a 404 page
        messages.get_message(db, inbox_for(db, current_principal(), inbox_id), message_id)
    principal, add, remove = current_principal(), request.form.get("add", "").strip(), request.form.get("remove")
    with attempt() as work:
        inbox = inbox_for(work.db, principal, inbox_id)
        current = list(messages.get_message(work.db, inbox, message_id).labels or [])
        wanted = [n for n in current if n != remove] + ([add] if add and add not in current else [])
        messages.update_message(work.db, inbox, message_id, labels=wanted, actor=principal.id)
    return redirect(url_for("webui.mail_message", inbox_id=inbox_id, message_id=message_id), code=303)
