"""Import an existing mailbox's history over IMAP (contract section 20) with aioimaplib.

A person asks for an import (`POST /v1/inboxes/{id}/imports/`); the worker claims the job with a
lease and copies each folder's messages in, in UID order, a batch per transaction:
- each folder but INBOX becomes a `message` label of that name (IMAP's modified UTF-7 decoded);
- each message comes in once, by its Message-ID (or, without one, the digest of its bytes): met
  again in another folder or another run, it only gains that folder's label;
- `\\Seen` becomes read; everything is announced as `message.imported`, not `message.received`,
  so automatic replies, workflows and alerts on new mail never fire for old mail;
- progress (per folder: UIDVALIDITY and the last UID done) commits with each batch, so a worker
  killed mid-import resumes where it stopped once its lease runs out; a changed UIDVALIDITY
  starts that folder again (the keys keep it from adding copies);
- paced at `import_rate` messages per second, so an import never starves delivery;
- the password is sealed while the job waits and runs, and cleared the moment it ends.

Where the worker may connect: the host's every address must be one it may dial (public and not
its own, unless `deliver_to_private`: addresses.permitted), checked when connecting; the
connection then goes to that checked address (TLS verified against the host name), so a DNS
answer that changes in between cannot point it elsewhere. Plain IMAP only with
`deliver_to_private` (a LAN or a test), never over the internet.
"""
from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import re
import socket
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from appliance import addresses
from appliance.clock import utcnow
from appliance.config import Settings
from appliance.db import Store
from appliance.errors import ForbiddenError, ValidationError
from appliance.ids import new_id
from appliance.models import Inbox, MailImport, MailImportItem, Message
from appliance.security import seal, unseal
from appliance.services import tenancy
from appliance.services.automation import events
from appliance.services.identity.auth import Principal, usable_inbox
from appliance.services.mail import inbound, labels
from appliance.services.mail.outbound import wire_bytes
from appliance.services.validation import reject_control_chars

if TYPE_CHECKING:  # the client library itself is imported only where the worker connects
    from aioimaplib import aioimaplib

SECURITY = ("tls", "none")  # aioimaplib speaks no STARTTLS: TLS from the first byte (993)
BATCH = 25  # messages per transaction
_PURPOSE = "imap-import"
_HOST = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}"
                   r"[A-Za-z0-9])?)*$")
_LIST = re.compile(rb'^\((?P<flags>[^)]*)\) (?:"[^"]*"|NIL) (?P<name>.+)$')
_FETCH = re.compile(rb"^\d+ FETCH \((?P<items>.*)\{(?P<size>\d+)\}$")
_UID = re.compile(rb"\bUID (\d+)")
_FLAGS = re.compile(rb"\bFLAGS \(([^)]*)\)")
_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_NOT_FOLDERS = (b"\\noselect", b"\\nonexistent")


# --- the API's side -----------------------------------------------------------------------------
def create(db: Session, settings: Settings, principal: Principal, inbox_id: str, *, host: str, port: int,
           username: str, password: str, folders: list[str], since: str | None, security: str) -> MailImport:
    """A queued import into one of the caller's inboxes; the worker runs it."""
    if principal.kind != "user":
        raise ForbiddenError("Imports are asked for by people: use your own session.", code="session_required",
                             fix="Log in at POST /auth/login/ and use that token.")
    inbox = usable_inbox(db, principal, inbox_id)
    host = host.strip().rstrip(".").lower()
    if not _HOST.match(host):
        raise ValidationError("host must be a host name or an IP address literal's name, e.g. imap.example.com.",
                              field="host", fix="Send the IMAP server's host name, e.g. imap.example.com")
    if security not in SECURITY:
        raise ValidationError("security must be tls (port 993) or none.", field="security")
    if security == "none" and not settings.deliver_to_private:
        raise ValidationError("A password is never sent over an unencrypted connection.", field="security",
                              fix="Use security tls (port 993).")
    for value, field in ((username, "username"), (password, "password")):
        reject_control_chars(value, field)
        if not value:
            raise ValidationError(f"{field} is required.", field=field)
    for name in folders:
        reject_control_chars(name, "folders")
    if since is not None:
        try:
            dt.date.fromisoformat(since)
        except ValueError:
            raise ValidationError("since must be a date, YYYY-MM-DD.", field="since") from None
    job = MailImport(id=new_id("imp"), tenant_id=inbox.tenant_id, inbox_id=inbox.id, created_by=principal.user.id,
                     host=host, port=port, security=security, username=username, folders=list(folders),
                     since=since, status="queued", progress={}, imported=0, skipped=0, error="",
                     lease_owner="", created_at=utcnow())
    job.secret_sealed = seal(settings.secret_key, _PURPOSE, password.encode(), job.id)
    db.add(job)
    return job


