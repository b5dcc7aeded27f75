"""One IMAP connection: its state (not authenticated, authenticated, selected), its view of the
selected folder (sequence numbers to UIDs), and the commands (RFC 3501 section 6 with IDLE,
UIDPLUS, MOVE, SPECIAL-USE, LITERAL+, ENABLE, NAMESPACE, ID, UNSELECT).

The session holds no mail: every command reads the store through the mailboxes service, in the
server's thread pool, and each change another session or the API made is announced as untagged
EXISTS / EXPUNGE / FETCH FLAGS responses (EXPUNGE never during FETCH, STORE or SEARCH, RFC 3501
section 7.4.1). IDLE is woken by the event stream's notifier when a commit touches the inbox.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError, OperationalError

from appliance.errors import (ConflictError, GentError, NotFoundError, RateLimitedError, UnauthorizedError,
                              ValidationError)
from appliance.models import Inbox
from appliance.services.mail import mailboxes
from appliance.services.mail.mailboxes import SEEN, Entry, View
from imap import fetch as fetching
from imap import utf7
from imap.auth import Login, authenticate, may_write
from imap.protocol import Atom, CommandError, Disconnected, astring, parse, quoted, read_command, read_line
from imap.search import Candidate, Compiler, sequence_set

if TYPE_CHECKING:
    from imap.server import ImapServer

log = logging.getLogger("gentbox.imap")

BASE_CAPS = "IMAP4rev1 LITERAL+ ID ENABLE"
AUTHED_CAPS = "IDLE NAMESPACE UIDPLUS MOVE SPECIAL-USE UNSELECT CHILDREN"
FLAGS = "\\Answered \\Flagged \\Deleted \\Seen \\Draft"
FETCH_CHUNK = 50  # messages whose bytes are read from the store at a time
STORE_ATTEMPTS = 5  # a command's transaction, again after a conflict with a concurrent one
_MACROS = {"ALL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"],
           "FAST": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
           "FULL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"]}
_ANY = {"CAPABILITY", "NOOP", "LOGOUT", "ID"}
_NONAUTH = {"STARTTLS", "LOGIN", "AUTHENTICATE"}
_AUTH = {"SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE", "LIST", "LSUB",
         "STATUS", "APPEND", "NAMESPACE", "ENABLE", "IDLE"}
_SELECTED = {"CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH", "FETCH", "STORE", "COPY", "MOVE", "UID"}


class Session:
    """The state and commands of one client connection."""

    def __init__(self, server: ImapServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                 tls: bool, client_ip: str) -> None:
        self.server, self.reader, self.writer = server, reader, writer
        self.settings = server.settings
        self.tls, self.client_ip = tls, client_ip
        self.login: Login | None = None
        self.inbox_id = ""
        self.actor: str | None = None  # what events name as the actor: the person's or token's id
        self.folder: str | None = None
        self.readonly = False
        self.view: View | None = None
        self.uids: list[int] = []
        self.entries: dict[int, Entry] = {}
        self.max_uid = 0
        self._budget = (time.monotonic(), 0)

    # --- the loop ----------------------------------------------------------------------------
    async def run(self) -> None:
        await self.send(f"* OK [CAPABILITY {self.capabilities()}] Gentbox IMAP ready")
        while True:
            try:
                tag, name, parts = await read_command(self.reader, self._go_on, timeout=self.settings.imap_timeout,
                                                      max_append=self.settings.max_message_bytes)
            except CommandError as exc:
                await self.send(f"{exc.tag} {exc.status} {exc.text}")
                if exc.close:
                    await self.send("* BYE Closing the connection")
                    return
                continue
            await self._throttle()
            if not await self.dispatch(tag, name, parts):
                return

    async def _go_on(self) -> None:
        await self.send("+ Ready for literal data")

    async def _throttle(self) -> None:
        """More than imap_commands_per_minute: each further command waits its share of the minute."""
        start, used = self._budget
        now = time.monotonic()
        if now - start > 60:
            start, used = now, 0
        self._budget = (start, used + 1)
        if used >= self.settings.imap_commands_per_minute:
            await asyncio.sleep(60 / self.settings.imap_commands_per_minute)

    async def dispatch(self, tag: str, name: str, parts: list) -> bool:
        """Carry out one command; False when the connection is to close."""
        base = name.split(" ", 1)[0]
        try:
            if not tag or tag == "*" or not base.isalpha():
                raise CommandError("Missing tag or command")
            self._check_state(base)
            if self.login is not None and _writes(name) and not may_write(self.login):
                raise CommandError("[NOPERM] This token may only read (it has no email:write scope)", status="NO")
            tokens = parse(parts)[2:] if base != "UID" else parse(parts)[3:]
            handler = getattr(self, "cmd_" + name.replace(" ", "_").lower(), None)
            if handler is None:
                raise CommandError(f"Unknown command {name[:40]}")
            done = await handler(tag, tokens)
            return done is not False
        except CommandError as exc:
            await self.send(f"{tag or '*'} {exc.status} {exc.text}")
            if exc.close:
                await self.send("* BYE Closing the connection")
            return not exc.close
        except GentError as exc:
            await self.send(f"{tag} {self._no(exc)}")
            return True
        except _Gone:
            await self.send("* BYE The inbox is no longer available")
            return False
        except (ConnectionError, Disconnected):
            return False
        except Exception:  # noqa: BLE001 - a bug or a store outage fails this command, not the session
            log.exception("imap: %s failed", name[:20])
            await self.send(f"{tag} NO [SERVERBUG] The command failed; try again")
            return True

    def _no(self, exc: GentError) -> str:
        if isinstance(exc, UnauthorizedError):
            return "NO [AUTHENTICATIONFAILED] Authentication failed"
        if isinstance(exc, RateLimitedError):
            return f"NO [UNAVAILABLE] {exc.message} Retry in {exc.retry_after} s"
        if isinstance(exc, NotFoundError):
            return f"NO [NONEXISTENT] {exc.message}"
        if isinstance(exc, ConflictError):
            return f"NO [CANNOT] {exc.message}"
        if isinstance(exc, ValidationError):
            return f"BAD {exc.message}"
        return f"NO {exc.message}"

    def _check_state(self, name: str) -> None:
        if name in _ANY:
            return
        if name in _NONAUTH:
            if self.login is not None:
                raise CommandError("Already authenticated")
            return
        if self.login is None and (name in _AUTH or name in _SELECTED):
            raise CommandError("Log in first")
        if name in _SELECTED and self.folder is None:
            raise CommandError("Select a mailbox first")

    async def send(self, line: str | bytes) -> None:
        data = line.encode("utf-8") if isinstance(line, str) else line
        self.writer.write(data + b"\r\n")
        await self.writer.drain()

    async def db(self, fn: Any, *args: Any, **kw: Any) -> Any:
        """fn(db, inbox, *args) in the store's thread pool, in one transaction (committed)."""
        return await self.server.in_store(self._in_store, fn, args, kw)

    def _in_store(self, fn: Any, args: tuple, kw: dict) -> Any:
        for attempt in range(STORE_ATTEMPTS):
            with self.server.store.sessions() as db:
                inbox = db.get(Inbox, self.inbox_id)
                if inbox is None or inbox.status != "active":
                    raise _Gone()
                try:
                    result = fn(db, inbox, *args, **kw)
                    db.commit()
                    return result
                except (IntegrityError, OperationalError):
                    # Another session made the same label or took the same rows first: the whole
                    # command's transaction again sees what it did.
                    if attempt == STORE_ATTEMPTS - 1:
                        raise
                    db.rollback()
        raise AssertionError("unreachable")

    def capabilities(self) -> str:
        caps = BASE_CAPS
        if not self.tls:
            return caps + (" STARTTLS LOGINDISABLED" if self.server.tls_context else " LOGINDISABLED")
        caps += f" {AUTHED_CAPS} APPENDLIMIT={self.settings.max_message_bytes}"
        return caps if self.login is not None else caps + " AUTH=PLAIN SASL-IR"

    # --- any state ------------------------------------------------------------------------------
    async def cmd_capability(self, tag: str, args: list) -> None:
        await self.send(f"* CAPABILITY {self.capabilities()}")
        await self.send(f"{tag} OK CAPABILITY completed")

    async def cmd_noop(self, tag: str, args: list) -> None:
        if self.folder is not None:
            await self.refresh(expunges=True)
        await self.send(f"{tag} OK NOOP completed")

    async def cmd_check(self, tag: str, args: list) -> None:
        await self.cmd_noop(tag, args)

    async def cmd_logout(self, tag: str, args: list) -> bool:
        await self.send("* BYE Logging out")
        await self.send(f"{tag} OK LOGOUT completed")
        return False

    async def cmd_id(self, tag: str, args: list) -> None:
        await self.send('* ID ("name" "Gentbox" "vendor" "Gentbox")')
        await self.send(f"{tag} OK ID completed")

    # --- not authenticated ---------------------------------------------------------------------
    async def cmd_starttls(self, tag: str, args: list) -> bool:
        if self.tls or self.server.tls_context is None:
            raise CommandError("TLS is not available here" if not self.tls else "TLS is on already")
        if self.reader._buffer:  # noqa: SLF001 - commands sent before the handshake would be trusted
            raise CommandError("Commands after STARTTLS before the handshake", close=True)
        await self.send(f"{tag} OK Begin TLS negotiation now")
        try:
            await self.writer.start_tls(self.server.tls_context)
        except (OSError, asyncio.TimeoutError) as exc:
            log.info("imap: TLS handshake failed: %s", type(exc).__name__)
            return False
        self.tls = True
        return True

    async def cmd_login(self, tag: str, args: list) -> None:
        if not self.tls:
            raise CommandError("[PRIVACYREQUIRED] Use STARTTLS (or port 993) before LOGIN", status="NO")
        if len(args) != 2:
            raise CommandError("LOGIN takes a user name and a password")
        await self._log_in(tag, astring(args[0], "user name"), astring(args[1], "password"))

    async def cmd_authenticate(self, tag: str, args: list) -> None:
        if not self.tls:
            raise CommandError("[PRIVACYREQUIRED] Use STARTTLS (or port 993) first", status="NO")
        if not args or str(args[0]).upper() != "PLAIN" or len(args) > 2:
            raise CommandError("Only AUTHENTICATE PLAIN is offered", status="NO")
        if len(args) == 2:
            response = astring(args[1])
        else:
            await self.send("+ ")
            try:
                response = (await read_line(self.reader, self.settings.imap_timeout)).decode("ascii", "replace")
            except Disconnected:
                raise _Gone() from None
        if response.strip() == "*":
            raise CommandError("Authentication cancelled")
        try:
            authz, user, password = base64.b64decode(response, validate=True).decode("utf-8").split("\0")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise CommandError("Malformed PLAIN response") from None
        if authz and authz.lower() != user.lower():
            raise CommandError("[AUTHORIZATIONFAILED] Cannot act as another user", status="NO")
        await self._log_in(tag, user, password)

    async def _log_in(self, tag: str, user: str, password: str) -> None:
        server = self.server
        login = await server.in_store(self._check, user, password)
        if not server.take_account_slot(login.inbox.id):
            raise CommandError("[LIMIT] Too many sessions for this inbox", status="NO")
        self.login, self.inbox_id, self.actor = login, login.inbox.id, login.principal.id
        await self.send(f"{tag} OK [CAPABILITY {self.capabilities()}] Logged in")

    def _check(self, user: str, password: str) -> Login:
        store = self.server.store
        with store.sessions() as db, store.counter_sessions() as counters:
            login = authenticate(db, counters, self.settings, user, password, self.client_ip)
            db.commit()
            return login

    def release(self) -> None:
        """Give back the account slot (the connection ended)."""
        if self.login is not None:
            self.server.release_account_slot(self.inbox_id)

    # --- authenticated ------------------------------------------------------------------------------
    async def cmd_enable(self, tag: str, args: list) -> None:
        await self.send("* ENABLED")  # no extension that ENABLE turns on is offered
        await self.send(f"{tag} OK ENABLE completed")

    async def cmd_namespace(self, tag: str, args: list) -> None:
        await self.send('* NAMESPACE (("" "/")) NIL NIL')
        await self.send(f"{tag} OK NAMESPACE completed")

    def _mailbox(self, token: object) -> str:
        try:
            return utf7.decode(astring(token, "mailbox name"))
        except utf7.Utf7Error as exc:
            raise CommandError(f"Invalid mailbox name: {exc}") from None

    async def cmd_select(self, tag: str, args: list, readonly: bool = False) -> None:
        if len(args) != 1:
            raise CommandError("SELECT takes a mailbox name")
        name = self._mailbox(args[0])
        self.folder = None
        view = await self.db(lambda db, inbox: mailboxes.sync(db, inbox, mailboxes.canonical(db, inbox, name)))
        self.folder, self.readonly, self.view = view.name, readonly, view
        self.uids = [e.uid for e in view.entries]
        self.entries = {e.uid: e for e in view.entries}
        self.max_uid = max(self.uids, default=0)
        unseen = next((i for i, e in enumerate(view.entries, 1) if SEEN not in e.flags), None)
        lines = [f"* FLAGS ({FLAGS})",
                 f"* OK [PERMANENTFLAGS ({'' if readonly else FLAGS + ' '}\\*)] Flags permitted",
                 f"* {len(self.uids)} EXISTS", "* 0 RECENT",
                 f"* OK [UIDVALIDITY {view.uid_validity}] UIDs valid", f"* OK [UIDNEXT {view.uid_next}] Predicted next UID"]
        if unseen is not None:
            lines.append(f"* OK [UNSEEN {unseen}] First unseen")
        for line in lines:
            await self.send(line)
        mode = "READ-ONLY" if readonly else "READ-WRITE"
        await self.send(f"{tag} OK [{mode}] {'EXAMINE' if readonly else 'SELECT'} completed")

    async def cmd_examine(self, tag: str, args: list) -> None:
        await self.cmd_select(tag, args, readonly=True)

    async def cmd_create(self, tag: str, args: list) -> None:
        if len(args) != 1:
            raise CommandError("CREATE takes a mailbox name")
        name = self._mailbox(args[0]).rstrip("/")
        await self.db(mailboxes.create_folder, name)
        await self.send(f"{tag} OK CREATE completed")

    async def cmd_delete(self, tag: str, args: list) -> None:
        if len(args) != 1:
            raise CommandError("DELETE takes a mailbox name")
        await self.db(mailboxes.delete_folder, self._mailbox(args[0]))
        await self.send(f"{tag} OK DELETE completed")

    async def cmd_rename(self, tag: str, args: list) -> None:
        raise CommandError("[CANNOT] Rename the label in the web UI or the API", status="NO")

    async def cmd_subscribe(self, tag: str, args: list) -> None:
        await self.send(f"{tag} OK SUBSCRIBE completed (every folder is subscribed)")

    async def cmd_unsubscribe(self, tag: str, args: list) -> None:
        await self.send(f"{tag} OK UNSUBSCRIBE completed (every folder stays subscribed)")

    async def cmd_list(self, tag: str, args: list, verb: str = "LIST") -> None:
        if len(args) != 2:
            raise CommandError(f"{verb} takes a reference and a pattern")
        reference, pattern = self._mailbox(args[0]), self._mailbox(args[1])
        if pattern == "":
            await self.send(f'* {verb} (\\Noselect) "/" ""')
            return await self.send(f"{tag} OK {verb} completed")
        names = await self.db(mailboxes.folder_names)
        for name in names:
            if _matches(reference + pattern, name):
                attrs = ["\\HasNoChildren"] + ([mailboxes.SPECIAL_USE[name]] if mailboxes.SPECIAL_USE.get(name) else [])
                await self.send(f"* {verb} ({' '.join(attrs)}) \"/\" ".encode() + quoted(utf7.encode(name)))
        await self.send(f"{tag} OK {verb} completed")

    async def cmd_lsub(self, tag: str, args: list) -> None:
        await self.cmd_list(tag, args, verb="LSUB")

    async def cmd_status(self, tag: str, args: list) -> None:
        if len(args) != 2 or not isinstance(args[1], list):
            raise CommandError("STATUS takes a mailbox and a list of items")
        name = self._mailbox(args[0])
        view = await self.db(lambda db, inbox: mailboxes.sync(db, inbox, mailboxes.canonical(db, inbox, name)))
        total, unseen = mailboxes.counts(view)
        values = {"MESSAGES": total, "RECENT": 0, "UIDNEXT": view.uid_next, "UIDVALIDITY": view.uid_validity,
                  "UNSEEN": unseen}
        items = []
        for item in args[1]:
            key = str(item).upper()
            if key not in values:
                raise CommandError(f"Unknown STATUS item {key[:20]}")
            items.append(f"{key} {values[key]}")
        await self.send(b"* STATUS " + quoted(utf7.encode(view.name)) + f" ({' '.join(items)})".encode())
        await self.send(f"{tag} OK STATUS completed")

    async def cmd_append(self, tag: str, args: list) -> None:
        if len(args) < 2 or not isinstance(args[-1], bytes):
            raise CommandError("APPEND takes a mailbox, optional flags and date, and a literal")
        name = self._mailbox(args[0])
        flags = [str(f) for f in args[1]] if len(args) > 2 and isinstance(args[1], list) else []
        validity, uid = await self.db(mailboxes.append, name, bytes(args[-1]), flags)
        if self.folder is not None:
            await self.refresh(expunges=True)
        await self.send(f"{tag} OK [APPENDUID {validity} {uid}] APPEND completed")

    async def cmd_idle(self, tag: str, args: list) -> bool:
        await self.send("+ idling")
        waker = self.server.waker
        generation = waker.generation
        if self.folder is not None:
            await self.refresh(expunges=True)
        done = asyncio.ensure_future(read_line(self.reader, self.settings.imap_timeout))
        try:
            while True:
                changed = asyncio.ensure_future(waker.changed(generation))
                finished, _ = await asyncio.wait({done, changed}, return_when=asyncio.FIRST_COMPLETED)
                if done in finished:
                    changed.cancel()
                    break
                generation = changed.result()
                if self.folder is not None:
                    await self.refresh(expunges=True)
        finally:
            if not done.done():
                done.cancel()
        try:
            line = done.result()
        except (Disconnected, CommandError):
            return False
        if line.upper() != b"DONE":
            raise CommandError("Expected DONE")
        await self.send(f"{tag} OK IDLE terminated")
        return True

    # --- selected -----------------------------------------------------------------------------------
    async def refresh(self, *, expunges: bool) -> None:
        """Read the folder again and announce what changed since this session last looked."""
        view = await self.db(mailboxes.sync, self.folder)
        await self._apply(view, expunges)

    async def _apply(self, view: View, expunges: bool) -> None:
        current = {e.uid: e for e in view.entries}
        out = []
        if expunges:
            for index in range(len(self.uids) - 1, -1, -1):  # highest first: lower numbers stay valid
                uid = self.uids[index]
                if uid not in current:
                    out.append(f"* {index + 1} EXPUNGE")
                    del self.uids[index]
                    self.entries.pop(uid, None)
        for seq, uid in enumerate(self.uids, 1):
            entry = current.get(uid)
            if entry is not None and entry.flags != self.entries[uid].flags:
                out.append(f"* {seq} FETCH (UID {uid} FLAGS ({_flags(entry.flags)}))")
            if entry is not None:
                self.entries[uid] = entry
        added = [e for e in view.entries if e.uid > self.max_uid]
        if added:
            self.uids += [e.uid for e in added]
            self.entries.update({e.uid: e for e in added})
            self.max_uid = added[-1].uid
            out.append(f"* {len(self.uids)} EXISTS")
        self.view = view
        for line in out:
            await self.send(line)

    def _targets(self, token: object, by_uid: bool) -> list[tuple[int, int]]:
        """(seq, uid) of the messages a sequence set names, in order."""
        if by_uid:
            wanted = sequence_set(token, self.max_uid)
            return [(seq, uid) for seq, uid in enumerate(self.uids, 1) if uid in wanted]
        wanted = sequence_set(token, len(self.uids))
        if any(n > len(self.uids) for n in wanted) and str(token) != "*":
            raise CommandError("No such message sequence number")
        return [(seq, self.uids[seq - 1]) for seq in sorted(wanted) if seq <= len(self.uids)]

    async def cmd_close(self, tag: str, args: list) -> None:
        if not self.readonly:
            await self.db(mailboxes.expunge, self.view, None, actor=self.actor)
        self.folder = None
        await self.send(f"{tag} OK CLOSE completed")

    async def cmd_unselect(self, tag: str, args: list) -> None:
        self.folder = None
        await self.send(f"{tag} OK UNSELECT completed")

    async def cmd_expunge(self, tag: str, args: list, uids: list[int] | None = None) -> None:
        if self.readonly:
            raise CommandError("The mailbox is read-only", status="NO")
        await self.refresh(expunges=True)
        await self.db(mailboxes.expunge, self.view, uids, actor=self.actor)
        await self.refresh(expunges=True)
        await self.send(f"{tag} OK EXPUNGE completed")

    async def cmd_uid_expunge(self, tag: str, args: list) -> None:
        if len(args) != 1:
            raise CommandError("UID EXPUNGE takes a UID set")
        await self.cmd_expunge(tag, [], uids=[uid for _, uid in self._targets(args[0], True)])

    async def cmd_search(self, tag: str, args: list, by_uid: bool = False) -> None:
        await self.refresh(expunges=by_uid)
        predicate = Compiler(len(self.uids), self.max_uid).compile(args)
        candidates = [(seq, self.entries[uid]) for seq, uid in enumerate(self.uids, 1)]
        # In the store's thread pool: a search that reads bodies must not hold up other sessions.
        matched = await self.server.in_store(_search, self.server.store, predicate, candidates)
        found = [entry.uid if by_uid else seq for seq, entry in matched]
        await self.send(f"* SEARCH{''.join(f' {n}' for n in found)}")
        await self.send(f"{tag} OK SEARCH completed")

    async def cmd_uid_search(self, tag: str, args: list) -> None:
        await self.cmd_search(tag, args, by_uid=True)

    async def cmd_fetch(self, tag: str, args: list, by_uid: bool = False) -> None:
        if len(args) != 2:
            raise CommandError("FETCH takes a sequence set and data items")
        await self.refresh(expunges=by_uid)
        items = _fetch_items(args[1], by_uid)
        targets = self._targets(args[0], by_uid)
        needs_raw = any(i[0] in ("BODY[]", "RFC822", "RFC822.HEADER", "RFC822.TEXT", "ENVELOPE", "BODYSTRUCTURE",
                                 "BODY") for i in items)
        marks = not self.readonly and any(i[0] in ("BODY[]", "RFC822", "RFC822.TEXT") and not i[2] for i in items)
        for start in range(0, len(targets), FETCH_CHUNK):
            chunk = [(seq, uid) for seq, uid in targets[start:start + FETCH_CHUNK] if uid in self.entries]
            ids = [self.entries[uid].message_id for _, uid in chunk]
            raws = await self.db(lambda db, inbox: mailboxes.raw_of(db, ids)) if needs_raw else {}
            if marks:
                unseen = [uid for _, uid in chunk if SEEN not in self.entries[uid].flags]
                if unseen:
                    await self.db(mailboxes.store_flags, self.view, unseen, [SEEN], "add", actor=self.actor)
                    view = await self.db(mailboxes.sync, self.folder)
                    self.entries.update({e.uid: e for e in view.entries if e.uid in self.entries})
            for seq, uid in chunk:
                entry = self.entries[uid]
                raw = raws.get(entry.message_id)
                if needs_raw and raw is None:
                    continue  # deleted meanwhile; its EXPUNGE comes with the next command
                await self.send(f"* {seq} FETCH (".encode() + _render(items, entry, raw, marks) + b")")
        await self.send(f"{tag} OK FETCH completed")

    async def cmd_uid_fetch(self, tag: str, args: list) -> None:
        await self.cmd_fetch(tag, args, by_uid=True)

    async def cmd_store(self, tag: str, args: list, by_uid: bool = False) -> None:
        if len(args) != 3:
            raise CommandError("STORE takes a sequence set, an item and flags")
        if self.readonly:
            raise CommandError("The mailbox is read-only", status="NO")
        item = str(args[1]).upper()
        mode = {"FLAGS": "set", "+FLAGS": "add", "-FLAGS": "remove"}.get(item.removesuffix(".SILENT"))
        if mode is None:
            raise CommandError("Unknown STORE item")
        flags = [str(f) for f in (args[2] if isinstance(args[2], list) else [args[2]])]
        await self.refresh(expunges=by_uid)
        targets = self._targets(args[0], by_uid)
        await self.db(mailboxes.store_flags, self.view, [uid for _, uid in targets], flags, mode, actor=self.actor)
        view = await self.db(mailboxes.sync, self.folder)
        current = {e.uid: e for e in view.entries}
        for seq, uid in targets:
            entry = current.get(uid)
            if entry is None:
                continue
            self.entries[uid] = entry
            if not item.endswith(".SILENT"):
                prefix = f"UID {uid} " if by_uid else ""
                await self.send(f"* {seq} FETCH ({prefix}FLAGS ({_flags(entry.flags)}))")
        await self.send(f"{tag} OK STORE completed")

    async def cmd_uid_store(self, tag: str, args: list) -> None:
        await self.cmd_store(tag, args, by_uid=True)

    async def cmd_copy(self, tag: str, args: list, by_uid: bool = False, move: bool = False) -> None:
        if len(args) != 2:
            raise CommandError("COPY/MOVE take a sequence set and a mailbox")
        if move and self.readonly:
            raise CommandError("The mailbox is read-only", status="NO")
        await self.refresh(expunges=by_uid or move)
        uids = [uid for _, uid in self._targets(args[0], by_uid)]
        dest = self._mailbox(args[1])
        fn = mailboxes.move if move else mailboxes.copy
        pairs = await self.db(lambda db, inbox: (fn(db, inbox, self.view, uids, dest, actor=self.actor),
                                                 mailboxes.sync(db, inbox, mailboxes.canonical(db, inbox, dest))))
        pairs, dest_view = pairs
        code = ""
        if pairs:
            code = (f"[COPYUID {dest_view.uid_validity} {','.join(str(s) for s, _ in pairs)} "
                    f"{','.join(str(d) for _, d in pairs)}] ")
        if move:
            if code:
                await self.send(f"* OK {code}Moved")
            await self.refresh(expunges=True)
            await self.send(f"{tag} OK MOVE completed")
        else:
            await self.refresh(expunges=by_uid)
            await self.send(f"{tag} OK {code}COPY completed")

    async def cmd_uid_copy(self, tag: str, args: list) -> None:
        await self.cmd_copy(tag, args, by_uid=True)

    async def cmd_move(self, tag: str, args: list) -> None:
        await self.cmd_copy(tag, args, move=True)

    async def cmd_uid_move(self, tag: str, args: list) -> None:
        await self.cmd_copy(tag, args, by_uid=True, move=True)


