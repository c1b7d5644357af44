"""In-memory fakes of what the applier talks to, for unit tests of its real loop.

- ``FakeTarget``: MariaDB as the batch applier (applier/apply.py) presents it: a batch is
  applied whole or not at all, and refused if the checkpoint is not the one it was ordered
  against; faults on command (a row refused, MariaDB away for a few attempts, a plan that
  cannot be made, a batch held back until the test lets it go);
- ``StubBroker``: RabbitMQ as the consumer (applier/consumer.py) sees it (dramatiq's
  StubBroker is the model): a queue of published messages delivered up to the prefetch
  window, acks, a dead-letter queue; a closed connection requeues what was not acked, marked
  redelivered, ahead of the rest, as RabbitMQ does;
- ``Clock``: virtual time, moved on by the broker's waits (a poll that finds nothing, a
  sleep), so that grace periods pass without waiting.

``Rig`` puts them together; ``Rig.run`` runs a service until drained (arq's burst mode):
nothing left in the queue and nothing unacked, or a virtual deadline passed.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from applier.apply import BatchResult, Prepared
from applier.collaborators import Collaborators
from applier.consumer import Delivery
from applier.plan import Plan
from applier.service import ApplierService
from shared import envelope, wire
from shared.config import ApplierConfig, load_config
from shared.envelope import Envelope
from shared.errors import (
    BrokerUnavailable,
    CdcError,
    CheckpointMoved,
    RowRejected,
    TargetUnavailable,
)
from shared.position import Position

START_TIME = 1000.0


class Clock:
    def __init__(self) -> None:
        self.now = START_TIME

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# ---------------------------------------------------------------- MariaDB


class FakeTarget:
    """One partition's view of MariaDB; the partitions of one test share ``rows`` (each
    partition's checkpoint row) and ``log`` (what committed, in order, on which partition)."""

    def __init__(
        self,
        partition: int = 0,
        rows: list[Position | None] | None = None,
        log: list[tuple[int, int]] | None = None,
    ) -> None:
        self.partition = partition
        self.rows: list[Position | None] = [None] if rows is None else rows
        self.log: list[tuple[int, int]] = [] if log is None else log
        self.applied: list[int] = []  # commit LSNs, in the order they committed
        self.replayed: list[int] = []
        self.prepared: list[int] = []
        self.executed: list[int] = []
        self.poison: set[int] = set()  # commit LSNs MariaDB refuses a row of
        self.unplannable: set[int] = set()  # commit LSNs whose plan cannot be made
        self.transient = 0  # batches to fail as if MariaDB were away
        self.unreadable = 0  # checkpoint reads to fail so
        self.gate: threading.Event | None = None  # batches wait for it, on the worker
        # Another applier's doing, run before a batch executes / the checkpoint is read
        # (with the number of the read).
        self.before_execute: Callable[[], None] = lambda: None
        self.before_read: Callable[[int], None] = lambda _: None
        self.reads = 0
        self.forgotten = 0
        self.closed = False

    @property
    def checkpoint_row(self) -> Position | None:
        return self.rows[self.partition]

    @checkpoint_row.setter
    def checkpoint_row(self, position: Position | None) -> None:
        self.rows[self.partition] = position

    def checkpoint(self) -> Position | None:
        self.reads += 1
        self.before_read(self.reads)
        if self.unreadable:
            self.unreadable -= 1
            raise TargetUnavailable("MariaDB went away")
        return self.checkpoint_row

    def prepare(self, batch: list[Envelope]) -> Prepared:
        self.prepared += [e.commit_lsn for e in batch]
        if any(e.commit_lsn in self.unplannable for e in batch):
            raise RowRejected("cannot apply: a value no converter takes")
        return Prepared(batch, {}, Plan([], {}))

    def execute(
        self, prepared: Prepared, expect: Position | None, *, replay: bool = False
    ) -> BatchResult:
        batch = prepared.batch
        self.executed += [e.commit_lsn for e in batch]
        if self.gate is not None:
            assert self.gate.wait(10)
        self.before_execute()
        if not replay and self.checkpoint_row != expect:
            raise CheckpointMoved(self.checkpoint_row)
        if self.transient:
            self.transient -= 1
            raise TargetUnavailable("MariaDB went away")
        if any(e.commit_lsn in self.poison for e in batch):
            raise RowRejected("a row MariaDB refuses")
        if replay:
            self.replayed += [e.commit_lsn for e in batch]
            return BatchResult(applied=len(batch))
        self.applied += [e.commit_lsn for e in batch]
        self.log += [(self.partition, e.commit_lsn) for e in batch]
        self.checkpoint_row = batch[-1].end
        return BatchResult(applied=len(batch), checkpoint=self.checkpoint_row)

    def skip(self, env: Envelope, expect: Position | None, at: Position | None = None) -> None:
        if self.checkpoint_row != expect:
            raise CheckpointMoved(self.checkpoint_row)
        self.checkpoint_row = env.end if at is None else at

    def checkpoints(self) -> list[Position | None]:
        self.reads += 1
        self.before_read(self.reads)
        return list(self.rows)

    def forget(self) -> None:
        self.forgotten += 1

    def refused(self) -> list[tuple[str, str, str]]:
        return []

    def close(self) -> None:
        self.closed = True


# ---------------------------------------------------------------- RabbitMQ


@dataclass
class Props:
    message_id: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)


@dataclass
class Message:
    body: bytes
    properties: Props
    redelivered: bool = False


