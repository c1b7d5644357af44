"""Reading the slot, with flow control: never more than ``max_inflight`` unconfirmed messages.

The replication socket is watched on the session's loop; each turn reads a bounded batch of
messages, so confirms and timers are not starved. Reading pauses when the confirm window is
full and resumes once half of it is free, which bounds memory whatever the backlog. A copy
(copying.py) pauses it while its place in the stream is unknown or its rows go out, and
resumes it after.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from extractor.loop import Scheduler
from shared.errors import SourceUnavailable

# Messages read from the slot per turn of the loop, so confirms and heartbeats are not starved.
_READ_BATCH = 2000
# A loop that did not turn for this long may have let psycopg2 act on a walsender keepalive on
# its own (see ARCHITECTURE.md, residual risks): the session is restarted before reading on.
_STALL_LIMIT = 10.0


class SlotStream(Protocol):
    """The replication stream (replication.py)."""

    def start(self, partitioned: bool) -> None: ...

    def fileno(self) -> int: ...

    def read(self) -> Any:
        """The next replication message (``payload``, ``data_start``), None if none is
        buffered. Never blocks."""
        ...


class Window(Protocol):
    """The confirm window (outbox.py)."""

    def full(self) -> bool: ...

    def half_free(self) -> bool: ...


class StallWatch:
    """Whether the loop keeps turning (see _STALL_LIMIT)."""

    def __init__(self, clock: Callable[[], float], interval: float) -> None:
        self._clock = clock
        self._last_turn = clock()
        self.interval = interval  # the feedback interval: the loop turns at least this often

    def turned(self) -> None:
        self._last_turn = self._clock()

    def check(self) -> None:
        stalled = self._clock() - self._last_turn
        if stalled > _STALL_LIMIT + self.interval:
            raise SourceUnavailable(
                f"the extractor's loop stalled for {stalled:.0f}s; restarting the session"
            )


class SlotReader:
    """Reads the slot and hands each message to ``handle`` (dispatch.py), as flow allows."""

    def __init__(
        self,
        stream: SlotStream,
        loop: Scheduler,
        window: Window,
        stall: StallWatch,
        *,
        handle: Callable[[Any], None],
        partitioned: bool,
        on_idle: Callable[[], None] = lambda: None,
    ) -> None:
        self._stream = stream
        self._loop = loop
        self._window = window
        self._stall = stall
        self._handle = handle
        self._partitioned = partitioned
        self._on_idle = on_idle
        self._fd: int | None = None
        self._paused = False
        self._held = False  # paused by a copy: only the copy resumes it
        self._stopped = False
        self.streaming = False

    def start(self) -> None:
        """START_REPLICATION (not reading yet: see resume)."""
        self._stream.start(self._partitioned)
        self.streaming = True

    @property
    def paused(self) -> bool:
        return self._paused

    def resume(self) -> None:
        """Read again (a copy's place is known, or it went out; or the session starts)."""
        self._held = False
        if self._stopped:
            return
        self._paused = False
        if self._fd is None:
            fd = self._stream.fileno()
            self._loop.watch(fd, self._drain)
            self._fd = fd
        # libpq may already hold messages in its buffer, which select() cannot see.
        self._loop.later("drain", 0, self._drain)

    def pause(self) -> None:
        """Stop reading until resume (a copy holds the stream)."""
        self._held = True
        self._unwatch()

    def window_freed(self) -> None:
        """After confirms: reading paused for the window resumes once half of it is free."""
        if self._paused and not self._held and not self._stopped and self._window.half_free():
            self.resume()

    def stop(self) -> None:
        """Nothing more is read in this session."""
        self._stopped = True
        self._unwatch()

    def _unwatch(self) -> None:
        self._paused = True
        if self._fd is not None:
            self._loop.unwatch(self._fd)
            self._fd = None

    def _drain(self) -> None:
        if self._paused:
            return
        self._stall.check()
        for _ in range(_READ_BATCH):
            msg = self._stream.read()
            if msg is None:
                self._on_idle()
                return
            self._handle(msg)
            if self._paused:
                return
            if self._window.full():
                self._unwatch()
                return
        self._loop.later("drain", 0, self._drain)
