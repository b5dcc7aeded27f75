"""Reading and parsing IMAP commands with hard limits, and writing IMAP data (RFC 3501 section 9).

A command is read as lines and literals. Every size is bounded before memory is spent on it: a
line (`MAX_LINE`), a literal (64 KiB, or the message size limit for APPEND), the literals of one
command, and the nesting of parenthesised lists (`MAX_DEPTH`). A synchronising literal that is too
big is refused before the client sends it (`NO [TOOBIG]`); a non-synchronising one (LITERAL+)
that is too big ends the connection, since its bytes are already on their way.
"""
from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable

MAX_LINE = 64 * 1024
MAX_LITERAL = 64 * 1024  # of any command but APPEND
MAX_LITERALS = 1000  # per command
MAX_DEPTH = 32
_LITERAL_END = re.compile(rb"\{(\d{1,20})(\+?)\}$")
_ATOM_STOP = b' ()"{\r\n'


class Atom(str):
    """An IMAP atom (NIL, a flag, a sequence set, a fetch item...), as opposed to a string."""


class CommandError(Exception):
    """A command that cannot be carried out: answered `tag BAD|NO text`; `close` ends the connection."""

    def __init__(self, text: str, *, status: str = "BAD", tag: str = "*", close: bool = False) -> None:
        super().__init__(text)
        self.text, self.status, self.tag, self.close = text, status, tag, close


class Disconnected(Exception):
    """The client went away (or was silent too long) in the middle of a command."""


def _tag_and_name(line: bytes) -> tuple[str, str]:
    parts = line.split(b" ", 2)
    tag = parts[0].decode("ascii", "replace") if parts and parts[0] else "*"
    name = parts[1].decode("ascii", "replace").upper() if len(parts) > 1 else ""
    if name == "UID" and len(parts) > 2:
        name = "UID " + parts[2].split(b" ", 1)[0].decode("ascii", "replace").upper()
    return tag, name


async def read_line(reader: asyncio.StreamReader, timeout: float) -> bytes:
    """One CRLF-ended line (CRLF removed); CommandError(close) when longer than MAX_LINE."""
    try:
        line = await asyncio.wait_for(reader.readuntil(b"\r\n"), timeout)
    except asyncio.LimitOverrunError:
        raise CommandError("Line too long", close=True) from None
    except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
        raise Disconnected() from None
    if len(line) > MAX_LINE:
        raise CommandError("Line too long", close=True)
    return line[:-2]


async def read_command(reader: asyncio.StreamReader, go_on: Callable[[], Awaitable[None]], *,
                       timeout: float, max_append: int) -> tuple[str, str, list]:
    """(tag, command name, the raw parts: bytes of lines and literals, in order)."""
    first = await read_line(reader, timeout)
    tag, name = _tag_and_name(first)
    limit = max_append if name == "APPEND" else MAX_LITERAL
    parts, line, total = [], first, 0
    while True:
        match = _LITERAL_END.search(line)
        if match is None:
            parts.append(line)
            return tag, name, parts
        size, plus = int(match.group(1)), bool(match.group(2))
        parts.append(line[:match.start()])
        total += size
        if size > limit or total > limit + MAX_LINE or len(parts) > MAX_LITERALS:
            if plus:
                raise CommandError("[TOOBIG] Literal too large", tag=tag, close=True)
            raise CommandError("[TOOBIG] Literal too large", status="NO", tag=tag)
        if not plus:
            await go_on()
        try:
            parts.append(_Literal(await asyncio.wait_for(reader.readexactly(size), timeout)))
        except (asyncio.IncompleteReadError, asyncio.TimeoutError, ConnectionError):
            raise Disconnected() from None
        line = await read_line(reader, timeout)


class _Literal(bytes):
    """The bytes of a literal, as read."""


# --- parsing --------------------------------------------------------------------------------------
class Parser:
    """Tokens of one command's parts: Atom, str (quoted), bytes (literal), list (parenthesised)."""

    def __init__(self, parts: list[bytes]) -> None:
        self.parts, self.index, self.pos = parts, 0, 0

    def tokens(self) -> list:
        out = self._sequence(0)
        if self._peek() is not None:
            raise CommandError("Unexpected ')'")
        return out

    def _peek(self) -> int | None:
        while self.index < len(self.parts):
            part = self.parts[self.index]
            if isinstance(part, _Literal):
                return -1
            if self.pos < len(part):
                return part[self.pos]
            self.index, self.pos = self.index + 1, 0
        return None

    def _sequence(self, depth: int) -> list:
        if depth > MAX_DEPTH:
            raise CommandError("Too deeply nested")
        out: list = []
        while True:
            char = self._peek()
            if char is None or char == ord(")"):
                return out
            if char == -1:
                out.append(bytes(self.parts[self.index]))
                self.index, self.pos = self.index + 1, 0
            elif char == ord(" "):
                self.pos += 1
            elif char == ord("("):
                self.pos += 1
                out.append(self._sequence(depth + 1))
                if self._peek() != ord(")"):
                    raise CommandError("Missing ')'")
                self.pos += 1
            elif char == ord('"'):
                out.append(self._quoted())
            else:
                out.append(self._atom())

    def _quoted(self) -> str:
        part, self.pos = self.parts[self.index], self.pos + 1
        buf = bytearray()
        while self.pos < len(part):
            char = part[self.pos]
            self.pos += 1
            if char == ord("\\") and self.pos < len(part) and part[self.pos] in b'"\\':
                buf.append(part[self.pos])
                self.pos += 1
            elif char == ord('"'):
                try:
                    return buf.decode("utf-8")
                except UnicodeDecodeError:
                    raise CommandError("A quoted string is not UTF-8") from None
            else:
                buf.append(char)
        raise CommandError("Unterminated quoted string")

    def _atom(self) -> Atom:
        part, start, bracket = self.parts[self.index], self.pos, 0
        while self.pos < len(part):
            char = part[self.pos]
            if char == ord("["):
                bracket += 1
            elif char == ord("]"):
                bracket -= 1
            elif bracket <= 0 and char in _ATOM_STOP:
                break
            elif char < 0x20 or char > 0x7E:
                raise CommandError("Invalid characters in an atom")
            self.pos += 1
        if self.pos == start:
            raise CommandError("Syntax error")
        return Atom(part[start:self.pos].decode("ascii"))


def parse(parts: list[bytes]) -> list:
    """The tokens after the tag and command name."""
    tokens = Parser(parts).tokens()
    return tokens


def astring(token: object, what: str = "argument") -> str:
    """An atom, quoted string or literal as text (a literal must be UTF-8)."""
    if isinstance(token, bytes):
        try:
            return token.decode("utf-8")
        except UnicodeDecodeError:
            raise CommandError(f"The {what} is not UTF-8") from None
    if isinstance(token, str):
        return str(token)
    raise CommandError(f"Expected a string for the {what}")


# --- writing --------------------------------------------------------------------------------------
def quoted(value: str | bytes | None) -> bytes:
    """value as an IMAP string: NIL, a quoted string, or a literal when it needs one."""
    if value is None:
        return b"NIL"
    data = value.encode("utf-8") if isinstance(value, str) else value
    if len(data) > 1000 or any(b in data for b in (b"\r", b"\n", b"\x00")) or any(c > 0x7E for c in data):
        return b"{%d}\r\n" % len(data) + data
    return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def literal(data: bytes) -> bytes:
    return b"{%d}\r\n" % len(data) + data
