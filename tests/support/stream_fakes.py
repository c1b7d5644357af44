"""In-memory fakes of everything an extractor session talks to, for unit tests of its real loop.

- ``VirtualLoop``: pika's I/O loop as the session uses it, in virtual time (timers run in order
  and time jumps to the next one when nothing else can happen);
- ``ScriptedSlot``: a logical slot and its walsender: transactions of wal2json records in
  commit order, streamed from the slot's confirmed position; the feedback the session sends
  is recorded and moves that position, as PostgreSQL's does;
- ``StubBroker``: RabbitMQ as the publisher sees it (dramatiq's StubBroker is the model): it
  keeps what was published and confirms each message on the next turn of the loop, unless
  told to withhold some; the test acks, nacks or returns them on command;
- ``FakeCatalog``, ``FakeHeartbeat``, ``FakeCopier``: the catalog check, the heartbeat writer
  (its message goes into the slot's WAL) and the copier (rows given by the test, read "in a
  snapshot" at the WAL's current end).

``Servers`` puts them together and makes sessions on them; ``until_drained`` (arq's burst
mode) runs a session until the slot has nothing more, everything is confirmed, and it stopped.
"""

from __future__ import annotations

import heapq
import itertools
import json
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from extractor.basetypes import TypeResolver
from extractor.collaborators import Collaborators
from extractor.decode import Decoder
from extractor.heartbeat import HEARTBEAT_PREFIX
from extractor.metrics import ExtractorMetrics
from extractor.partitions import Layout, Partitions
from extractor.replication import Exported
from extractor.snapshot import BACKFILL_PREFIX, Done, Event, Ready, Rows
from extractor.state import Stored, decode_state
from extractor.stream import StreamSession
from extractor.wal2json import Wal2Json
from shared import wire
from shared.config import ExtractorConfig, SourceConfig, load_config
from shared.envelope import Envelope
from shared.errors import BrokerUnavailable, CdcError
from shared.lsn import format_lsn
from shared.tables import TableRef
from tests.support.settings import full_env

START_TIME = 1000.0
TIMESTAMP = "2024-05-01 12:00:00.123456+00"


class Stalled(AssertionError):
    """The loop can make no more progress: nothing ready, no timer left."""


# ---------------------------------------------------------------- the loop


class VirtualLoop:
    def __init__(self, limit: float = 3600.0) -> None:
        self.now = START_TIME
        self._limit = START_TIME + limit
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._cancelled: set[int] = set()
        self._ids = itertools.count(1)
        self._handlers: dict[int, Callable[[int, int], None]] = {}
        self._readable: dict[int, Callable[[], bool]] = {}
        self._threadsafe: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._stopping = False
        self.closed = False

    def time(self) -> float:
        return self.now

    def readable_when(self, fd: int, ready: Callable[[], bool]) -> None:
        """What makes ``fd`` readable (a fake source's buffered messages)."""
        self._readable[fd] = ready

    def call_later(self, delay: float, callback: Callable[[], None]) -> object:
        handle = next(self._ids)
        heapq.heappush(self._timers, (self.now + delay, handle, callback))
        return handle

    def remove_timeout(self, handle: object) -> None:
        assert isinstance(handle, int)
        self._cancelled.add(handle)

    def add_handler(self, fd: int, handler: Callable[[int, int], None], events: int) -> None:
        assert fd not in self._handlers, f"fd {fd} watched twice"
        self._handlers[fd] = handler

    def remove_handler(self, fd: int) -> None:
        del self._handlers[fd]

    def add_callback_threadsafe(self, callback: Callable[[], None]) -> None:
        if self.closed:
            raise RuntimeError("the loop is closed")
        with self._lock:
            self._threadsafe.append(callback)

    def stop(self) -> None:
        self._stopping = True

    def close(self) -> None:
        self.closed = True

    def start(self) -> None:
        """As pika's: one turn after another (callbacks, due timers, readable sockets) until
        stop() was called."""
        self._stopping = False
        turns = 0
        while not self._stopping:
            turns += 1
            assert turns < 1_000_000, "the loop never rests"
            if not self._turn():
                self._advance()

    def _turn(self) -> bool:
        with self._lock:
            ready, self._threadsafe = self._threadsafe, []
        due = []
        while self._timers and self._timers[0][0] <= self.now:
            _at, handle, callback = heapq.heappop(self._timers)
            if handle not in self._cancelled:
                due.append(callback)
        for callback in ready + due:
            callback()
        ran = bool(ready or due)
        for fd, handler in list(self._handlers.items()):
            if fd in self._handlers and self._readable.get(fd, lambda: False)():
                handler(fd, 1)
                ran = True
        return ran

    def _advance(self) -> None:
        while self._timers and self._timers[0][1] in self._cancelled:
            heapq.heappop(self._timers)
        if not self._timers:
            raise Stalled("nothing ready and no timer left: the session waits forever")
        self.now = max(self.now, self._timers[0][0])
        if self.now > self._limit:
            raise Stalled(f"still running after {self._limit - START_TIME:.0f} virtual seconds")


