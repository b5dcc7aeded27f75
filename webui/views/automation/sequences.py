"""Follow-up sequences per inbox (issue 20.5): create one with its steps as form rows, see its
enrollments (status, step, how each ended), enroll a contact, cancel an enrollment, delete the
sequence. The same service functions as /v1/sequences/."""
from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from appliance.services.automation import sequences
from appliance.services.identity import inboxes
from appliance.services.workspace import contacts
from webui import bp, current_principal, login_required_page, nav_item
from webui.pages import confirmation, inbox_home
from webui.store import attempt, reading

nav_item("Sequences", "webui.sequences_home", order=44)
STEP_ROWS = 5  # empty rows are left out


@bp.route("/admin/sequences/")
@login_required_page
def sequences_home():  # noqa: ANN201
    """The inboxes, each with its sequences (the only one's shown straight away)."""
    return inbox_home("webui.sequences_page", "sequences/home.html")


@bp.route("/admin/inboxes/<inbox_id>/sequences/")
@login_required_page
def sequences_page(inbox_id: str):  # noqa: ANN201
    principal = current_principal()
    with reading() as db:
        inbox = inboxes.get_inbox(db, principal, inbox_id)
        rows = [sequences.to_dict(db, s) for s in sequences.list_sequences(db, principal, inbox.id)]
    return render_template("sequences/index.html", inbox=inbox, rows=rows, step_rows=range(STEP_ROWS))


def _whole(value: str) -> int | str:
    value = value.strip()
    return int(value) if value.isascii() and value.isdigit() and len(value) < 6 else value


def _steps() -> list[dict]:
    form, steps = request.form, []
    for i in range(STEP_ROWS):
        subject, body = form.get(f"subject_{i}", "").strip(), form.get(f"body_{i}", "")
        if not subject and not body.strip():
            continue
        steps.append({"delay_days": _whole(form.get(f"delay_{i}", "0") or "0"), "subject": subject or None,
                      "body": body})
    return steps


@bp.route("/admin/inboxes/<inbox_id>/sequences/", methods=["POST"])
@login_required_page
def sequence_create(inbox_id: str):  # noqa: ANN201
    with reading() as db:  # another tenant's inbox is a 404 page, before anything else
        inboxes.get_inbox(db, current_principal(), inbox_id)
    with attempt() as work:
        made = sequences.create(work.db, current_principal(), name=request.form.get("name", ""),
                                sender_inbox_id=inbox_id, exit_on_reply=request.form.get("exit_on_reply") == "on",
                                emails=_steps())
        sequence_id = made.id
    if work.failed:
        return redirect(url_for("webui.sequences_page", inbox_id=inbox_id), code=303)
    flash("Created the sequence.", "success")
    return redirect(url_for("webui.sequence_page", sequence_id=sequence_id), code=303)


@bp.route("/admin/sequences/<sequence_id>/")
@login_required_page
def sequence_page(sequence_id: str):  # noqa: ANN201
    principal = current_principal()
    with reading() as db:
        row = sequences.get(db, principal, sequence_id)
        inbox = inboxes.get_inbox(db, principal, row.inbox_id)
        shown = sequences.to_dict(db, row)
        enrolled = [sequences.enrollment_to_dict(e) for e in sequences.list_enrollments(db, principal, sequence_id)]
        people, _ = contacts.list_contacts(db, inbox, limit=500)
        names = {c.id: c.full_name for c in people}
    return render_template("sequences/detail.html", sequence=shown, inbox=inbox, enrollments=enrolled,
                           people=people, names=names)


@bp.route("/admin/sequences/<sequence_id>/enrollments/", methods=["POST"])
@login_required_page
def sequence_enroll(sequence_id: str):  # noqa: ANN201
    with reading() as db:
        sequences.get(db, current_principal(), sequence_id)
    with attempt() as work:
        sequences.enroll(work.db, current_principal(), sequence_id, request.form.get("contact_id", ""))
    if work.ok:
        flash("Enrolled the contact: the first step goes out at its time.", "success")
    return redirect(url_for("webui.sequence_page", sequence_id=sequence_id), code=303)


@bp.route("/admin/sequences/<sequence_id>/enrollments/<enrollment_id>/cancel/", methods=["POST"])
@login_required_page
def sequence_cancel_enrollment(sequence_id: str, enrollment_id: str):  # noqa: ANN201
    with reading() as db:
        sequences.get_enrollment(db, current_principal(), sequence_id, enrollment_id)
    with attempt() as work:
        sequences.cancel(work.db, current_principal(), sequence_id, enrollment_id)
    if work.ok:
        flash("Cancelled the enrollment: no further step is sent.", "success")
    return redirect(url_for("webui.sequence_page", sequence_id=sequence_id), code=303)


@bp.route("/admin/sequences/<sequence_id>/delete/", methods=["POST"])
@login_required_page
def sequence_delete(sequence_id: str):  # noqa: ANN201
    with reading() as db:
        row = sequences.get(db, current_principal(), sequence_id)
        name, inbox_id = row.name, row.inbox_id
    asked = confirmation(f"Delete the sequence “{name}”? Its active enrollments are cancelled.", button="Delete")
    if asked is not None:
        return asked
    with attempt() as work:
        sequences.delete(work.db, current_principal(), sequence_id)
    if work.ok:
        flash("Deleted the sequence.", "success")
    return redirect(url_for("webui.sequences_page", inbox_id=inbox_id), code=303)