def get(db: Session, principal: Principal, inbox_id: str, import_id: str) -> MailImport:
    inbox = usable_inbox(db, principal, inbox_id)
    return tenancy.get_owned(db, MailImport, import_id, principal.tenant_id, where=(MailImport.inbox_id == inbox.id,),
                             message="No such import.")


def list_for(db: Session, principal: Principal, inbox_id: str) -> list[MailImport]:
    inbox = usable_inbox(db, principal, inbox_id)
    return list(db.scalars(tenancy.owned(select(MailImport), MailImport, principal.tenant_id)
                           .where(MailImport.inbox_id == inbox.id).order_by(MailImport.id.desc()).limit(50)))


def to_dict(job: MailImport) -> dict:
    return {"import_id": job.id, "inbox_id": job.inbox_id, "status": job.status, "host": job.host,
            "port": job.port, "security": job.security, "username": job.username, "folders": list(job.folders),
            "since": job.since, "progress": dict(job.progress or {}), "imported": job.imported,
            "skipped": job.skipped, "error": job.error or None, "created_at": events.iso(job.created_at),
            "finished_at": events.iso(job.finished_at)}


# --- the worker's side --------------------------------------------------------------------------
class LeaseLost(Exception):
    """Another worker took the job over (this one was too slow to renew its lease)."""


class ImportFailed(Exception):
    """The job cannot go on (the server refused the login, a folder vanished, a cap was reached)."""


@dataclass(frozen=True)
class Claimed:
    id: str
    host: str
    port: int
    security: str
    username: str
    password: str
    folders: list[str]
    since: str | None


def claim(db: Session, settings: Settings, owner: str, now: dt.datetime | None = None) -> Claimed | None:
    """Take one queued import, or a running one whose worker's lease ran out (it died)."""
    now = now or utcnow()
    job = db.scalar(select(MailImport).where(
        (MailImport.status == "queued") | ((MailImport.status == "running") & (MailImport.lease_until < now)))
        .order_by(MailImport.id).limit(1).with_for_update(skip_locked=True))
    if job is None or job.secret_sealed is None:
        return None
    job.status, job.lease_owner = "running", owner
    job.lease_until = now + dt.timedelta(seconds=settings.import_lease_seconds)
    password = unseal(settings.secret_key, _PURPOSE, bytes(job.secret_sealed), job.id).decode()
    return Claimed(job.id, job.host, job.port, job.security, job.username, password, list(job.folders), job.since)


def finish(db: Session, import_id: str, owner: str, error: str = "") -> None:
    """The job ended: its password is cleared whatever the outcome."""
    job = db.get(MailImport, import_id, with_for_update=True)
    if job is None or job.lease_owner != owner:
        return
    job.status = "failed" if error else "completed"
    job.error, job.secret_sealed, job.lease_until, job.finished_at = error[:500], None, None, utcnow()
    events.emit(db, "import.completed", tenant_id=job.tenant_id, inbox_id=job.inbox_id, resource_id=job.id,
                payload={"status": job.status, "imported": job.imported, "skipped": job.skipped})


@dataclass(frozen=True)
class Fetched:
    uid: int
    flags: tuple[str, ...]
    raw: bytes


def record(db: Session, settings: Settings, import_id: str, owner: str, folder: str, uidvalidity: int,
           batch: list[Fetched], total: int) -> None:
    """Store one batch of one folder and move its progress on, in the caller's transaction."""
    job = db.get(MailImport, import_id, with_for_update=True)
    if job is None or job.lease_owner != owner or job.status != "running":
        raise LeaseLost(import_id)
    inbox = db.get(Inbox, job.inbox_id)
    label = _label(folder)
    if label:
        labels.ensure(db, tenant_id=inbox.tenant_id, inbox_id=inbox.id, names=[label], kind="message")
    for item in batch:
        if _store_one(db, settings, inbox, item, label):
            job.imported += 1
        else:
            job.skipped += 1
    state = dict((job.progress or {}).get(folder) or {})
    done = state.get("done", 0) if state.get("uidvalidity") == uidvalidity else 0
    progress = dict(job.progress or {})
    progress[folder] = {"uidvalidity": uidvalidity, "last_uid": max(i.uid for i in batch), "total": total,
                        "done": done + len(batch)}
    job.progress = progress
    job.lease_until = utcnow() + dt.timedelta(seconds=settings.import_lease_seconds)


