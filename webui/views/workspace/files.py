"""Files per inbox (issue 19): folders, upload, versions, signed links, delete, and "save to files"
on a message's attachment. The same service functions as /v1/files/; an upload is read from the
form's spooled file in pieces into the blob store, as the API's multipart route does."""
from __future__ import annotations

from flask import Response, flash, g, redirect, render_template, request, url_for

from appliance.services.identity import inboxes
from appliance.services.identity.auth import inbox_for
from appliance.services.mail.messages import safe_content_type
from appliance.services.workspace import blobs, files
from appliance.errors import ValidationError
from appliance.httputil import content_disposition
from webui import bp, current_principal, login_required_page, nav_item
from webui.pages import confirmation, inbox_home
from webui.store import attempt, reading, settings, store

nav_item("Files", "webui.files_home", order=43)
PAGE = 200
PIECE = 256 * 1024
LINK_CHOICES = ((3600, "1 hour"), (86400, "1 day"), (7 * 86400, "7 days"))


def _upload_limit() -> None:
    """An upload form may carry a file up to files_max_bytes: raised before the CSRF check reads
    the form (werkzeug spools the file part to a temporary file, never to memory)."""
    if request.endpoint == "webui.files_upload":
        request.max_content_length = settings().files_max_bytes + 1024 * 1024


bp.before_request_funcs.setdefault(None, []).insert(0, _upload_limit)


@bp.route("/admin/files/")
@login_required_page
def files_home():  # noqa: ANN201
    """The inboxes, each with its files (the only one's shown straight away)."""
    return inbox_home("webui.files_page", "files/home.html")


@bp.route("/admin/inboxes/<inbox_id>/files/")
@login_required_page
def files_page(inbox_id: str):  # noqa: ANN201
    principal = current_principal()
    folder_id = request.args.get("folder") or None
    with reading() as db:
        inbox = inboxes.get_inbox(db, principal, inbox_id)
        folder = files.get_folder(db, principal, folder_id, inbox.id) if folder_id else None
        subfolders = files.list_folders(db, principal, inbox.id, folder.id if folder else "root")
        rows = files.list_files(db, principal, inbox.id, folder_id=folder.id if folder else "root", limit=PAGE)
        trail = _trail(db, folder)
    return render_template("files/index.html", inbox=inbox, folder=folder, trail=trail,
                           folders=[files.folder_to_dict(f) for f in subfolders],
                           rows=[files.file_to_dict(f) for f in rows], types=files.FILE_TYPES)


def _trail(db, folder) -> list[dict]:  # noqa: ANN001 - the folders from the top down to this one
    out = []
    while folder is not None:
        out.insert(0, files.folder_to_dict(folder))
        folder = db.get(type(folder), folder.parent_key) if folder.parent_key else None
    return out


def _known(inbox_id: str) -> None:
    """Another tenant's inbox is a 404 page, before anything else."""
    with reading() as db:
        inboxes.get_inbox(db, current_principal(), inbox_id)


def _back(inbox_id: str, folder_id: str | None) -> Response:
    return redirect(url_for("webui.files_page", inbox_id=inbox_id, folder=folder_id or None), code=303)


@bp.route("/admin/inboxes/<inbox_id>/files/upload/", methods=["POST"])
@login_required_page
def files_upload(inbox_id: str):  # noqa: ANN201
    _known(inbox_id)
    folder_id = request.form.get("folder_id") or None
    upload = request.files.get("file")
    with attempt() as work:
        inbox = inbox_for(work.db, current_principal(), inbox_id)
        if upload is None or not upload.filename:
            raise ValidationError("Choose a file to upload.", field="file")
        pieces = iter(lambda: upload.stream.read(PIECE), b"")
        file = files.upload_file(work.db, settings(), current_principal(), inbox, pieces, name=upload.filename,
                                 content_type=upload.mimetype, file_type=request.form.get("file_type") or None,
                                 folder_id=folder_id)
        name = file.name
    if work.ok:
        flash(f"Uploaded “{name}”.", "success")
    return _back(inbox_id, folder_id)


