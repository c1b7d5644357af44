"""The session's I/O loop, as its parts use it: timers, a readable socket, wake-ups from threads.

Everything of a session runs on one thread, on pika's I/O loop (the replication socket is one
more file descriptor on it). A CdcError raised by any callback run through the Scheduler ends
the session (the failure given to it), so the parts raise instead of catching.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from pika.adapters.select_connection import PollEvents

from shared.errors import CdcError

log = logging.getLogger(__name__)


class Loop(Protocol):
    """What a session needs of an I/O loop: pika's IOLoop, or a test's loop in virtual time."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> object: ...

    def remove_timeout(self, handle: object) -> None: ...

    def add_handler(self, fd: int, handler: Callable[[int, int], None], events: int) -> None: ...

    def remove_handler(self, fd: int) -> None: ...

    def add_callback_threadsafe(self, callback: Callable[[], None]) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


class Scheduler:
    """Runs the parts' callbacks on the loop; a CdcError any of them raises goes to ``fail``."""

    def __init__(self, loop: Loop, fail: Callable[[CdcError], None]) -> None:
        self._loop = loop
        self._fail = fail
        self._timers: dict[str, object] = {}
        self._closed = False

    def guarded(self, callback: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                callback()
            except CdcError as e:
                self._fail(e)

        return run

    def later(self, name: str, delay: float, callback: Callable[[], None]) -> None:
        """Run ``callback`` after ``delay`` seconds (the timer ``name``, cancelled at close)."""
        self._timers[name] = self._loop.call_later(delay, self.guarded(callback))

    def watch(self, fd: int, callback: Callable[[], None]) -> None:
        """Run ``callback`` whenever ``fd`` is readable, until ``unwatch``."""
        guarded = self.guarded(callback)
        self._loop.add_handler(fd, lambda _fd, _events: guarded(), PollEvents.READ)

    def unwatch(self, fd: int) -> None:
        try:
            self._loop.remove_handler(fd)
        except (KeyError, OSError, ValueError) as e:
            # libpq closes the replication socket itself when the server goes away, and pika
            # may already have dropped a closed descriptor (or the number is another's now):
            # the watch is gone either way, which is all unwatch promises.
            log.info("unwatch_gone fd=%d error=%r", fd, e)

    def threadsafe(self, callback: Callable[[], None]) -> None:
        """From any thread: run ``callback`` on the loop soon (dropped once it is closed)."""
        if self._closed:
            return
        try:
            self._loop.add_callback_threadsafe(self.guarded(callback))
        except (RuntimeError, OSError):
            log.debug("wake-up after the loop closed", exc_info=True)

    def close(self) -> None:
        """Cancel every timer; wake-ups from threads are dropped from now on."""
        self._closed = True
        for handle in self._timers.values():
            self._loop.remove_timeout(handle)
        self._timers.clear()