# ---------------------------------------------------------------- the slot


@dataclass(frozen=True)
class Message:
    """A replication message as psycopg2 gives it."""

    payload: bytes
    data_start: int


@dataclass
class Transaction:
    commit_lsn: int  # the end of its commit record
    messages: list[Message]


def column_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "integer" if isinstance(value, int) else "text"


def insert(table: str, **values: Any) -> dict[str, Any]:
    """An insert into ``schema.table`` (the first column is the key), as wal2json writes it."""
    schema, name = table.split(".")
    first = next(iter(values))
    return {
        "action": "I",
        "schema": schema,
        "table": name,
        "columns": [{"name": k, "type": column_type(v), "value": v} for k, v in values.items()],
        "pk": [{"name": first, "type": column_type(values[first])}],
    }


def message(prefix: str, content: str) -> dict[str, Any]:
    """A transactional pg_logical_emit_message."""
    return {"action": "M", "transactional": True, "prefix": prefix, "content": content}


class ScriptedSlot:
    FD = 7

    def __init__(self, *, exists: bool = True, wal_sender_timeout: float = 60.0) -> None:
        self.wal_end = 0x1000000
        self.confirmed_flush = self.wal_end if exists else None
        self.wal: list[Transaction] = []
        self.feedback: list[int] = []
        self.wal_sender_timeout = wal_sender_timeout
        self.sessions = 0
        self.resume_lsn = 0
        self.created = False
        self.republished: list[TableRef] = []
        self.started_partitioned: bool | None = None
        self._xid = 1000
        self._queue: list[Message] = []
        self._streaming = False

    # ------------------------------------------------------------ what the session sees

    def open(self, export_snapshot: bool) -> Exported | None:
        self.sessions += 1
        self.created = self.confirmed_flush is None
        exported = None
        if self.confirmed_flush is None:
            self.confirmed_flush = self.wal_end
            if export_snapshot:
                exported = Exported(self.wal_end, "00000003-00000002-1")
        self.resume_lsn = self.confirmed_flush
        return exported

    def start(self, partitioned: bool) -> None:
        assert self.confirmed_flush is not None
        self._streaming = True
        self.started_partitioned = partitioned
        self._queue = [
            m for t in self.wal if t.commit_lsn > self.confirmed_flush for m in t.messages
        ]

    def decoder(self) -> Decoder:
        return Wal2Json().decoder(None)

    def fileno(self) -> int:
        return self.FD

    @property
    def pending(self) -> int:
        """Messages the walsender sent that the session has not read yet."""
        return len(self._queue)

    def readable(self) -> bool:
        return self._streaming and bool(self._queue)

    def read(self) -> Message | None:
        return self._queue.pop(0) if self._streaming and self._queue else None

    def send_feedback(self, lsn: int) -> None:
        assert self._streaming, "feedback before START_REPLICATION"
        self.feedback.append(lsn)
        assert self.confirmed_flush is not None
        self.confirmed_flush = max(self.confirmed_flush, lsn)

    def close(self) -> None:
        self._streaming = False

    # ------------------------------------------------------------ what the database writes

    def commit(self, *records: dict[str, Any]) -> int:
        """A transaction of these records (see insert, message); returns where its commit
        record ends, the slot's position once it is confirmed (``start_of``: its commit LSN)."""
        self._xid += 1
        lsns = []
        for _ in records:
            self.wal_end += 0x40
            lsns.append(self.wal_end)
        commit_start = self.wal_end + 0x40
        commit_end = self.wal_end = commit_start + 0x30
        common = {"xid": self._xid, "timestamp": TIMESTAMP}
        edge = {"lsn": format_lsn(commit_start), "nextlsn": format_lsn(commit_end)}
        docs = [{"action": "B", **common, **edge}]
        docs += [
            {**r, **common, "lsn": format_lsn(lsn)} for r, lsn in zip(records, lsns, strict=True)
        ]
        docs.append({"action": "C", **common, **edge})
        starts = [commit_start, *lsns, commit_start]
        txn = Transaction(
            commit_end,
            [Message(json.dumps(d).encode(), s) for d, s in zip(docs, starts, strict=True)],
        )
        self.wal.append(txn)
        if self._streaming:
            self._queue.extend(txn.messages)
        return commit_end

    @staticmethod
    def start_of(end: int) -> int:
        """Where the commit record that ends at ``end`` begins (a transaction's commit LSN)."""
        return end - 0x30

    def backfill(self, slot: str, *tables: str) -> int:
        """``python -m extractor backfill``: a request in the WAL; returns its commit LSN."""
        tables_ = [t.split(".") for t in tables]
        return self.commit(message(BACKFILL_PREFIX, json.dumps({"slot": slot, "tables": tables_})))