def _writes(name: str) -> bool:
    return name.removeprefix("UID ") in ("STORE", "EXPUNGE", "COPY", "MOVE", "APPEND", "CREATE", "DELETE")


class _Gone(Exception):
    """The inbox was deleted or paused while the session was open."""


def _search(store: Any, predicate: Any, candidates: list[tuple[int, Entry]]) -> list[tuple[int, Entry]]:
    """The candidates the predicate keeps; message bytes are read a chunk at a time, and only when
    a criterion looks at them."""
    matched = []
    for start in range(0, len(candidates), FETCH_CHUNK):
        chunk = candidates[start:start + FETCH_CHUNK]
        raws: dict[str, bytes] = {}

        def loader(message_id: str, chunk: list = chunk, raws: dict = raws) -> Any:
            def load():  # noqa: ANN202
                if not raws:
                    with store.sessions() as db:
                        raws.update(mailboxes.raw_of(db, [e.message_id for _, e in chunk]))
                return fetching.parse(raws.get(message_id, b""))
            return load

        for seq, entry in chunk:
            candidate = Candidate(seq, entry.uid, entry.flags, entry.size, entry.internal_date,
                                  load=loader(entry.message_id))
            if predicate(candidate):
                matched.append((seq, entry))
    return matched


def _matches(pattern: str, name: str) -> bool:
    """LIST wildcards: * matches anything, % anything but the hierarchy delimiter."""
    import re

    regex = "".join(".*" if c == "*" else "[^/]*" if c == "%" else re.escape(c) for c in pattern)
    if re.fullmatch(regex, name, re.S):
        return True
    return pattern.upper() == "INBOX" and name == "INBOX"


