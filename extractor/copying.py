"""Where copies of tables go in the stream, and when (see snapshot.py for the reading).

A copy is one more transaction in the stream, at the copy snapshot's consistent point:
- a new slot's own snapshot: at the slot's start, before any change is streamed;
- a temporary slot's snapshot (a backfill, a table not copied yet): reading pauses until that
  point is known, then the stream runs up to the first transaction committed after it, and
  the copy goes in just before that transaction.
Requests for backfills arrive as logical messages in the stream itself. A request holds the
slot behind it (ConfirmTracker.hold) until RabbitMQ has confirmed all of its copy, so after any
crash or stop PostgreSQL sends the request again and the copy is made again from its start.
Which tables have been copied (the initial and catch-up copies) is remembered in RabbitMQ
(state.py) once RabbitMQ confirmed all of a copy; a table not in it is copied at the next start.
"""

from __future__ import annotations

import json
import logging
import queue
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from extractor.decode import Begin
from extractor.replication import Exported
from extractor.shapes import Shape, ShapeWatch
from extractor.snapshot import Done, Event, Failed, Ready, Rows
from extractor.state import encode_state
from shared.config import SourceConfig
from shared.envelope import TRUNCATE
from shared.lsn import format_lsn
from shared.tables import TableRef

log = logging.getLogger(__name__)


class CopyOutput(Protocol):
    """Where a copy's rows go: the outgoing transactions the stream's go to (outbox.py)."""

    def has_room(self) -> bool: ...

    def begin(self, begin: Begin, copy: bool = False) -> None: ...

    def add(self, change: dict[str, Any], size: int) -> None: ...

    def commit(self, end: int = 0) -> int | None: ...

    def publish_state(self, body: bytes) -> None: ...

    def confirmed(self, seq: int) -> bool: ...

    def hold(self) -> object: ...

    def release(self, token: object) -> None: ...


class CopyStream(Protocol):
    """The slot's stream, as a copy needs it (reading.py)."""

    def start(self) -> None:
        """START_REPLICATION (a new slot's copy, once its snapshot is imported)."""
        ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...


class CopyLoop(Protocol):
    """The session's loop (loop.py): a CdcError raised by a callback ends the session."""

    def later(self, name: str, delay: float, callback: Callable[[], None]) -> None: ...

    def threadsafe(self, callback: Callable[[], None]) -> None: ...


class CopyReader(Protocol):
    """Reads the tables in a snapshot on a thread of its own (snapshot.Copier)."""

    events: queue.Queue[Event]

    def start(self) -> None: ...

    def stop(self) -> None: ...


# Tables to copy, a new slot's exported snapshot (None: a temporary slot's), and the wake-up
# the reader calls from its thread when it put events on its queue.
CopierFactory = Callable[[list[TableRef], Exported | None, Callable[[], None]], CopyReader]


@dataclass
class CopyJob:
    tables: list[TableRef]
    copier: CopyReader
    start_stream: bool  # a new slot: START_REPLICATION once the snapshot is imported
    position: int | None = None  # known when the copier is Ready
    injecting: bool = False
    deferred: Begin | None = None  # the first transaction after the copy's place
    holds: list[object] = field(default_factory=list)  # released once all of it is confirmed
    shapes: dict[TableRef, Shape] = field(default_factory=dict)  # as the copy read them