def _store_one(db: Session, settings: Settings, inbox: Inbox, item: Fetched, label: str | None) -> bool:
    """True when the message came in; False when it was here already (it gains the label)."""
    incoming = inbound.prepare(inbox_ids=[inbox.id], raw=item.raw, envelope_from="",
                               envelope_to={inbox.id: inbox.address}, labels=(label,) if label else ())
    parsed = incoming.parsed
    key = hashlib.sha256(parsed.message_id.encode() if parsed.message_id else item.raw).hexdigest()
    known = db.scalar(select(MailImportItem.message_id).where(MailImportItem.inbox_id == inbox.id,
                                                              MailImportItem.key == key))
    if known is None and parsed.message_id:  # delivered here before the import: the same message
        known = db.scalar(select(Message.id).where(Message.inbox_id == inbox.id,
                                                   Message.message_id_header == parsed.message_id).limit(1))
        if known is not None:
            db.add(MailImportItem(id=new_id("imi"), tenant_id=inbox.tenant_id, inbox_id=inbox.id, key=key,
                                  message_id=known))
    seen = "\\seen" in {f.lower() for f in item.flags}
    if known is not None:  # one message filed in several folders: every folder's label, read if read in one
        message = db.get(Message, known)
        if label and label not in (message.labels or []):
            message.labels = [*(message.labels or []), label]
        message.is_read = message.is_read or seen
        return False
    incoming = dataclasses.replace(incoming, envelope_from=parsed.from_email, event_type="message.imported")
    [outcome] = inbound.store(db, [incoming], settings=settings)
    if isinstance(outcome, BaseException):
        raise ImportFailed(f"{inbox.address} took no more mail: {outcome}") from outcome
    stored = outcome[0]
    db.add(MailImportItem(id=new_id("imi"), tenant_id=inbox.tenant_id, inbox_id=inbox.id, key=key,
                          message_id=stored.id))
    if seen:
        db.execute(update(Message).where(Message.id == stored.id).values(is_read=True))
    return True


def _label(folder: str) -> str | None:
    """The label a folder becomes (None: INBOX itself)."""
    if folder.upper() == "INBOX":
        return None
    from imapclient import imap_utf7

    try:
        name = imap_utf7.decode(folder.encode("ascii"))
    except (UnicodeError, ValueError):
        name = folder
    name = "".join(c for c in name if c.isprintable()).strip()[:100]
    return name or None


# --- talking IMAP -------------------------------------------------------------------------------
def _pinned(ip: str, host: str, port: int, tls: ssl.SSLContext | None, timeout: float):  # noqa: ANN202
    """aioimaplib's client, connected to an address checked beforehand (TLS verified against the
    host name): the name is never looked up again between the check and the connection. (The
    client library is imported here, in the worker, never by the web process that queues jobs.)"""
    from aioimaplib import aioimaplib

    class Pinned(aioimaplib.IMAP4):
        def create_client(self, host, port, loop, conn_lost_cb=None, ssl_context=None) -> None:  # noqa: ANN001
            local = loop if loop is not None else asyncio.get_running_loop()
            self.protocol = aioimaplib.IMAP4ClientProtocol(local, conn_lost_cb)
            extra = {"ssl": ssl_context, "server_hostname": host} if ssl_context is not None else {}
            self._client_task = local.create_task(local.create_connection(lambda: self.protocol, ip, port, **extra))

    return Pinned(host=host, port=port, timeout=timeout, ssl_context=tls)


def _checked_address(settings: Settings, host: str, port: int) -> str:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ImportFailed(f"{host} does not resolve: {exc.strerror}") from None
    ips = list(dict.fromkeys(info[4][0] for info in infos))
    if not ips or not all(addresses.permitted(settings, ip) for ip in ips):
        raise ImportFailed(f"{host} resolves to an address the appliance does not connect to (private or its own).")
    return ips[0]


async def _connect(settings: Settings, job: Claimed) -> aioimaplib.IMAP4:
    ip = await asyncio.get_running_loop().run_in_executor(None, _checked_address, settings, job.host, job.port)
    tls = ssl.create_default_context() if job.security == "tls" else None
    client = _pinned(ip, job.host, job.port, tls, settings.import_timeout)
    await client.wait_hello_from_server()
    response = await client.login(job.username, job.password)
    if response.result != "OK":
        raise ImportFailed(f"{job.host} refused the user name or password")
    return client


async def _folders(client: aioimaplib.IMAP4, wanted: list[str]) -> list[str]:
    response = await client.list('""', "*")
    found = []
    for line in response.lines:
        match = _LIST.match(bytes(line))
        if match is None or any(flag in match.group("flags").lower() for flag in _NOT_FOLDERS):
            continue
        name = match.group("name").decode("ascii", "replace")
        found.append(name[1:-1].replace('\\"', '"').replace("\\\\", "\\") if name.startswith('"') else name)
    if wanted:
        from imapclient import imap_utf7

        missing = [w for w in wanted if w not in found and imap_utf7.encode(w).decode() not in found]
        if missing:
            raise ImportFailed(f"no such folder on the server: {', '.join(missing)}")
        return [f for f in found if f in wanted or _label(f) in wanted]
    return found