def _flags(flags: frozenset) -> str:
    return " ".join(sorted(flags))


def _fetch_items(token: object, by_uid: bool) -> list[tuple[str, str, bool, int | None, int | None, str]]:
    """(kind, section, peek, origin, count, the name to answer with) per FETCH item."""
    raw_items = token if isinstance(token, list) else [token]
    if len(raw_items) == 1 and str(raw_items[0]).upper() in _MACROS:
        raw_items = [Atom(i) for i in _MACROS[str(raw_items[0]).upper()]]
    items = []
    for item in raw_items:
        if not isinstance(item, Atom):
            raise CommandError("Bad FETCH item")
        items.append(_fetch_item(item))
    if by_uid and not any(i[0] == "UID" for i in items):
        items.insert(0, ("UID", "", True, None, None, "UID"))
    return items


def _fetch_item(item: str) -> tuple[str, str, bool, int | None, int | None, str]:
    upper = item.upper()
    if upper in ("UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODYSTRUCTURE", "BODY", "RFC822",
                 "RFC822.HEADER", "RFC822.TEXT"):
        return (upper, "", upper == "RFC822.HEADER", None, None, upper)
    for prefix, peek in (("BODY.PEEK[", True), ("BODY[", False)):
        if upper.startswith(prefix) and "]" in upper:
            spec, rest = item[len(prefix):].split("]", 1)
            origin = count = None
            if rest:
                if not (rest.startswith("<") and rest.endswith(">")):
                    raise CommandError("Bad partial")
                first, _, second = rest[1:-1].partition(".")
                if not first.isdigit() or (second and not second.isdigit()) or len(first) > 10 or len(second) > 10:
                    raise CommandError("Bad partial")
                origin, count = int(first), int(second) if second else None
            return ("BODY[]", spec, peek, origin, count, f"BODY[{spec.upper()}]")
    raise CommandError(f"Unknown FETCH item {item[:40]}")


