"""Starting a server in a thread of the current process and waiting until it is listening (the
SMTP listener and submission in tests and beside each other, IMAP inside the SMTP process on a
small machine): one helper for every edge, which may not import each other."""
from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable


def start_in_thread(run: Callable[[Callable[[Any], None]], None], name: str, what: str) -> tuple[threading.Thread, Any]:
    """Run `run(ready)` in a daemon thread and wait until it calls ready(result): the thread and
    the result, or the exception it reported (re-raised here, once the thread has ended)."""
    done = threading.Event()
    outcome: list[Any] = []

    def ready(result: Any) -> None:
        outcome.append(result)
        done.set()

    thread = threading.Thread(target=run, args=(ready,), name=name, daemon=True)
    thread.start()
    if not done.wait(30):
        raise TimeoutError(f"{what} did not start within 30 seconds")
    if isinstance(outcome[0], BaseException):
        thread.join()
        raise outcome[0]
    return thread, outcome[0]


class LoopThread:
    """A server whose asyncio loop runs in a thread of its own (`_run(ready)` makes `loop` and
    `_stopping` and serves until `_stopping` is set): started with `_start_thread`, ended with stop()."""

    loop: asyncio.AbstractEventLoop | None = None
    _stopping: asyncio.Event | None = None
    _thread: threading.Thread | None = None

    def _run(self, ready: Callable[[Any], None]) -> None:
        raise NotImplementedError

    def _start_thread(self, name: str, what: str) -> Any:
        """Serve in a daemon thread; what `_run` reported as ready (re-raised when an exception)."""
        self._thread, result = start_in_thread(self._run, name, what)
        return result

    def stop(self) -> None:
        """Set the loop's stopping event and wait (up to a minute) for the thread to end."""
        if self._thread is None:
            return
        self.loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(60)
        self._thread = None
