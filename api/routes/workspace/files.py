"""Contract section 13, files (issue 19): files, versions, folders, signed links, spreadsheet rows.

Files belong to one inbox: agent tokens act on their own inbox's, sessions name the inbox
(inbox_id). JSON creates take `content_base64`, `text`, or `source_message_id` + `attachment_id`;
**(Gentbox)** a multipart/form-data upload goes to `POST /v1/files/upload/` (a new version of a
file: `POST /v1/files/{id}/upload/`), whose body is streamed into the blob store part by part and
never read whole, with the other fields in the query string. Downloads carry `nosniff`, a sandbox
CSP and an RFC 6266 `filename*`; signed links (`/download/`) need no token and take Range.
The rules live in appliance/services/workspace/ (files, blobs, sheets).
"""
from __future__ import annotations

import tempfile
from typing import IO, Any, Iterator, Literal

from flask import Blueprint, Response, current_app, request
from pydantic import BaseModel, ConfigDict, Field
from werkzeug.routing import BaseConverter
from werkzeug.sansio.multipart import Data, Epilogue, File as FilePart, MultipartDecoder, NeedData

from api.framework import PUBLIC, STREAMED, Ctx, PlainText, Reply, StrictModel, endpoint, scope
from appliance.errors import InvalidRequestError, PayloadTooLargeError, ValidationError
from appliance.httputil import content_disposition
from appliance.services.identity.auth import inbox_for
from appliance.services.mail.messages import safe_content_type
from appliance.services.workspace import blobs, files, sheets

bp = Blueprint("files", __name__)


class FileIdConverter(BaseConverter):
    """A file id segment: anything but the fixed paths beside it (folders, upload), so those
    neither reach a file's view nor advertise its methods in their Allow header."""

    regex = r"(?!(?:folders|upload)\Z)[^/]+"
    part_isolating = True


bp.record_once(lambda state: state.app.url_map.converters.setdefault("file_id", FileIdConverter))
READ, WRITE = scope("files:read"), scope("files:write")
FileType = Literal["spreadsheet", "document", "image", "video", "template", "skill", "other"]
FILE_ID = r"^fil_[0-9A-HJKMNP-TV-Z]{26}$"
ROW_ID = r"^row_[0-9A-HJKMNP-TV-Z]{26}$"
NAME = Field(None, max_length=1000, description="A display name, not a path: control and bidi characters are removed, "
                                          "/ and \\ become _, and it is cut to 255 characters (extension kept).")
READ_PIECE = 256 * 1024
BASE64 = r"^[A-Za-z0-9+/]*={0,2}$"


