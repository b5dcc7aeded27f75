"""Files (contract section 13, issue 19): an inbox's named files, folders, versions and links.

A file belongs to one inbox (agent tokens see their own inbox's, sessions name one). Each write
of content is a new version pointing at a blob of the content-addressed store
(appliance/services/workspace/blobs.py); three writes of the same bytes store them once.

Promoting an attachment (`source_message_id` + `attachment_id`) points the new version at the
attachment's own blob (attachments live in the blob store since migration 0039): no byte is
copied, and the version records which message and attachment it came from. An attachment the
worker's backfill has not moved yet is stored as a blob then (the backfill later finds it). The
message keeps its raw RFC 5322 source (byte-exact: DKIM, forwarding, export and IMAP serve it);
deleting the message releases its attachments, and the blob stays while the file uses it.

File names are display names, never paths: control characters and bidirectional overrides are
removed, `/` and `\\` become `_`, `.` and `..` are refused as whole names, and a name keeps at
most 255 characters (its extension kept). Downloads name them with RFC 6266 `filename*`.
"""
from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import re
import unicodedata
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from appliance.clock import utcnow
from appliance.config import Settings
from appliance.errors import ConflictError, ForbiddenError, NotFoundError, ValidationError
from appliance.ids import new_id
from appliance.models import Blob, File, FileRow, FileVersion, Folder, Inbox
from appliance.services import tenancy
from appliance.services.automation import events
from appliance.services.governance import caps, usage
from appliance.services.identity.auth import Principal, inbox_for, may_use_inbox
from appliance.services.mail import messages
from appliance.services.workspace import blobs

FILE_TYPES = ("spreadsheet", "document", "image", "video", "template", "skill", "other")
MAX_NAME = 255
LINK_DEFAULT, LINK_MAX = 3600, 7 * 86400
_NOT_FOUND = "No such file."
# C0/C1 controls, DEL, and the bidirectional embeddings, overrides and isolates (U+202A-202E,
# U+2066-2069) plus the marks: a name like "\u202egnp.exe" would otherwise read as "exe.png".
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,126}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")


# --- names and types -----------------------------------------------------------------------------
def clean_name(value: Any, field: str = "name") -> str:
    """A file or folder name that is safe to store, list and send in a header."""
    if not isinstance(value, str):
        raise ValidationError(f"{field}: a name is required", field=field)
    name = _UNSAFE.sub("", unicodedata.normalize("NFC", value)).replace("/", "_").replace("\\", "_").strip()
    if not name or name in (".", ".."):
        raise ValidationError(f"{field}: not a usable name", field=field, fix="Name the file, e.g. invoice.pdf.")
    if len(name) > MAX_NAME:
        stem, dot, ext = name.rpartition(".")
        keep = f".{ext}" if dot and stem and len(ext) <= 16 else ""
        name = name[:MAX_NAME - len(keep)] + keep
    return name


def _file_type(value: Any) -> str:
    if value is None:
        return "other"
    if value not in FILE_TYPES:
        raise ValidationError(f"file_type: one of {', '.join(FILE_TYPES)}", field="file_type")
    return value


def content_type_for(name: str, declared: str | None = None) -> str:
    """The declared type when it is a plain type/subtype, else one guessed from the name."""
    import mimetypes
    value = (declared or "").split(";")[0].strip().lower()
    if _TYPE.match(value):
        return value
    return mimetypes.guess_type(name)[0] or "application/octet-stream"


# --- reading -------------------------------------------------------------------------------------
def _usable(principal: Principal):  # noqa: ANN202 - a SQL condition on File or Folder's inbox_id
    return select(Inbox.id).where(Inbox.tenant_id == principal.tenant_id, Inbox.status != "deleted",
                                  may_use_inbox(principal))


def get_file(db: Session, principal: Principal, file_id: str, inbox_id: str | None = None,
             for_update: bool = False) -> File:
    """One file the caller may see (of the inbox named, when one is); 404 for any other."""
    where = (File.inbox_id.in_(_usable(principal)),) + ((File.inbox_id == inbox_id,) if inbox_id else ())
    return tenancy.get_owned(db, File, file_id, principal.tenant_id, where=where, message=_NOT_FOUND,
                             for_update=for_update)