# ---------------------------------------------------------------- the broker


@dataclass
class Published:
    tag: int
    body: bytes
    message_id: str
    headers: dict[str, Any]
    confirmed: bool = False
    partition: int = 0  # whose queue it went to (target.partitions N > 1)

    @property
    def envelopes(self) -> list[Envelope]:
        """One, or several small transactions batched in one message."""
        return wire.decode_all(self.body)


class StubBroker:
    where = "amqp://stub/"

    def __init__(
        self, loop: VirtualLoop, *, withhold: Callable[[Published], bool] = lambda _m: False
    ) -> None:
        self.loop = loop  # the current session's
        self.withhold = withhold  # which messages are not confirmed by themselves
        self.published: list[Published] = []
        self.states: list[bytes] = []  # the state queue (state.py): the last one counts
        self.closed = False
        self.connects = 0
        self._tag = 0
        self._on_confirm: Callable[[int, bool, bool], None] = lambda *_: None
        self._on_failure: Callable[[CdcError], None] = lambda _e: None
        self._pending: dict[int, Published | None] = {}

    def connect(
        self,
        *,
        on_ready: Callable[[], None],
        on_confirm: Callable[[int, bool, bool], None],
        on_failure: Callable[[CdcError], None],
    ) -> None:
        self.connects += 1
        self.closed = False
        self._on_confirm, self._on_failure = on_confirm, on_failure
        self.loop.call_later(0, on_ready)

    def publish(
        self, body: bytes, message_id: str, headers: dict[str, Any], partition: int = 0
    ) -> int:
        assert not self.closed, "publish after close"
        self._tag += 1
        m = Published(self._tag, body, message_id, headers, partition=partition)
        self.published.append(m)
        self._pending[m.tag] = m
        if not self.withhold(m):
            self.ack(m.tag)
        return m.tag

    def publish_state(self, body: bytes) -> int:
        assert not self.closed, "publish after close"
        self._tag += 1
        self.states.append(body)
        self._pending[self._tag] = None
        self.ack(self._tag)
        return self._tag

    def close(self) -> None:
        self.closed = True

    # ------------------------------------------------------------ on command (next turn)

    @property
    def unconfirmed(self) -> list[int]:
        return sorted(self._pending)

    def ack(self, tag: int, multiple: bool = False) -> None:
        self.loop.call_later(0, lambda: self._confirm(tag, multiple, True))

    def nack(self, tag: int) -> None:
        self.loop.call_later(0, lambda: self._confirm(tag, False, False))

    def return_(self, tag: int) -> None:
        """Unroutable: basic.return, then (as RabbitMQ does) a positive ack."""

        def both() -> None:
            m = self._pending.get(tag)
            self._on_failure(BrokerUnavailable(f"returned {m.message_id if m else tag}"))
            self._confirm(tag, False, True)

        self.loop.call_later(0, both)

    def _confirm(self, tag: int, multiple: bool, ack: bool) -> None:
        if self.closed:
            return
        for t in [t for t in self._pending if t == tag or (multiple and t < tag)]:
            m = self._pending.pop(t)
            if m is not None:
                m.confirmed = ack
        self._on_confirm(tag, multiple, ack)

    def envelopes(self) -> list[Envelope]:
        return [e for m in self.published for e in m.envelopes]


# ---------------------------------------------------------------- catalog, heartbeat, copier


class FakeCatalog:
    def __init__(self, cfg: SourceConfig, tables: list[TableRef], layout: Layout) -> None:
        self._cfg = cfg
        self.tables = tables
        self.partitions = Partitions(cfg, self._connect)
        self.partitions.adopt(layout, None)
        self.partitioned = False
        self.checks = 0
        # Tables the next check finds newly published (pgoutput's publication gained them).
        self.added: list[TableRef] = []

    def _connect(self) -> Any:
        raise AssertionError("a table the fake catalog does not know: add it to the layout")

    def begin(self) -> list[TableRef]:
        layout = self.partitions.layout
        tables = [t for t in self.tables if self._cfg.capture.captures(t)]
        self.partitioned = any(t in layout.roots for t in tables)
        return tables

    def check(self) -> list[TableRef]:
        self.checks += 1
        added, self.added = self.added, []
        return added


