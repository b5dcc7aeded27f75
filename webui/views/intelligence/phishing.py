"""The message page's "this is phishing / not phishing" buttons (issue 21 point 7): the same
service as POST /v1/messages/{id}/phishing/, which teaches the tenant's naive Bayes model. The
verdict, its reasons, the banner and the next-step chips are drawn by mail/_enrichment.html."""
from __future__ import annotations

from flask import flash, redirect, request, url_for

from appliance.services.identity.auth import inbox_for
from appliance.services.intelligence import enrich
from appliance.services.mail import messages
from webui import bp, current_principal, login_required_page
from webui.store import attempt, reading

SAID = {"phishing": "Marked as phishing: this tenant's filter learned it.",
        "safe": "Marked as not phishing: this tenant's filter learned it."}


@bp.route("/admin/mail/<inbox_id>/messages/<message_id>/phishing/", methods=["POST"])
@login_required_page  # whoever may read the message may say what it is
def mail_mark_phishing(inbox_id: str, message_id: str):  # noqa: ANN201
    principal, mark = current_principal(), request.form.get("mark", "")
    with reading() as db:  # another tenant's message is a 404 page, before the form's flash
        messages.get_message(db, inbox_for(db, principal, inbox_id), message_id)
    with attempt() as work:
        inbox = inbox_for(work.db, principal, inbox_id)
        enrich.mark_message(work.db, inbox, message_id, mark, actor=principal.id)
    if work.ok:
        flash(SAID[mark], "success")
    return redirect(url_for("webui.mail_message", inbox_id=inbox_id, message_id=message_id), code=303)