def list_files(db: Session, principal: Principal, inbox_id: str | None, *, folder_id: str | None = None,
               file_type: str | None = None, q: str | None = None, after: str | None = None,
               limit: int = 50) -> list[File]:
    """The inbox's files, oldest first; folder_id "root" lists the top level only."""
    inbox = inbox_for(db, principal, inbox_id)
    query = tenancy.owned(select(File), File, principal.tenant_id).where(File.inbox_id == inbox.id)
    if folder_id == "root":
        query = query.where(File.folder_id.is_(None))
    elif folder_id is not None:
        query = query.where(File.folder_id == get_folder(db, principal, folder_id, inbox.id).id)
    if file_type is not None:
        query = query.where(File.file_type == _file_type(file_type))
    if q:
        escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(func.lower(File.name).like(f"%{escaped}%", escape="\\"))
    if after:
        query = query.where(File.id > after)
    return list(db.scalars(query.order_by(File.id).limit(limit)))


def get_version(db: Session, file: File, version: int | None = None) -> FileVersion:
    """A version of the file (the current one by default)."""
    row = db.get(FileVersion, (file.id, version or file.version))
    if row is None:
        raise NotFoundError(f"The file has no version {version}.", field="version",
                            fix=f"Versions run from 1 to {file.version}.")
    return row


def list_versions(db: Session, file: File) -> list[FileVersion]:
    """Every version of a file, oldest first."""
    return list(db.scalars(select(FileVersion).where(FileVersion.file_id == file.id).order_by(FileVersion.version)))


def file_to_dict(file: File) -> dict:
    """The API's file object."""
    return {"file_id": file.id, "inbox_id": file.inbox_id, "name": file.name, "file_type": file.file_type,
            "folder_id": file.folder_id, "size": file.size, "content_type": file.content_type,
            "sha256": file.sha256, "version": file.version, "instructions": file.instructions,
            "created_by": file.created_by, "created_at": file.created_at.isoformat(),
            "updated_at": file.updated_at.isoformat()}


def version_to_dict(row: FileVersion) -> dict:
    """One entry of GET /v1/files/{id}/versions/."""
    return {"version": row.version, "size": row.size, "sha256": row.sha256, "content_type": row.content_type,
            "created_at": row.created_at.isoformat(), "created_by": row.created_by,
            "source_message_id": row.source_message_id, "source_attachment_id": row.source_attachment_id}


# --- content in ----------------------------------------------------------------------------------
class Content:
    """Where a write's bytes come from: already stored as a blob (`blob`, `new`), with provenance."""

    def __init__(self, blob: Blob, new: bool, content_type: str | None = None,
                 source: tuple[str, str] | None = None, name: str | None = None) -> None:
        self.blob, self.new, self.content_type, self.source, self.name = blob, new, content_type, source, name


def content_from(db: Session, settings: Settings, inbox: Inbox, *, content_base64: str | None = None,
                 text: str | None = None, source_message_id: str | None = None,
                 attachment_id: str | None = None) -> Content | None:
    """The one content source a create or PATCH names, stored as a blob; None when none is named."""
    named = [n for n, v in (("content_base64", content_base64), ("text", text),
                            ("source_message_id", source_message_id)) if v is not None]
    if len(named) > 1:
        raise ValidationError(f"{named[1]}: send one of content_base64, text or source_message_id",
                              field=named[1])
    limit = settings.files_max_bytes
    if content_base64 is not None:
        try:
            data = base64.b64decode(content_base64, validate=True)
        except (binascii.Error, ValueError):
            raise ValidationError("content_base64: not valid base64", field="content_base64") from None
        return Content(*_stored(db, settings, inbox, data))
    if text is not None:
        return Content(*_stored(db, settings, inbox, text.encode()), content_type="text/plain; charset=utf-8")
    if source_message_id is not None or attachment_id is not None:
        return _promoted(db, settings, inbox, source_message_id, attachment_id, limit)
    return None