@bp.route("/admin/inboxes/<inbox_id>/files/folders/", methods=["POST"])
@login_required_page
def files_folder_create(inbox_id: str):  # noqa: ANN201
    _known(inbox_id)
    parent_id = request.form.get("parent_id") or None
    with attempt() as work:
        inbox = inbox_for(work.db, current_principal(), inbox_id)
        files.create_folder(work.db, current_principal(), inbox, request.form.get("name", ""), parent_id)
    if work.ok:
        flash("Created the folder.", "success")
    return _back(inbox_id, parent_id)


def _own(file_id: str):  # noqa: ANN202
    """The caller's file, its versions and its inbox; another tenant's file is a 404 page."""
    with reading() as db:
        file = files.get_file(db, current_principal(), file_id)
        return file, files.list_versions(db, file), inboxes.get_inbox(db, current_principal(), file.inbox_id)


@bp.route("/admin/files/<file_id>/")
@login_required_page
def file_page(file_id: str):  # noqa: ANN201
    file, versions, inbox = _own(file_id)
    return render_template("files/detail.html", file=files.file_to_dict(file), inbox=inbox,
                           versions=[files.version_to_dict(v) for v in reversed(versions)], choices=LINK_CHOICES)


@bp.route("/admin/files/<file_id>/content/")
@login_required_page
def file_content(file_id: str):  # noqa: ANN201
    version = request.args.get("version", "")
    with reading() as db:
        file = files.get_file(db, current_principal(), file_id)
        row = files.get_version(db, file, int(version) if version.isascii() and version.isdigit()
                                and len(version) < 8 else None)
        name, kind, blob_id, size = file.name, row.content_type, row.blob_id, row.size
    source = store()
    g.csp = {"default-src": "'none'", "sandbox": ""}  # opened anyway (HTML, SVG): it runs and loads nothing

    def stream():  # noqa: ANN202 - its own session: the request's has closed when this runs
        with source.read_sessions() as db:
            yield from blobs.iter_range(db, blob_id, 0, None)
    return Response(stream(), headers={"Content-Type": safe_content_type(kind), "Content-Length": str(size),
                                       "Content-Disposition": content_disposition(name)}, direct_passthrough=True)


@bp.route("/admin/files/<file_id>/link/", methods=["POST"])
@login_required_page
def file_link(file_id: str):  # noqa: ANN201
    _own(file_id)
    seconds = request.form.get("expires_in", "")
    with attempt() as work:
        file = files.get_file(work.db, current_principal(), file_id)
        link = files.create_link(settings(), file, int(seconds) if seconds.isdigit() and len(seconds) < 8 else 0)
    if work.ok:
        flash(f"Signed link (until {link['expires_at']}): {link['url']}", "success")
    return redirect(url_for("webui.file_page", file_id=file_id), code=303)


@bp.route("/admin/files/<file_id>/delete/", methods=["POST"])
@login_required_page
def file_delete(file_id: str):  # noqa: ANN201
    file, _, inbox = _own(file_id)
    asked = confirmation(f"Delete “{file.name}” with every version? Its links stop working.", button="Delete")
    if asked is not None:
        return asked
    with attempt() as work:
        files.delete_file(work.db, current_principal(), files.get_file(work.db, current_principal(), file_id))
    if work.ok:
        flash("Deleted the file.", "success")
        return _back(inbox.id, file.folder_id)
    return redirect(url_for("webui.file_page", file_id=file_id), code=303)


@bp.route("/admin/mail/<inbox_id>/messages/<message_id>/attachments/<attachment_id>/save/", methods=["POST"])
@login_required_page
def files_promote(inbox_id: str, message_id: str, attachment_id: str):  # noqa: ANN201
    """"Save to files": the attachment becomes a file of the inbox, its bytes stored once."""
    _known(inbox_id)
    with attempt() as work:
        principal = current_principal()
        inbox = inbox_for(work.db, principal, inbox_id)
        content = files.content_from(work.db, settings(), inbox, source_message_id=message_id,
                                     attachment_id=attachment_id)
        file = files.create_file(work.db, settings(), principal, inbox, content, name=None, file_type="other")
        file_id, name = file.id, file.name
    if work.failed:
        return redirect(url_for("webui.mail_message", inbox_id=inbox_id, message_id=message_id), code=303)
    flash(f"Saved “{name}” to the inbox's files.", "success")
    return redirect(url_for("webui.file_page", file_id=file_id), code=303)