def _json_max(settings) -> int:  # noqa: ANN001
    """JSON bodies carry base64 (4/3 of the bytes): up to the file limit, never past 64 MiB."""
    return max(settings.max_body_bytes, min(settings.files_max_bytes * 4 // 3 + 65536, 64 * 1024 * 1024))


class FileCreate(StrictModel):
    name: PlainText | None = Field(None, max_length=1000, description="Required, except when promoting an "
                                   "attachment (its file name is the default).")
    file_type: FileType = "other"
    folder_id: str | None = Field(None, max_length=40)
    content_base64: str | None = Field(None, pattern=BASE64, description="The bytes, base64 (standard alphabet, "
                                                                          "padded, no line breaks).")
    text: str | None = Field(None, description="UTF-8 text content.", json_schema_extra={"x-multiline": True})
    source_message_id: str | None = Field(None, max_length=40, description="Promote an attachment of this message.")
    attachment_id: str | None = Field(None, max_length=40)
    instructions: str | None = Field(None, max_length=20_000, json_schema_extra={"x-multiline": True})


class FileUpdate(StrictModel):
    name: PlainText | None = NAME
    folder_id: str | None = Field(None, max_length=40, description="null moves the file to the top level. "
                                  "Moving needs an owner/admin session or the creating token.")
    instructions: str | None = Field(None, max_length=20_000, json_schema_extra={"x-multiline": True})
    content_base64: str | None = Field(None, pattern=BASE64, description="New content: a new version.")
    text: str | None = Field(None, description="New text content: a new version.", json_schema_extra={"x-multiline": True})
    source_message_id: str | None = Field(None, max_length=40, description="New content from an attachment.")
    attachment_id: str | None = Field(None, max_length=40)


class UploadQuery(StrictModel):
    name: PlainText | None = Field(None, max_length=1000, description="Default: the part's file name.")
    file_type: FileType = "other"
    folder_id: str | None = Field(None, max_length=40)


class FileListQuery(StrictModel):
    folder_id: str | None = Field(None, max_length=40, description="A folder's files; `root`: the top level.")
    file_type: FileType | None = None
    q: PlainText | None = Field(None, max_length=200, description="Part of the name (case-insensitive).")
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=40, pattern=FILE_ID)


class ContentQuery(StrictModel):
    version: int | None = Field(None, ge=1, le=1_000_000)


class LinkBody(StrictModel):
    expires_in: int = Field(files.LINK_DEFAULT, ge=1, le=files.LINK_MAX, description="Seconds (max 7 days).")


class DownloadQuery(StrictModel):
    version: int = Field(ge=1, le=1_000_000)
    expires: int = Field(ge=0, le=2 ** 40)
    signature: str = Field(min_length=1, max_length=200)


class FolderCreate(StrictModel):
    name: PlainText = Field(min_length=1, max_length=1000)
    parent_id: str | None = Field(None, max_length=40)


class FolderUpdate(StrictModel):
    name: PlainText | None = Field(None, min_length=1, max_length=1000)
    parent_id: str | None = Field(None, max_length=40, description="null moves it to the top level; never "
                                  "under itself or one of its subfolders.")


class FolderQuery(StrictModel):
    parent_id: str | None = Field(None, max_length=40, description="Only this folder's subfolders; `root`: the top.")


class RowsBody(StrictModel):
    rows: list[dict[str, Any]] = Field(max_length=sheets.MAX_ROWS_PER_CALL,
                                       description="1 to 1,000 rows: each {column: text, number, true/false or null}.")
    source_message_id: str | None = Field(None, max_length=40, description="The message the rows were read from.")


class RowsQuery(StrictModel):
    format: Literal["json", "csv", "xlsx"] = "json"
    limit: int = Field(200, ge=1, le=1000)
    cursor: str | None = Field(None, max_length=40, pattern=ROW_ID)


class ImportQuery(StrictModel):
    source_message_id: str | None = Field(None, max_length=40)


class FileObject(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file_id: str
    inbox_id: str
    name: str
    file_type: str
    folder_id: str | None
    size: int
    content_type: str
    sha256: str
    version: int
    instructions: str
    created_by: str
    created_at: str
    updated_at: str


class FileList(BaseModel):
    results: list[FileObject]
    cursor: str | None


class VersionObject(BaseModel):
    version: int
    size: int
    sha256: str
    content_type: str
    created_at: str
    created_by: str
    source_message_id: str | None
    source_attachment_id: str | None


class VersionList(BaseModel):
    results: list[VersionObject]
    cursor: str | None


class LinkObject(BaseModel):
    url: str = Field(description="Public: no Authorization header; expired or altered → 403, file deleted → 404.")
    expires_at: str
    version: int


class FolderObject(BaseModel):
    folder_id: str
    inbox_id: str
    name: str
    parent_id: str | None
    created_at: str


class FolderList(BaseModel):
    results: list[FolderObject]
    cursor: str | None


class RowObject(BaseModel):
    row_id: str
    data: dict[str, Any]
    source_message_id: str | None
    created_at: str


class RowList(BaseModel):
    results: list[RowObject]
    cursor: str | None


class ImportResult(BaseModel):
    imported: int
    columns: list[str]


# --- files ---------------------------------------------------------------------------------------
@endpoint(bp, "/v1/files/", "POST", auth=WRITE, tag="files", body=FileCreate, response=FileObject, status=201,
          max_body=_json_max, summary="Create a file from base64, text, or a promoted attachment (no second copy)")
def create_file(ctx: Ctx) -> dict:
    b = ctx.body
    inbox = inbox_for(ctx.db, ctx.principal, ctx.inbox_id)
    content = files.content_from(ctx.db, ctx.settings, inbox, content_base64=b.content_base64, text=b.text,
                                 source_message_id=b.source_message_id, attachment_id=b.attachment_id)
    if b.name is None and (content is None or content.name is None):
        raise ValidationError("name: is required", field="name")
    file = files.create_file(ctx.db, ctx.settings, ctx.principal, inbox, content, name=b.name,
                             file_type=b.file_type, folder_id=b.folder_id, instructions=b.instructions)
    return files.file_to_dict(file)


@endpoint(bp, "/v1/files/upload/", "POST", auth=WRITE, tag="files", query=UploadQuery, response=FileObject,
          status=201, accepts=STREAMED, max_body=lambda s: s.files_max_bytes + 1024 * 1024,
          summary="(Gentbox) Upload one file as multipart/form-data, streamed into the store")
def upload_file(ctx: Ctx) -> dict:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.query.inbox_id)
    files.check_cap(ctx.db, ctx.settings, inbox, 0)  # already past an enforced cap: refuse before reading
    part = _Upload.open()
    with part.spool(ctx) as spooled:
        file = files.upload_file(ctx.db, ctx.settings, ctx.principal, inbox, _pieces(spooled),
                                 name=ctx.query.name or part.filename, content_type=part.content_type,
                                 file_type=ctx.query.file_type, folder_id=ctx.query.folder_id)
    return files.file_to_dict(file)


@endpoint(bp, "/v1/files/<file_id:file_id>/upload/", "POST", auth=WRITE, tag="files", response=FileObject,
          accepts=STREAMED, max_body=lambda s: s.files_max_bytes + 1024 * 1024,
          summary="(Gentbox) New content for a file as multipart/form-data (a new version), streamed")
def upload_version(ctx: Ctx, file_id: str) -> dict:
    file = files.get_file(ctx.db, ctx.principal, file_id, ctx.query.inbox_id)
    inbox = inbox_for(ctx.db, ctx.principal, ctx.query.inbox_id) if ctx.query.inbox_id else _inbox(ctx, file)
    part = _Upload.open()
    with part.spool(ctx) as spooled:
        file = files.get_file(ctx.db, ctx.principal, file_id, ctx.query.inbox_id, for_update=True)  # again, locked
        file = files.upload_file(ctx.db, ctx.settings, ctx.principal, inbox, _pieces(spooled), name=file.name,
                                 content_type=part.content_type, file=file)
    return files.file_to_dict(file)


@endpoint(bp, "/v1/files/", "GET", auth=READ, tag="files", query=FileListQuery, response=FileList,
          summary="The inbox's files, oldest first (by folder, type, part of the name)")
def list_files(ctx: Ctx) -> dict:
    q = ctx.query
    rows = files.list_files(ctx.db, ctx.principal, ctx.inbox_id, folder_id=q.folder_id, file_type=q.file_type,
                            q=q.q, after=q.cursor, limit=q.limit + 1)
    page = rows[:q.limit]
    return {"results": [files.file_to_dict(f) for f in page], "cursor": page[-1].id if len(rows) > q.limit else None}


@endpoint(bp, "/v1/files/<file_id:file_id>/", "GET", auth=READ, tag="files", response=FileObject, summary="One file")
def get_file(ctx: Ctx, file_id: str) -> dict:
    return files.file_to_dict(files.get_file(ctx.db, ctx.principal, file_id, ctx.inbox_id))


@endpoint(bp, "/v1/files/<file_id:file_id>/", "PATCH", auth=WRITE, tag="files", body=FileUpdate, response=FileObject,
          max_body=_json_max, summary="Rename, move (owner/admin or the creator), or write new content (a new version)")
def update_file(ctx: Ctx, file_id: str) -> dict:
    b = ctx.body
    file = files.get_file(ctx.db, ctx.principal, file_id, ctx.inbox_id, for_update=True)
    content = files.content_from(ctx.db, ctx.settings, _inbox(ctx, file), content_base64=b.content_base64,
                                 text=b.text, source_message_id=b.source_message_id, attachment_id=b.attachment_id)
    changes = b.model_dump(include={"name", "folder_id", "instructions"}, exclude_unset=True)
    return files.file_to_dict(files.update_file(ctx.db, ctx.principal, file, content, changes=changes))


@endpoint(bp, "/v1/files/<file_id:file_id>/", "DELETE", auth=WRITE, tag="files", status=204,
          summary="Delete a file, its versions and links (owner/admin or the creator)")
def delete_file(ctx: Ctx, file_id: str) -> Reply:
    files.delete_file(ctx.db, ctx.principal, files.get_file(ctx.db, ctx.principal, file_id, ctx.inbox_id))
    return Reply(204)


@endpoint(bp, "/v1/files/<file_id:file_id>/content/", "GET", auth=READ, tag="files", query=ContentQuery, content_type="*/*",
          summary="(Gentbox) The file's bytes (a version's with `version`), as a download; Range is honoured")
def get_content(ctx: Ctx, file_id: str) -> Reply:
    file = files.get_file(ctx.db, ctx.principal, file_id, ctx.inbox_id)
    return _download(file.name, files.get_version(ctx.db, file, ctx.query.version))


@endpoint(bp, "/v1/files/<file_id:file_id>/versions/", "GET", auth=READ, tag="files", response=VersionList,
          summary="Every version of the file, oldest first, with its digest")
def list_versions(ctx: Ctx, file_id: str) -> dict:
    file = files.get_file(ctx.db, ctx.principal, file_id, ctx.inbox_id)
    return {"results": [files.version_to_dict(v) for v in files.list_versions(ctx.db, file)], "cursor": None}


@endpoint(bp, "/v1/files/<file_id:file_id>/link/", "POST", auth=READ, tag="files", body=LinkBody, response=LinkObject,
          status=201, summary="A public signed URL of the file's current version (HMAC of file, version, expiry)")
def create_link(ctx: Ctx, file_id: str) -> dict:
    file = files.get_file(ctx.db, ctx.principal, file_id, ctx.inbox_id)
    return files.create_link(ctx.settings, file, ctx.body.expires_in)


@endpoint(bp, "/v1/files/<file_id:file_id>/download/", "GET", auth=PUBLIC, tag="files", query=DownloadQuery,
          content_type="*/*", summary="(Gentbox) A signed link's bytes: no token; Range gives 206 (resumable)")
def download(ctx: Ctx, file_id: str) -> Reply:
    q = ctx.query
    file, version = files.open_link(ctx.db, ctx.settings, file_id, q.version, q.expires, q.signature)
    return _download(file.name, version)


# --- folders -------------------------------------------------------------------------------------
@endpoint(bp, "/v1/files/folders/", "POST", auth=WRITE, tag="files", body=FolderCreate, response=FolderObject,
          status=201, summary="Create a folder (in parent_id); a name is unique among its siblings")
def create_folder(ctx: Ctx) -> dict:
    inbox = inbox_for(ctx.db, ctx.principal, ctx.inbox_id)
    return files.folder_to_dict(files.create_folder(ctx.db, ctx.principal, inbox, ctx.body.name, ctx.body.parent_id))


@endpoint(bp, "/v1/files/folders/", "GET", auth=READ, tag="files", query=FolderQuery, response=FolderList,
          summary="The inbox's folders, by name")
def list_folders(ctx: Ctx) -> dict:
    rows = files.list_folders(ctx.db, ctx.principal, ctx.inbox_id, ctx.query.parent_id)
    return {"results": [files.folder_to_dict(f) for f in rows], "cursor": None}


@endpoint(bp, "/v1/files/folders/<folder_id>/", "GET", auth=READ, tag="files", response=FolderObject,
          summary="(Gentbox) One folder")
def get_folder(ctx: Ctx, folder_id: str) -> dict:
    return files.folder_to_dict(files.get_folder(ctx.db, ctx.principal, folder_id, ctx.inbox_id))


@endpoint(bp, "/v1/files/folders/<folder_id>/", "PATCH", auth=WRITE, tag="files", body=FolderUpdate,
          response=FolderObject, summary="(Gentbox) Rename or move a folder (no cycles, no duplicate names)")
def update_folder(ctx: Ctx, folder_id: str) -> dict:
    folder = files.get_folder(ctx.db, ctx.principal, folder_id, ctx.inbox_id)
    changes = ctx.body.model_dump(exclude_unset=True)
    return files.folder_to_dict(files.update_folder(ctx.db, ctx.principal, folder, name=changes.get("name"),
                                                    parent_id=changes.get("parent_id"), move="parent_id" in changes))


# --- spreadsheet rows ----------------------------------------------------------------------------
@endpoint(bp, "/v1/files/<file_id:file_id>/rows/", "POST", auth=WRITE, tag="files", body=RowsBody, response=RowList,
          status=201, summary="Append rows to a spreadsheet (free-form columns, with the source message)")
def add_rows(ctx: Ctx, file_id: str) -> dict:
    file = files.get_file(ctx.db, ctx.principal, file_id, ctx.inbox_id, for_update=True)
    rows = sheets.add_rows(ctx.db, ctx.principal, file, ctx.body.rows, ctx.body.source_message_id)
    return {"results": [sheets.row_to_dict(r) for r in rows], "cursor": None}


@endpoint(bp, "/v1/files/<file_id:file_id>/rows/", "GET", auth=READ, tag="files", query=RowsQuery, response=RowList,
          content_type="application/json, text/csv, application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
          summary="A spreadsheet's rows; format=csv or xlsx exports every row")
def list_rows(ctx: Ctx, file_id: str) -> Any:
    q = ctx.query
    file = files.get_file(ctx.db, ctx.principal, file_id, ctx.inbox_id)
    if q.format == "json":
        rows = sheets.list_rows(ctx.db, file, after=q.cursor, limit=q.limit + 1)
        page = rows[:q.limit]
        return {"results": [sheets.row_to_dict(r) for r in page], "cursor": page[-1].id if len(rows) > q.limit else None}
    rows = sheets.list_rows(ctx.db, file)
    stem = file.name.rsplit(".", 1)[0] if "." in file.name else file.name
    if q.format == "csv":
        body, mime, ext = sheets.export_csv(rows).encode(), "text/csv", "csv"
    else:
        body, ext = sheets.export_xlsx(rows, stem), "xlsx"
        mime = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return Reply(200, Response(body, mimetype=mime, headers={
        "Content-Disposition": content_disposition(f"{stem}.{ext}"), "X-Content-Type-Options": "nosniff"}))


@endpoint(bp, "/v1/files/<file_id:file_id>/rows/import/", "POST", auth=WRITE, tag="files", query=ImportQuery,
          response=ImportResult, accepts="text/csv", max_body=_json_max,
          summary="(Gentbox) Append a CSV's rows (header line: the columns) to a spreadsheet")
def import_rows(ctx: Ctx, file_id: str) -> dict:
    file = files.get_file(ctx.db, ctx.principal, file_id, ctx.query.inbox_id, for_update=True)
    if not ctx.body:
        raise ValidationError("the body is empty: send the CSV text", fix="Send Content-Type: text/csv with a header line.")
    return sheets.import_csv(ctx.db, ctx.principal, file, ctx.body, ctx.query.source_message_id)


# --- helpers -------------------------------------------------------------------------------------
def _inbox(ctx: Ctx, file):  # noqa: ANN001, ANN202 - the file's inbox, which the caller may use
    return inbox_for(ctx.db, ctx.principal, None if ctx.principal.own_inbox_id else file.inbox_id)


def _download(name: str, version) -> Reply:  # noqa: ANN001 - a FileVersion
    """The version's bytes streamed from the store, whole or one Range (206), safe to open."""
    size, start, end, status = version.size, 0, version.size, 200
    headers = {"Content-Type": safe_content_type(version.content_type), "Content-Disposition": content_disposition(name),
               "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox; default-src 'none'",
               "Accept-Ranges": "bytes", "ETag": f'"{version.sha256}"'}
    if request.range is not None and len(request.range.ranges) == 1:
        bounds = request.range.range_for_length(size)
        if bounds is None:
            return Reply(416, Response(b"", status=416, headers={**headers, "Content-Range": f"bytes */{size}"}))
        (start, end), status = bounds, 206
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    headers["Content-Length"] = str(end - start)
    store = current_app.extensions["gentbox"]
    blob_id = version.blob_id

    def stream() -> Iterator[bytes]:
        with store.read_sessions() as db:  # its own session: the call's has closed when this runs
            yield from blobs.iter_range(db, blob_id, start, end)
    return Reply(status, Response(stream(), status=status, headers=headers, direct_passthrough=True))


def _pieces(spooled: IO[bytes]) -> Iterator[bytes]:
    """A spooled upload in blob-sized pieces."""
    return iter(lambda: spooled.read(blobs.CHUNK), b"")


class _Upload:
    """The first file part of a multipart/form-data body, read from request.stream in pieces."""

    def __init__(self, decoder: MultipartDecoder, part: FilePart) -> None:
        self.decoder, self.filename = decoder, part.filename or "upload"
        self.content_type = part.headers.get("Content-Type")
        self.done = False

    @classmethod
    def open(cls) -> "_Upload":
        boundary = request.mimetype_params.get("boundary", "")
        if not boundary or len(boundary) > 200:
            raise InvalidRequestError("The multipart body has no boundary.", fix="Send multipart/form-data with a file part.")
        decoder = MultipartDecoder(boundary.encode("latin-1", "replace"), max_form_memory_size=4 * READ_PIECE)
        while True:
            event = cls._next(decoder)
            if isinstance(event, FilePart):
                return cls(decoder, event)
            if isinstance(event, Epilogue):
                raise ValidationError("file: the multipart body has no file part", field="file",
                                      fix="Send the content as a part with a filename (curl -F file=@name).")

    @staticmethod
    def _next(decoder: MultipartDecoder):  # noqa: ANN205
        ended = False
        while True:
            try:
                event = decoder.next_event()
            except ValueError as exc:
                raise InvalidRequestError(f"The multipart body cannot be read: {exc}") from None
            if not isinstance(event, NeedData):
                return event
            if ended:
                raise InvalidRequestError("The multipart body ended early.", fix="Send the whole body.")
            piece = request.stream.read(READ_PIECE)
            ended = not piece
            decoder.receive_data(piece or None)

    def spool(self, ctx: Ctx) -> IO[bytes]:
        """The file part copied to a temporary file (memory up to 1 MiB, then disk), read while the
        call holds no transaction: on SQLite a write transaction is the one writer lock, and a slow
        client must not hold it for minutes. The blob chunks are then written from disk at once."""
        ctx.db.commit()  # only reads so far (auth, the inbox): end them before the body arrives
        out = tempfile.SpooledTemporaryFile(max_size=1024 * 1024)
        size = 0
        try:
            for piece in self.chunks():
                size += len(piece)
                if size > ctx.settings.files_max_bytes:
                    raise PayloadTooLargeError(f"A file may be at most {ctx.settings.files_max_bytes} bytes.",
                                               fix="Keep files under the files_max_bytes setting.")
                out.write(piece)
        except BaseException:
            out.close()
            raise
        out.seek(0)
        return out

    def chunks(self) -> Iterator[bytes]:
        """The file part's bytes as they arrive."""
        while not self.done:
            event = self._next(self.decoder)
            if isinstance(event, Data):
                if event.data:
                    yield event.data
                self.done = not event.more_data
            elif isinstance(event, Epilogue):
                raise InvalidRequestError("The multipart body ended inside the file part.")