def _stored(db: Session, settings: Settings, inbox: Inbox, data: bytes) -> tuple[Blob, bool]:
    blob = blobs.find(db, inbox.tenant_id, hashlib.sha256(data).hexdigest())
    if blob is not None:
        if not blob.refcount:  # bytes only mail held: they start counting as files now
            caps.check_files(db, settings, tenant_id=inbox.tenant_id, inbox_id=inbox.id, size=blob.size)
        return blob, False
    caps.check_files(db, settings, tenant_id=inbox.tenant_id, inbox_id=inbox.id, size=len(data))
    return blobs.store_bytes(db, inbox.tenant_id, inbox.id, data, settings.files_max_bytes)


def _promoted(db: Session, settings: Settings, inbox: Inbox, message_id: str | None, attachment_id: str | None,
              limit: int) -> Content:
    """An attachment of a message of this inbox, as a blob (stored once, however often promoted)."""
    if not message_id or not attachment_id:
        missing = "attachment_id" if message_id else "source_message_id"
        raise ValidationError(f"{missing}: promoting an attachment needs source_message_id and attachment_id",
                              field=missing)
    attachment = messages.get_attachment(db, inbox, message_id, attachment_id)
    blob = db.get(Blob, attachment.blob_id) if attachment.blob_id else None
    if blob is not None:  # already in the store: the file shares the attachment's blob (no second copy)
        if not blob.refcount:
            caps.check_files(db, settings, tenant_id=inbox.tenant_id, inbox_id=inbox.id, size=blob.size)
        new = False
    else:  # not moved by the backfill yet
        blob, new = _stored(db, settings, inbox, bytes(attachment.content))
    return Content(blob, new, content_type=messages.safe_content_type(attachment.content_type),
                   source=(message_id, attachment_id), name=attachment.filename)


def check_cap(db: Session, settings: Settings, inbox: Inbox, size: int) -> None:
    """403 cap_reached when an enforced files cap would be passed by size more bytes."""
    caps.check_files(db, settings, tenant_id=inbox.tenant_id, inbox_id=inbox.id, size=size)


# --- writing -------------------------------------------------------------------------------------
def create_file(db: Session, settings: Settings, principal: Principal, inbox: Inbox, content: Content | None, *,
                name: str | None, file_type: str | None = None, folder_id: str | None = None,
                instructions: str | None = None) -> File:
    """A new file (version 1) in the inbox, from stored content (an empty file when None)."""
    if content is None:
        content = Content(*_stored(db, settings, inbox, b""))
    folder = get_folder(db, principal, folder_id, inbox.id).id if folder_id else None
    now = utcnow()
    file = File(id=new_id("fil"), tenant_id=inbox.tenant_id, inbox_id=inbox.id, folder_id=folder,
                name=clean_name(name if name is not None else content.name), file_type=_file_type(file_type),
                instructions=instructions or "", version=0, created_by=principal.id, created_at=now, updated_at=now)
    db.add(file)
    _add_version(db, file, content, principal, now)
    db.flush()
    _announce(db, file, "file.created", principal)
    return file


def _add_version(db: Session, file: File, content: Content, principal: Principal, now: dt.datetime) -> None:
    blobs.acquire(db, content.blob, content.new)
    file.version += 1
    file.size, file.sha256 = content.blob.size, content.blob.sha256
    file.content_type = content_type_for(file.name, content.content_type)
    file.updated_at = now
    source = content.source or (None, None)
    db.add(FileVersion(file_id=file.id, version=file.version, blob_id=content.blob.id, size=file.size,
                       sha256=file.sha256, content_type=file.content_type, created_by=principal.id,
                       created_at=now, source_message_id=source[0], source_attachment_id=source[1]))
    usage.record(db, file.tenant_id, usage.FILE_WRITES, inbox_id=file.inbox_id, now=now)


def update_file(db: Session, principal: Principal, file: File, content: Content | None, *,
                changes: dict[str, Any]) -> File:
    """Rename, move (owner/admin or the creator) and/or write new content (a new version)."""
    if "folder_id" in changes and changes["folder_id"] != file.folder_id:
        _require_manager_or_creator(principal, file, "move")
        target = changes["folder_id"]
        file.folder_id = get_folder(db, principal, target, file.inbox_id).id if target else None
    if changes.get("name") is not None:
        file.name = clean_name(changes["name"])
    if changes.get("instructions") is not None:
        file.instructions = changes["instructions"]
    now = utcnow()
    if content is not None:
        _add_version(db, file, content, principal, now)
    file.updated_at = now
    db.flush()
    _announce(db, file, "file.updated", principal, {"changed": sorted(k for k in changes if k != "inbox_id")
                                                    + (["content"] if content is not None else [])})
    return file