class StubBroker:
    def __init__(self, clock: Clock, prefetch: int = 256) -> None:
        self._clock = clock
        self._configured = prefetch
        self.prefetch = prefetch
        self._next_prefetch = prefetch
        self.queue: deque[Message] = deque()
        self._unacked: dict[int, Message] = {}
        self._tags = 0
        self.acked: list[str] = []  # message ids, in the order they were acked
        self.dead: list[tuple[Message, CdcError]] = []
        self.connected = False
        self.connections = 0
        self.lose_connection = False  # the next poll or sleep finds the connection gone
        self.lost = threading.Event()  # set when it did
        self.idle: Callable[[], None] = lambda: None  # called when drained
        self.before_ack: Callable[[], None] = lambda: None  # what the test looks at then
        self.deadline = START_TIME + 600.0

    def publish(self, body: bytes, message_id: str | None = None, **headers: Any) -> None:
        self.queue.append(Message(body, Props(message_id, headers)))

    # What the applier calls.

    @property
    def unacked(self) -> int:
        return len(self._unacked)

    def connect(self) -> None:
        assert not self.connected, "connected twice"
        self.connected = True
        self.connections += 1
        self.prefetch = self._next_prefetch

    def poll(self, timeout: float, limit: int) -> list[Delivery]:
        assert self.connected
        self._check_connection()
        out: list[Delivery] = []
        while self.queue and len(out) < limit and len(self._unacked) < self.prefetch:
            m = self.queue.popleft()
            self._tags += 1
            self._unacked[self._tags] = m
            out.append(Delivery(self._tags, m.body, m.properties, m.redelivered))
        if not out:
            self._clock.advance(timeout)
            if (not self.queue and not self._unacked) or self._clock.now > self.deadline:
                self.idle()
        return out

    def ack(self, tags: list[int]) -> None:
        self.before_ack()
        for tag in tags:
            m = self._unacked.pop(tag)  # acking an unknown tag closes the channel
            self.acked.append(m.properties.message_id or "-")

    def park(self, delivery: Delivery, error: CdcError, body: bytes | None = None) -> None:
        props = delivery.properties
        self.dead.append((Message(delivery.body if body is None else body, props), error))

    def sleep(self, seconds: float) -> None:
        self._check_connection()
        self._clock.advance(seconds)

    def _check_connection(self) -> None:
        if self.lose_connection:
            self.lose_connection = False
            self.lost.set()
            raise BrokerUnavailable("connection reset (stub)")

    def widen(self) -> bool:
        wider = min(self.prefetch * 2, self._configured * 4)
        if wider <= self.prefetch:
            return False
        self._next_prefetch = wider
        return True

    def narrow(self) -> None:
        self._next_prefetch = self._configured

    def queue_depth(self) -> int:
        return len(self.queue)

    def close(self) -> None:
        """What was delivered and not acked goes back to the head of the queue."""
        back = [self._unacked[t] for t in sorted(self._unacked)]
        for m in reversed(back):
            m.redelivered = True
            self.queue.appendleft(m)
        self._unacked.clear()
        self.connected = False


# ---------------------------------------------------------------- messages


def insert(lsn: int) -> dict[str, Any]:
    return {
        "op": "insert", "lsn": "0/1", "schema": "public", "table": "t", "columns": ["id"],
        "types": ["integer"], "values": [lsn], "key": ["id"],
    }  # fmt: skip


def body(lsn: int, after: Position | None, *, resumed: bool = False) -> bytes:
    """One transaction of one insert, as the extractor publishes it."""
    return wire.encode(
        slot="s", xid=lsn, commit_lsn=lsn, commit_time="", copy=False, chunk=0, last=True,
        after=after, resumed=resumed, changes=[insert(lsn)],
    )  # fmt: skip


def chain(*lsns: int, first_after: Position | None = None) -> list[tuple[int, bytes]]:
    """Transactions each continuing from the one before; the first from ``first_after``."""
    out, after = [], first_after
    for lsn in lsns:
        out.append((lsn, body(lsn, after)))
        after = Position.end_of(lsn)
    return out


def together(*lsns: int, first_after: Position | None = None) -> bytes:
    """Small transactions batched in one message, as the extractor publishes them."""
    return b"[" + b",".join(b for _, b in chain(*lsns, first_after=first_after)) + b"]"


def headers_of(lsn: int, after: Position | None) -> dict[str, Any]:
    """The AMQP headers the extractor gives a one-transaction message."""
    return envelope.headers_for(
        commit_lsn=lsn, copy=False, chunk=0, last=True, after=after,
        end=Position.end_of(lsn), resumed=False, count=1,
    )  # fmt: skip


# ---------------------------------------------------------------- all together


class Rig:
    def __init__(self, **settings: str) -> None:
        environ = {
            "CDC_SLOT": "s",
            "CDC_BROKER_URL": "amqp://u:p@127.0.0.1:1/%2f",
            "CDC_TARGET_URL": "mariadb+mariadbconnector://u:p@127.0.0.1:1/db",
            # One message per batch unless told otherwise: every batch boundary is exercised.
            "CDC_TARGET_MAX_BATCH_CHANGES": "1",
            **settings,
        }
        self.cfg = load_config(ApplierConfig, environ=environ)
        self.clock = Clock()
        self.target = FakeTarget()
        self.broker = StubBroker(self.clock, self.cfg.broker.prefetch)

    def service(self) -> ApplierService:
        svc = ApplierService(self.cfg, Collaborators.one(self.target, self.broker, self.clock))
        self.broker.idle = svc.request_stop
        return svc

    def publish(self, *lsns: int, first_after: Position | None = None) -> None:
        for lsn, b in chain(*lsns, first_after=first_after):
            self.broker.publish(b, f"{lsn}.0")

    def run(self, seconds: float = 600.0) -> ApplierService:
        """A service run until drained (or ``seconds`` of virtual time passed), then stopped."""
        self.broker.deadline = self.clock.now + seconds
        svc = self.service()
        svc.run()
        return svc
