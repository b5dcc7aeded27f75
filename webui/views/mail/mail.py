"""Mail: each inbox's messages (newest first, search, cursor pages) and one message: headers, text,
its sanitised HTML in a sandboxed frame, attachments, the raw download, authentication results
and, for sent mail, the delivery status per recipient. The same services as /v1/messages/.

The HTML of a message is never part of the page: the page frames it (<iframe sandbox>, no
allow-scripts, no allow-same-origin) from a route of its own whose Content-Security-Policy lets
nothing load or run (`sandboxed_html`), so a message can neither script nor call out."""
from __future__ import annotations

from flask import Response, g, redirect, render_template, request, url_for

from appliance.errors import ValidationError
from appliance.httputil import content_disposition
from appliance.services.identity import inboxes
from appliance.services.identity.auth import inbox_for
from appliance.services.mail import messages
from webui import bp, current_principal, login_required_page, nav_item
from webui.store import reading, writing
from webui.views.mail.labels import colors_of
from webui.views.team.threads import thread_panel

nav_item("Mail", "webui.mail", order=40)  # members see the inboxes granted to them
PAGE_SIZE = 50
# What the framed HTML may do: show itself and its inline styles and data: images. No scripts,
# no fetches, no remote images, fonts, forms or frames; framed by this site only.
FRAME_CSP = {"default-src": "'none'", "script-src": "'none'", "style-src": "'unsafe-inline'",
             "img-src": "data: cid:", "font-src": "'none'", "connect-src": "'none'", "form-action": "'none'",
             "frame-src": "'none'", "frame-ancestors": "'self'", "base-uri": "'none'", "sandbox": ""}
FRAME_STYLE = ("body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;line-height:1.5;"
               "margin:.75rem;color:#142033;overflow-wrap:anywhere}img{max-width:100%;height:auto}"
               "table{max-width:100%}pre{white-space:pre-wrap}")


def sandboxed_html(html: str) -> Response:
    """An already sanitised HTML body as a document for a sandboxed frame, under FRAME_CSP."""
    g.csp = FRAME_CSP
    document = (f'<!doctype html><html><head><meta charset="utf-8"><base target="_blank">'
                f"<style>{FRAME_STYLE}</style></head><body>{html}</body></html>")
    resp = Response(document, mimetype="text/html")
    resp.headers["X-Frame-Options"] = "SAMEORIGIN"  # the page that frames it is ours
    return resp


def framing_page() -> None:
    """The page shows a frame of this site (the message's HTML route)."""
    g.csp = {"frame-src": "'self'"}


@bp.route("/admin/mail/")
@login_required_page  # members too: the services show them only the inboxes granted to them
def mail():  # noqa: ANN201
    principal = current_principal()
    with reading() as db:
        rows = inboxes.list_inboxes(db, principal, after=None, limit=500)
        counts = inboxes.counts(db, [i.id for i in rows])
    if len(rows) == 1:
        return redirect(url_for("webui.mail_inbox", inbox_id=rows[0].id))
    return render_template("mail/index.html", inboxes=rows, counts=counts)


@bp.route("/admin/mail/<inbox_id>/")
@login_required_page
def mail_inbox(inbox_id: str):  # noqa: ANN201
    q = request.args.get("q", "").strip()
    cursor = request.args.get("cursor") or None
    if len(q) > 500:
        raise ValidationError("q: at most 500 characters", field="q")
    with reading() as db:
        inbox = inbox_for(db, current_principal(), inbox_id)
        page, after = messages.list_messages(db, inbox, limit=PAGE_SIZE, cursor=cursor, q=q or None)
        zone = messages.zone_of(inbox)
        rows = [messages.message_to_summary(m, zone) for m in page]
        colors = colors_of(db, inbox)
    return render_template("mail/inbox.html", inbox=inbox, rows=rows, q=q, cursor=after, paged=bool(cursor),
                           colors=colors)