def delete_file(db: Session, principal: Principal, file: File) -> None:
    """Delete a file with its versions, rows and links (links name it: they answer 404 after)."""
    _require_manager_or_creator(principal, file, "delete")
    _announce(db, file, "file.deleted", principal)
    blob_ids = list(db.scalars(select(FileVersion.blob_id).where(FileVersion.file_id == file.id)))
    db.execute(delete(FileRow).where(FileRow.file_id == file.id))
    db.execute(delete(FileVersion).where(FileVersion.file_id == file.id))
    db.execute(delete(File).where(File.id == file.id))
    db.expunge(file)
    for blob_id in blob_ids:
        blobs.release(db, blob_id)


def _require_manager_or_creator(principal: Principal, file: File, verb: str) -> None:
    if principal.is_manager or principal.id == file.created_by:
        return
    raise ForbiddenError(f"Only an owner or admin, or whoever created the file, may {verb} it.",
                         fix="Ask an owner or admin, or use the token that created the file.")


def _announce(db: Session, file: File, type_: str, actor: Any, extra: dict | None = None) -> None:
    events.emit(db, type_, tenant_id=file.tenant_id, inbox_id=file.inbox_id, resource_id=file.id, actor=actor,
                payload={"file_id": file.id, "name": file.name, "file_type": file.file_type,
                         "folder_id": file.folder_id, "version": file.version, "size": file.size,
                         "sha256": file.sha256, **(extra or {})})


# --- folders -------------------------------------------------------------------------------------
def get_folder(db: Session, principal: Principal, folder_id: str, inbox_id: str | None = None) -> Folder:
    """A folder the caller may see (in the inbox named); 404 for any other."""
    where = (Folder.inbox_id.in_(_usable(principal)),) + ((Folder.inbox_id == inbox_id,) if inbox_id else ())
    return tenancy.get_owned(db, Folder, folder_id, principal.tenant_id, where=where, message="No such folder.",
                             field="folder_id")


def list_folders(db: Session, principal: Principal, inbox_id: str | None, parent_id: str | None = None) -> list[Folder]:
    """The inbox's folders (under parent_id when given), by name."""
    inbox = inbox_for(db, principal, inbox_id)
    query = select(Folder).where(Folder.inbox_id == inbox.id)
    if parent_id is not None:
        query = query.where(Folder.parent_key == ("" if parent_id == "root" else
                                                  get_folder(db, principal, parent_id, inbox.id).id))
    return list(db.scalars(query.order_by(Folder.name, Folder.id)))


def create_folder(db: Session, principal: Principal, inbox: Inbox, name: str, parent_id: str | None) -> Folder:
    """A new folder; two of the same name under one parent → 409."""
    parent = get_folder(db, principal, parent_id, inbox.id).id if parent_id else ""
    folder = Folder(id=new_id("fld"), tenant_id=inbox.tenant_id, inbox_id=inbox.id, parent_key=parent,
                    name=clean_name(name), created_by=principal.id, created_at=utcnow())
    _unique(db, folder)
    db.add(folder)
    db.flush()
    events.emit(db, "folder.created", tenant_id=inbox.tenant_id, inbox_id=inbox.id, resource_id=folder.id,
                actor=principal, payload={"folder_id": folder.id, "name": folder.name, "parent_id": parent or None})
    return folder


