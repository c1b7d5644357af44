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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from extractor.assemble import Assembler, Outgoing
from extractor.decode import Begin
from extractor.replication import Exported
from extractor.shapes import Shape, ShapeWatch
from extractor.snapshot import Copier, Done, Failed, Ready, Rows
from extractor.state import encode_state
from shared.config import SourceConfig
from shared.envelope import TRUNCATE
from shared.errors import CdcError
from shared.lsn import format_lsn
from shared.tables import TableRef

log = logging.getLogger(__name__)


class CopyHost(Protocol):
    """What the stream session lends the copies."""

    @property
    def assembler(self) -> Assembler: ...

    def publish(self, out: Outgoing) -> int: ...

    def publish_state(self, body: bytes) -> None: ...

    def confirmed(self, seq: int) -> bool: ...

    def window_open(self) -> bool: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def start_streaming(self) -> bool: ...

    def soon(self, callback_name: str) -> None: ...

    def wake_threadsafe(self) -> None: ...

    def fail(self, error: CdcError) -> None: ...

    def count_copied(self, rows: int) -> None: ...

    def hold(self) -> object: ...

    def release(self, token: object) -> None: ...


@dataclass
class CopyJob:
    tables: list[TableRef]
    copier: Copier
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
        host: CopyHost,
        copied: set[TableRef],
        watch: ShapeWatch | None = None,
    ) -> None:
        self._cfg = cfg
        self._host = host
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

    def reading_allowed(self) -> bool:
        """The stream may be read unless a copy's place is unknown yet or it is being copied."""
        job = self._job
        return job is None or (job.position is not None and not job.injecting)

    def start(
        self, tables: list[TableRef], exported: Exported | None, holds: list[object] | None = None
    ) -> None:
        copier = Copier(
            self._cfg,
            tables,
            self._cfg.capture,
            wake=self._host.wake_threadsafe,
            snapshot=exported.snapshot if exported else None,
            position=exported.position if exported else 0,
        )
        self._job = CopyJob(tables, copier, start_stream=exported is not None, holds=holds or [])
        self._host.pause_reading()
        log.info("copy_started tables=%s", ",".join(str(t) for t in tables))
        copier.start()

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
        if begin.commit_start < job.position:
            return False
        job.deferred = begin
        self._host.pause_reading()
        self._begin_injecting(job)
        self._host.soon("pump")
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
            self._requested_holds.append(self._host.hold())

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
        self._host.assembler.begin(Begin(0, job.position, now, job.position), copy=True)

    def pump(self) -> None:
        """Move the copier's rows into the stream, as far as the confirm window allows."""
        job = self._job
        if job is None:
            return
        try:
            while self._host.window_open():
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
        except CdcError as e:
            self._host.fail(e)

    def _ready(self, job: CopyJob, position: int) -> None:
        job.position = position
        if job.start_stream:
            if self._host.start_streaming():
                self._begin_injecting(job)
        else:
            self._host.resume_reading()

    def _rows(self, event: Rows) -> None:
        self._host.count_copied(len(event.changes))
        size = max(event.size // max(len(event.changes), 1), 1)
        first = event.changes[0] if event.changes else None
        if first is not None and first["op"] == TRUNCATE and self._job is not None:
            relation = first.get("ddl") or {}
            shape = Shape(first["columns"], first["types"], relation.get("relid"))
            self._job.shapes[event.table] = shape
            self.watch.copying(event.table, shape)
        for change in event.changes:
            out = self._host.assembler.add(change, size)
            if out is not None:
                self._host.publish(out)

    def _finish(self, job: CopyJob, done: Done) -> None:
        out = self._host.assembler.commit()
        seq = self._host.publish(out) if out is not None else 0
        self._state_pending.append((seq, set(job.tables), job.holds, job.shapes))
        log.info(
            "copy_done tables=%d rows=%d position=%s",
            len(job.tables),
            done.rows,
            format_lsn(job.position or 0),
        )
        self._job = None
        if job.deferred is not None:
            self._host.assembler.begin(job.deferred)
        if self._waiting:
            self._start_next()
        else:
            self._host.resume_reading()

    def save_state(self) -> None:
        """What is copied and what the tables look like, into RabbitMQ (state.py); the slot
        passes nothing after this point before RabbitMQ has it."""
        self._host.publish_state(encode_state(self.copied, self.watch.to_json()))

    def confirmed(self) -> None:
        """After confirms: once a copy is all confirmed, store the copied tables and release
        the slot its request held; go on."""
        while self._state_pending and self._host.confirmed(self._state_pending[0][0]):
            _seq, tables, holds, shapes = self._state_pending.pop(0)
            self.copied |= tables
            self.watch.copied(shapes)
            self.save_state()
            for token in holds:
                self._host.release(token)
        if self.injecting:
            self._host.soon("pump")