class FakeHeartbeat:
    def __init__(self, slot: ScriptedSlot, name: str) -> None:
        self._slot = slot
        self._name = name
        self.beats = 0

    def beat(self) -> None:
        self.beats += 1
        self._slot.commit(message(HEARTBEAT_PREFIX, self._name))

    def slot_lag(self) -> int | None:
        return self._slot.wal_end - (self._slot.confirmed_flush or 0)

    def close(self) -> None:
        pass


@dataclass
class FakeCopier:
    """Reads ``rows`` of each table at once, at its snapshot's place (the WAL's end for a
    temporary slot, which it then passes with a transaction of its own, as snapshot.py's
    nudge does)."""

    slot: ScriptedSlot
    rows: dict[TableRef, list[dict[str, Any]]]
    tables: list[TableRef]
    exported: Exported | None
    wake: Callable[[], None]
    events: queue.Queue[Event] = field(default_factory=queue.Queue)
    stopped: bool = False

    def start(self) -> None:
        if self.exported is not None:
            position = self.exported.position
        else:
            position = self.slot.wal_end
            self.slot.commit(message("test.nudge", ""))
        self.events.put(Ready(position))
        lsn = format_lsn(position)
        for t in self.tables:
            base = {"lsn": lsn, "schema": t.schema, "table": t.table}
            rows = self.rows.get(t, [])
            names = list(rows[0]) if rows else ["id"]
            types = [column_type(v) for v in rows[0].values()] if rows else ["integer"]
            shape = {"columns": names, "types": types, "key": names[:1]}
            truncate = {"op": "truncate", **base, **shape}
            self.events.put(Rows(t, [truncate], 0))
            inserts = [{"op": "insert", **base, **shape, "values": list(r.values())} for r in rows]
            if inserts:
                self.events.put(Rows(t, inserts, 100 * len(inserts)))
        self.events.put(
            Done(tuple(self.tables), sum(len(self.rows.get(t, [])) for t in self.tables))
        )
        self.wake()

    def stop(self) -> None:
        self.stopped = True


# ---------------------------------------------------------------- all of them


def config(**env: str) -> ExtractorConfig:
    return load_config(ExtractorConfig, environ=full_env(**env))


class Servers:
    """PostgreSQL (one slot), RabbitMQ and a catalog, in memory; sessions made on them."""

    def __init__(
        self,
        tables: list[str],
        *,
        layout: Layout | None = None,
        slot_exists: bool = True,
        rows: dict[str, list[dict[str, Any]]] | None = None,
        **env: str,
    ) -> None:
        env.setdefault("CDC_TABLES", ",".join(tables))
        env.setdefault("CDC_SNAPSHOT", "never")
        env.setdefault("CDC_SOURCE_HEARTBEAT_INTERVAL", "0")
        self.cfg = config(**env)
        refs = [TableRef(*t.split(".")) for t in tables]
        self.loop = VirtualLoop()
        self.slot = ScriptedSlot(exists=slot_exists)
        self.loop.readable_when(ScriptedSlot.FD, self.slot.readable)
        self.broker = StubBroker(self.loop)
        self.catalog = FakeCatalog(self.cfg.source, refs, layout or Layout(tables=frozenset(refs)))
        self.heartbeat = FakeHeartbeat(self.slot, self.cfg.source.slot)
        self.rows = {TableRef(*t.split(".")): r for t, r in (rows or {}).items()}
        self.copiers: list[FakeCopier] = []
        self.metrics = ExtractorMetrics()

    def _copier(
        self, tables: list[TableRef], exported: Exported | None, wake: Callable[[], None]
    ) -> FakeCopier:
        copier = FakeCopier(self.slot, self.rows, tables, exported, wake)
        self.copiers.append(copier)
        return copier

    def _stored(self) -> Stored:
        return decode_state(self.broker.states[-1]) if self.broker.states else Stored()

    def session(self, *, until_drained: bool = True) -> StreamSession:
        """A new session of the extractor, on a loop of its own (pika's is closed at the end of
        each); virtual time goes on from the last one's."""
        now = self.loop.now
        self.loop = VirtualLoop()
        self.loop.now = now
        self.loop.readable_when(ScriptedSlot.FD, self.slot.readable)
        self.broker.loop = self.loop
        parts = Collaborators(
            loop=self.loop,
            source=self.slot,
            broker=self.broker,
            catalog=self.catalog,
            heartbeat=self.heartbeat,
            types=TypeResolver(lambda names: {n: n for n in names}),
            copier=self._copier,
            load_state=self._stored,
            clock=self.loop.time,
        )
        return StreamSession(self.cfg, self.metrics, parts, until_drained=until_drained)

    def run(self, *, until_drained: bool = True) -> StreamSession:
        """A new session, run to its end (a fault raises)."""
        session = self.session(until_drained=until_drained)
        session.run()
        return session