def update_folder(db: Session, principal: Principal, folder: Folder, *, name: str | None,
                  parent_id: str | None, move: bool) -> Folder:
    """Rename a folder and/or move it under another parent of its inbox (never under itself)."""
    if name is not None:
        folder.name = clean_name(name)
    if move:
        target = get_folder(db, principal, parent_id, folder.inbox_id) if parent_id else None
        cursor = target
        while cursor is not None:  # walking up from the new parent must not meet the folder
            if cursor.id == folder.id:
                raise ValidationError("parent_id: a folder cannot move into itself or its own subfolder",
                                      field="parent_id")
            cursor = db.get(Folder, cursor.parent_key) if cursor.parent_key else None
        folder.parent_key = target.id if target else ""
    _unique(db, folder)
    db.flush()
    return folder


def _unique(db: Session, folder: Folder) -> None:
    clash = db.scalar(select(Folder.id).where(Folder.inbox_id == folder.inbox_id, Folder.parent_key == folder.parent_key,
                                              Folder.name == folder.name, Folder.id != folder.id))
    if clash is not None:
        raise ConflictError(f"A folder named {folder.name!r} is already there.", field="name",
                            fix="Pick another name, or use the existing folder.")


def folder_to_dict(folder: Folder) -> dict:
    """The API's folder object."""
    return {"folder_id": folder.id, "inbox_id": folder.inbox_id, "name": folder.name,
            "parent_id": folder.parent_key or None, "created_at": folder.created_at.isoformat()}


# --- signed links --------------------------------------------------------------------------------
def _link_mac(secret_key: str, file_id: str, version: int, expires: int) -> str:
    key = hmac.new(secret_key.encode(), b"gentbox file links v1", hashlib.sha256).digest()
    return hmac.new(key, f"{file_id}.{version}.{expires}".encode(), hashlib.sha256).hexdigest()


def create_link(settings: Settings, file: File, expires_in: int | None, now: dt.datetime | None = None) -> dict:
    """A public URL for the file's current version, signed with a key derived from the secret."""
    seconds = LINK_DEFAULT if expires_in is None else expires_in
    if not 1 <= seconds <= LINK_MAX:
        raise ValidationError(f"expires_in: 1 to {LINK_MAX} seconds (7 days)", field="expires_in")
    expires = int((now or utcnow()).timestamp()) + seconds
    mac = _link_mac(settings.secret_key, file.id, file.version, expires)
    url = (f"{settings.base_url}/v1/files/{file.id}/download/?version={file.version}"
           f"&expires={expires}&signature={mac}")
    return {"url": url, "expires_at": dt.datetime.fromtimestamp(expires, dt.timezone.utc).isoformat(),
            "version": file.version}


def open_link(db: Session, settings: Settings, file_id: str, version: int, expires: int, signature: str,
              now: dt.datetime | None = None) -> tuple[File, FileVersion]:
    """The file and version a link names: 403 when altered or expired, 404 when the file is gone."""
    want = _link_mac(settings.secret_key, file_id, version, expires)
    if not hmac.compare_digest(want.encode(), signature.encode("utf-8", "replace")):
        raise ForbiddenError("The link's signature does not match.", fix="Ask for a new link.")
    if expires <= (now or utcnow()).timestamp():
        raise ForbiddenError("The link has expired.", fix="Ask for a new link.")
    file = db.get(File, file_id)
    row = db.get(FileVersion, (file_id, version)) if file is not None else None
    if row is None:
        raise NotFoundError(_NOT_FOUND)
    return file, row



def upload_file(db: Session, settings: Settings, principal: Principal, inbox: Inbox, chunks: Any, *,
                name: str, content_type: str | None, file_type: str | None = None, folder_id: str | None = None,
                file: File | None = None) -> File:
    """A streamed upload (multipart, the web form): the bytes go to the store chunk by chunk, then
    become a new file, or a new version of `file`. Over an enforced files cap: 403, nothing kept."""
    check_cap(db, settings, inbox, 0)  # already past an enforced cap: refuse before storing anything
    writer = blobs.BlobWriter(db, inbox.tenant_id, inbox.id, settings.files_max_bytes)
    for chunk in chunks:
        writer.write(chunk)
    blob, new = writer.finish()
    if new:
        check_cap(db, settings, inbox, blob.size)
    content = Content(blob, new, content_type=content_type, name=name)
    if file is not None:
        return update_file(db, principal, file, content, changes={})
    return create_file(db, settings, principal, inbox, content, name=name, file_type=file_type, folder_id=folder_id)
