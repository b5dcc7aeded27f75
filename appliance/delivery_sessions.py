"""Open SMTP sessions kept for reuse by the delivery worker (issue 26): several messages per
connection, a bounded number of connections per destination and in total, idle ones closed.

A destination is what a session was opened to and how: the host, its address and port, relay or
MX, and the TLS policy it was opened under (an MTA-STS domain's verified session is never lent to
another domain, nor an opportunistic one to an enforced policy). A thread takes an idle session
of its destination, else a slot to open one (waiting while the bounds are reached; an idle
session of another destination is closed to make room in the total), and gives it back after
its transaction: kept when it is healthy, closed otherwise. Not thread-bound: any delivery
thread may use a session another opened, one at a time.
"""
from __future__ import annotations

import smtplib
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from appliance.config import Settings

Key = tuple  # (host, ip, port, relay, policy mode, policy domain)


@dataclass(eq=False)
class Session:
    """One open SMTP connection, ready for MAIL FROM."""

    smtp: smtplib.SMTP
    report: str = ""  # what an MTA-STS policy in mode testing would have refused
    messages: int = 0  # transactions begun on it
    aborted: bool = False  # the last transaction ended before DATA: RSET before the next one
    broken: bool = False  # the connection failed: closed without a QUIT
    idle_since: float = field(default_factory=time.monotonic)


class Sessions:
    """The pool: at most per_destination sessions to one destination, total in all."""

    def __init__(self, settings: Settings) -> None:
        self.per_destination = settings.delivery_connections_per_destination
        self.total = settings.delivery_connections_total
        self.max_messages = settings.delivery_session_messages
        self._cond = threading.Condition()
        self._idle: dict[Key, list[Session]] = {}
        self._open: Counter = Counter()  # sessions per destination, idle or in use (or being opened)

    def acquire(self, key: Key, *, fresh: bool = False) -> Session | None:
        """An idle session to key, or None with a slot reserved: the caller opens one, then
        release()s it (or forget()s the slot when opening failed). fresh: never an idle one."""
        doomed: list[Session] = []
        try:
            with self._cond:
                while True:
                    idle = self._idle.get(key)
                    if idle and not fresh:
                        return idle.pop()
                    if self._open[key] < self.per_destination and sum(self._open.values()) < self.total:
                        self._open[key] += 1
                        return None
                    victim = self._victim(key)
                    if victim is not None:
                        doomed.append(victim)
                        continue
                    self._cond.wait(timeout=1.0)
        finally:
            for session in doomed:
                _quit(session)

    def _victim(self, key: Key) -> Session | None:
        """An idle session whose closing frees a slot for key (its own when key is at its bound,
        else the longest idle of any destination); taken out of the pool."""
        if self._open[key] >= self.per_destination:
            candidates = [(s.idle_since, key, s) for s in self._idle.get(key, [])]
        else:
            candidates = [(s.idle_since, k, s) for k, group in self._idle.items() for s in group]
        if not candidates:
            return None
        _, owner, session = min(candidates, key=lambda c: c[0])
        self._idle[owner].remove(session)
        self._open[owner] -= 1
        return session

    def release(self, key: Key, session: Session, *, keep: bool) -> None:
        """Give a session back after a transaction: kept for the next one, or closed."""
        keep = keep and session.messages < self.max_messages
        with self._cond:
            if keep:
                session.idle_since = time.monotonic()
                self._idle.setdefault(key, []).append(session)
            else:
                self._open[key] -= 1
            self._cond.notify_all()
        if not keep:
            _quit(session)

    def forget(self, key: Key) -> None:
        """Free the slot acquire() reserved when the session could not be opened."""
        with self._cond:
            self._open[key] -= 1
            self._cond.notify_all()

    def close_idle(self, older_than: float = 0.0) -> int:
        """QUIT and close the sessions idle for older_than seconds or more; how many."""
        limit = time.monotonic() - older_than
        doomed = []
        with self._cond:
            for key, group in self._idle.items():
                for session in [s for s in group if s.idle_since <= limit]:
                    group.remove(session)
                    self._open[key] -= 1
                    doomed.append(session)
            self._cond.notify_all()
        for session in doomed:
            _quit(session)
        return len(doomed)

    def open_count(self) -> int:
        """Sessions open now, idle or in use."""
        with self._cond:
            return sum(self._open.values())


def _quit(session: Session) -> None:
    """QUIT politely (unless the connection failed), then close, whatever state the peer is in."""
    try:
        if not session.broken:
            session.smtp.quit()
    except (OSError, smtplib.SMTPException):
        pass
    try:
        session.smtp.close()
    except OSError:
        pass