def _render(items: list, entry: Entry, raw: bytes | None, marks: bool) -> bytes:
    out: list[bytes] = []
    parsed = None
    flags_sent = False
    for kind, spec, peek, origin, count, name in items:
        if kind == "UID":
            out.append(b"UID %d" % entry.uid)
        elif kind == "FLAGS":
            out.append(f"FLAGS ({_flags(entry.flags)})".encode())
            flags_sent = True
        elif kind == "INTERNALDATE":
            out.append(b'INTERNALDATE "' + entry.internal_date.strftime("%d-%b-%Y %H:%M:%S +0000").encode() + b'"')
        elif kind == "RFC822.SIZE":
            out.append(b"RFC822.SIZE %d" % len(raw) if raw is not None else b"RFC822.SIZE %d" % entry.size)
        elif kind in ("ENVELOPE", "BODYSTRUCTURE", "BODY"):
            parsed = parsed or fetching.parse(raw)
            if kind == "ENVELOPE":
                out.append(b"ENVELOPE " + fetching.envelope(parsed))
            else:
                out.append(kind.encode() + b" " + fetching.bodystructure(parsed, extended=kind == "BODYSTRUCTURE"))
        elif kind in ("RFC822", "RFC822.HEADER", "RFC822.TEXT"):
            spec = {"RFC822": "", "RFC822.HEADER": "HEADER", "RFC822.TEXT": "TEXT"}[kind]
            out.append(kind.encode() + b" " + fetching.body_item(raw, spec, None, None)[1])
        else:
            suffix, data = fetching.body_item(raw, spec, origin, count)
            out.append(name.encode() + suffix + b" " + data)
    if marks and not flags_sent:
        out.append(f"FLAGS ({_flags(entry.flags)})".encode())
    return b" ".join(out)