class Copies:
    def __init__(
        self,
        cfg: SourceConfig,
        output: CopyOutput,
        stream: CopyStream,
        *,
        loop: CopyLoop,
        copier: CopierFactory,
        copied: set[TableRef],
        count_rows: Callable[[int], None],
        watch: ShapeWatch | None = None,
    ) -> None:
        """``copied``: the tables copied before (state.py); ``count_rows``: the metric."""
        self._cfg = cfg
        self._out = output
        self._stream = stream
        self._loop = loop
        self._copier = copier
        self._count_rows = count_rows
        self.copied = copied
        self.watch = watch or ShapeWatch()
        self._job: CopyJob | None = None
        self._waiting: deque[tuple[list[TableRef], list[object]]] = deque()
        self._requested: list[TableRef] = []
        self._requested_holds: list[object] = []
        self._state_pending: list[
            tuple[int, set[TableRef], list[object], dict[TableRef, Shape]]
        ] = []

    @property
    def active(self) -> bool:
        return self._job is not None

    @property
    def injecting(self) -> bool:
        return self._job is not None and self._job.injecting

    def start(
        self, tables: list[TableRef], exported: Exported | None, holds: list[object] | None = None
    ) -> None:
        copier = self._copier(tables, exported, self._wake)
        self._job = CopyJob(tables, copier, start_stream=exported is not None, holds=holds or [])
        # The stream is not read while the copy's place is unknown (see _ready).
        self._stream.pause()
        log.info("copy_started tables=%s", ",".join(str(t) for t in tables))
        copier.start()

    def forget_uncaptured(self, captured: list[TableRef]) -> None:
        """A table left out of the filter stops being kept current: it is no longer copied,
        so that if it is captured again later it is copied again, not left stale."""
        gone = self.copied - set(captured)
        if gone:
            self.copied -= gone
            log.info("copy_forgotten tables=%s", ",".join(str(t) for t in sorted(gone)))
            self.save_state()

    def stop(self) -> None:
        """An unfinished copy is abandoned; the next run copies those tables again (its
        request, if any, still holds the slot behind it)."""
        if self._job is not None:
            self._job.copier.stop()

    # ------------------------------------------------------------ from the stream

    def goes_first(self, begin: Begin) -> bool:
        """At the first transaction after a pending copy's place, the copy goes first."""
        job = self._job
        if job is None or job.position is None or job.injecting:
            return False
        if begin.commit_lsn < job.position:
            return False
        job.deferred = begin
        self._stream.pause()
        self._begin_injecting(job)
        self._loop.later("pump", 0, self.pump)
        return True

    def request(self, content: str) -> None:
        """A backfill request seen in the stream; acted on at its transaction's commit."""
        try:
            doc = json.loads(content)
            if doc.get("slot") != self._cfg.slot:
                return
            tables = [TableRef(s, t) for s, t in doc["tables"]]
        except (ValueError, TypeError, KeyError):
            log.warning("backfill_request_ignored reason=unreadable content=%.200s", content)
            return
        wanted = [t for t in tables if self._cfg.capture.captures(t)]
        for t in set(tables) - set(wanted):
            log.warning("backfill_request_ignored table=%s reason=not captured", t)
        if wanted:
            log.info("backfill_requested tables=%s", ",".join(str(t) for t in wanted))
            self.request_tables(wanted)

    def request_tables(self, tables: list[TableRef]) -> None:
        """Copy these tables again at this point of the stream (at its transaction's commit),
        holding the slot behind it until the copy is confirmed. A table whose copy is still to
        come is not asked for again: that copy's place is after this point anyway."""
        job = self._job
        coming = {t for tables_, _ in self._waiting for t in tables_} | set(self._requested)
        if job is not None and not job.injecting:
            coming |= set(job.tables)
        wanted = [t for t in tables if t not in coming]
        if wanted:
            self._requested.extend(wanted)
            self._requested_holds.append(self._out.hold())

    def committed(self) -> None:
        if self._requested:
            self._waiting.append((self._requested, self._requested_holds))
            self._requested, self._requested_holds = [], []
            if self._job is None:
                self._start_next()

    def _start_next(self) -> None:
        tables, holds = self._waiting.popleft()
        self.start(tables, None, holds)

    # ------------------------------------------------------------ moving rows

    def _begin_injecting(self, job: CopyJob) -> None:
        assert job.position is not None
        job.injecting = True
        now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f+00")
        self._out.begin(Begin(0, job.position, now, commit_end=job.position), copy=True)

    def _wake(self) -> None:
        """From the copier's thread: events are waiting."""
        self._loop.threadsafe(self.pump)

    def pump(self) -> None:
        """Move the copier's rows into the stream, as far as the confirm window allows."""
        job = self._job
        if job is None:
            return
        while self._out.has_room():
            if job.position is not None and not job.injecting:
                return  # the stream has not reached the copy's place yet
            try:
                event = job.copier.events.get_nowait()
            except queue.Empty:
                return
            if isinstance(event, Failed):
                raise event.error
            if isinstance(event, Ready):
                self._ready(job, event.position)
            elif isinstance(event, Rows):
                self._rows(event)
            elif isinstance(event, Done):
                self._finish(job, event)
                return

    def _ready(self, job: CopyJob, position: int) -> None:
        job.position = position
        if job.start_stream:
            self._stream.start()
            self._begin_injecting(job)
        else:
            self._stream.resume()

    def _rows(self, event: Rows) -> None:
        self._count_rows(len(event.changes))
        size = max(event.size // max(len(event.changes), 1), 1)
        first = event.changes[0] if event.changes else None
        if first is not None and first["op"] == TRUNCATE and self._job is not None:
            relation = first.get("ddl") or {}
            shape = Shape(first["columns"], first["types"], relation.get("relid"))
            self._job.shapes[event.table] = shape
            self.watch.copying(event.table, shape)
        for change in event.changes:
            self._out.add(change, size)

    def _finish(self, job: CopyJob, done: Done) -> None:
        seq = self._out.commit() or 0
        self._state_pending.append((seq, set(job.tables), job.holds, job.shapes))
        log.info(
            "copy_done tables=%d rows=%d position=%s",
            len(job.tables),
            done.rows,
            format_lsn(job.position or 0),
        )
        self._job = None
        if job.deferred is not None:
            self._out.begin(job.deferred)
        if self._waiting:
            self._start_next()
        else:
            self._stream.resume()

    def save_state(self) -> None:
        """What is copied and what the tables look like, into RabbitMQ (state.py); the slot
        passes nothing after this point before RabbitMQ has it."""
        self._out.publish_state(encode_state(self.copied, self.watch.to_json()))

    def confirmed(self) -> None:
        """After confirms: once a copy is all confirmed, store the copied tables and release
        the slot its request held; go on."""
        while self._state_pending and self._out.confirmed(self._state_pending[0][0]):
            _seq, tables, holds, shapes = self._state_pending.pop(0)
            self.copied |= tables
            self.watch.copied(shapes)
            self.save_state()
            for token in holds:
                self._out.release(token)
        if self.injecting:
            self._loop.later("pump", 0, self.pump)