def _message(inbox_id: str, message_id: str):  # noqa: ANN202
    """The inbox and one of its messages as the API renders it. Not marked read: a GET changes
    nothing (link scanners and prefetchers open pages too); the page marks it read by a POST."""
    with reading() as db:
        inbox = inbox_for(db, current_principal(), inbox_id)
        message = messages.get_message(db, inbox, message_id)
        full = messages.render_full(db, [message], messages.zone_of(inbox))[0]
        full["label_colors"] = colors_of(db, inbox)  # the page's label chips and its picker
        full["team"] = thread_panel(db, inbox, message.thread_id)  # notes and assignment (issue 16)
        db.expunge(inbox)
    return inbox, full


@bp.route("/admin/mail/<inbox_id>/messages/<message_id>/")
@login_required_page
def mail_message(inbox_id: str, message_id: str):  # noqa: ANN201
    inbox, full = _message(inbox_id, message_id)
    framing_page()
    return render_template("mail/message.html", inbox=inbox, m=full,
                           body_url=url_for("webui.mail_message_body", inbox_id=inbox_id, message_id=message_id))


@bp.route("/admin/mail/<inbox_id>/messages/<message_id>/body/")
@login_required_page
def mail_message_body(inbox_id: str, message_id: str):  # noqa: ANN201
    with reading() as db:
        message = messages.get_message(db, inbox_for(db, current_principal(), inbox_id), message_id)
        html = message.html_body
    return sandboxed_html(html)


@bp.route("/admin/mail/<inbox_id>/messages/<message_id>/read/", methods=["POST"])
@login_required_page
def mail_mark_read(inbox_id: str, message_id: str):  # noqa: ANN201
    """Mark read: the message page's script posts here once it has loaded (or the button does)."""
    principal = current_principal()
    with writing() as db:
        inbox = inbox_for(db, principal, inbox_id)
        messages.update_message(db, inbox, message_id, is_read=True, actor=principal.id)
    if request.accept_mimetypes.best == "application/json":
        return Response(status=204)
    return redirect(url_for("webui.mail_message", inbox_id=inbox_id, message_id=message_id), code=303)


@bp.route("/admin/mail/<inbox_id>/messages/<message_id>/unread/", methods=["POST"])
@login_required_page
def mail_mark_unread(inbox_id: str, message_id: str):  # noqa: ANN201
    principal = current_principal()
    with writing() as db:
        inbox = inbox_for(db, principal, inbox_id)
        messages.update_message(db, inbox, message_id, is_read=False, actor=principal.id)
    return redirect(url_for("webui.mail_inbox", inbox_id=inbox_id), code=303)


@bp.route("/admin/mail/<inbox_id>/messages/<message_id>/raw/")
@login_required_page
def mail_message_raw(inbox_id: str, message_id: str):  # noqa: ANN201
    with reading() as db:
        raw = messages.get_raw(db, inbox_for(db, current_principal(), inbox_id), message_id)
    g.csp = {"default-src": "'none'", "sandbox": ""}
    return Response(raw, mimetype="message/rfc822",
                    headers={"Content-Disposition": content_disposition(f"{message_id}.eml")})


@bp.route("/admin/mail/<inbox_id>/messages/<message_id>/attachments/<attachment_id>/")
@login_required_page
def mail_attachment(inbox_id: str, message_id: str, attachment_id: str):  # noqa: ANN201
    with reading() as db:
        inbox = inbox_for(db, current_principal(), inbox_id)
        attachment = messages.get_attachment(db, inbox, message_id, attachment_id)
        content, filename, kind = messages.attachment_bytes(db, attachment), attachment.filename, attachment.content_type
    g.csp = {"default-src": "'none'", "sandbox": ""}  # opened anyway (HTML, SVG): it runs and loads nothing
    return Response(content, headers={"Content-Type": messages.safe_content_type(kind),
                                      "Content-Disposition": content_disposition(filename)})