_ATOM = re.compile(r"^[A-Za-z0-9&+,./_:=-]+$")


def _quoted(folder: str) -> str:
    """The folder as a command argument: bare when it is an atom (as sent by LIST), else quoted."""
    if _ATOM.match(folder):
        return folder
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def _uids(client: aioimaplib.IMAP4, folder: str, since: str | None) -> tuple[int, list[int]]:
    response = await client.select(_quoted(folder))
    if response.result != "OK":
        raise ImportFailed(f"cannot open the folder {folder}")
    validity = next((int(m.group(1)) for line in response.lines if (m := _UIDVALIDITY.search(bytes(line)))), 0)
    criteria = ["SINCE", dt.date.fromisoformat(since).strftime("%d-%b-%Y")] if since else ["ALL"]
    response = await client.uid_search(*criteria, charset=None)
    numbers = [int(n) for line in response.lines[:-1] for n in re.findall(rb"\d+", bytes(line))]
    return validity, sorted(set(numbers))


async def _fetch(client: aioimaplib.IMAP4, uid: int) -> Fetched | None:
    response = await client.uid("fetch", str(uid), "(UID FLAGS BODY.PEEK[])")
    lines = response.lines
    for index, line in enumerate(lines[:-1]):
        match = _FETCH.match(bytes(line))
        if match is None or index + 1 >= len(lines):
            continue
        head = bytes(line) + (bytes(lines[index + 2]) if index + 2 < len(lines) else b"")
        flags = _FLAGS.search(head)
        found = _UID.search(head)
        return Fetched(int(found.group(1)) if found else uid,
                       tuple(flags.group(1).decode("ascii", "replace").split()) if flags else (),
                       wire_bytes(bytes(lines[index + 1])))  # stored with CRLF, as received mail is
    return None  # expunged meanwhile


async def run(store: Store, settings: Settings, job: Claimed, owner: str) -> None:
    """Copy the job's folders in; the caller finishes the job (or lets its lease run out)."""
    client = await _connect(settings, job)
    try:
        for folder in await _folders(client, job.folders):
            await _copy_folder(store, settings, client, job, owner, folder)
    finally:
        try:
            await client.logout()
        except Exception:  # noqa: BLE001 - the server may be gone; the import is done either way
            pass
        transport = getattr(client.protocol, "transport", None)
        if transport is not None:
            transport.close()


async def _copy_folder(store: Store, settings: Settings, client: aioimaplib.IMAP4, job: Claimed, owner: str,
                       folder: str) -> None:
    validity, uids = await _uids(client, folder, job.since)
    with store.session() as db:
        state = (db.get(MailImport, job.id).progress or {}).get(folder) or {}
    if state.get("uidvalidity") == validity:
        uids = [u for u in uids if u > state.get("last_uid", 0)]
    loop = asyncio.get_running_loop()
    pause = BATCH / settings.import_rate
    for start in range(0, len(uids), BATCH):
        began = loop.time()
        batch = [f for uid in uids[start:start + BATCH] if (f := await _fetch(client, uid)) is not None]
        if batch:
            await loop.run_in_executor(None, _record_batch, store, settings, job.id, owner, folder, validity, batch,
                                       len(uids))
        await asyncio.sleep(max(0.0, pause - (loop.time() - began)))  # the pace: import_rate messages a second


def _record_batch(store: Store, settings: Settings, import_id: str, owner: str, folder: str, validity: int,
                  batch: list[Fetched], total: int) -> None:
    with store.session() as db, events.acting_as(events.WORKER):
        record(db, settings, import_id, owner, folder, validity, batch, total)


def run_claimed(store: Store, settings: Settings, owner: str) -> int:
    """Claim and run imports until none is waiting (the worker's); returns how many ran."""
    ran = 0
    while True:
        with store.session() as db:
            job = claim(db, settings, owner)
        if job is None:
            return ran
        from aioimaplib import aioimaplib  # once there is an import to run: the idle worker never loads it
        ran += 1
        error = ""
        try:
            asyncio.run(run(store, settings, job, owner))
        except LeaseLost:
            continue
        except ImportFailed as exc:
            error = str(exc)
        except (OSError, asyncio.TimeoutError, aioimaplib.AioImapException) as exc:
            error = f"the connection to {job.host} failed: {exc or type(exc).__name__}"
        with store.session() as db, events.acting_as(events.WORKER):
            finish(db, job.id, owner, error)
