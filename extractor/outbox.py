"""Everything that leaves for RabbitMQ, and what RabbitMQ confirmed of it.

The stream's transactions and the copies' go through here alike: chunked into messages
(assemble.py), published (publisher.py) and tracked until confirmed (confirms.py), which gives
the flush position feedback.py sends to PostgreSQL. At most ``max_inflight`` messages await
their confirm: the reader (reading.py) and the copies stop putting out more beyond that.

Small transactions that come while RabbitMQ has not confirmed what went before go out
together, several envelopes in one message (a JSON array, in stream order), up to the chunk
limits: one publish, one confirm, one delivery and one ack for many transactions. When nothing
awaits a confirm, a transaction goes at once, so an idle pipeline's latency does not grow; the
batch waiting goes as soon as the confirms are in, once it is full, or once its first
transaction has waited ``linger`` seconds (as Kafka's linger.ms): a confirm RabbitMQ is slow to
give (its disk stalls) then does not hold back what RabbitMQ would deliver meanwhile
(docs/performance.md, the latency tail).

With ``target.partitions`` N > 1, routing.py's ``PartitionedOutbox`` does the same per
partition, on top of this one: the batches waiting on all partitions go together, when the
confirms are in, when one of them is full, and at most ``linger`` seconds after the first
transaction of them began to wait.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from extractor.assemble import Assembler, Outgoing
from extractor.confirms import ConfirmTracker
from extractor.decode import Begin
from extractor.metrics import ExtractorMetrics
from shared import envelope


class MessageSink(Protocol):
    """Publishing with confirms (publisher.py); each call returns the message's delivery tag."""

    def publish(
        self, body: bytes, message_id: str, headers: dict[str, Any], partition: int = 0
    ) -> int: ...

    def publish_state(self, body: bytes) -> int: ...


class Outbox:
    def __init__(
        self,
        assembler: Assembler,
        sink: MessageSink,
        tracker: ConfirmTracker,
        metrics: ExtractorMetrics,
        max_inflight: int,
        *,
        max_changes: int = 1000,
        max_bytes: int = 4 << 20,
        linger: float = 0.0,
        later: Callable[[float, Callable[[], None]], None] | None = None,
    ) -> None:
        """``max_changes``, ``max_bytes``: how much a batch of small transactions may hold
        (the chunk limits); ``linger``: how long it may wait for confirms, timed by ``later``
        (the session's loop; None: no limit)."""
        self._assembler = assembler
        self._sink = sink
        self._tracker = tracker
        self._metrics = metrics
        self._max_inflight = max_inflight
        self._max_changes = max_changes
        self._max_bytes = max_bytes
        self._closed = False
        self._batch = Batch()
        self._linger = linger
        self._later = later

    # ------------------------------------------------------------ the window

    @property
    def inflight(self) -> int:
        return self._tracker.inflight

    @property
    def flush_lsn(self) -> int:
        return self._tracker.flush_lsn

    def full(self) -> bool:
        return self._tracker.inflight >= self._max_inflight

    def half_free(self) -> bool:
        return self._tracker.inflight <= self._max_inflight // 2

    def has_room(self) -> bool:
        """Whether more may be published now (never once the session failed or ended)."""
        return not self._closed and self._tracker.inflight < self._max_inflight

    # ------------------------------------------------------------ transactions

    def begin(self, begin: Begin, copy: bool = False) -> None:
        self._assembler.begin(begin, copy)

    def add(self, change: dict[str, Any], size: int) -> None:
        out = self._assembler.add(change, size)
        if out is not None:
            self._publish(out)

    def alone(self, change: dict[str, Any]) -> None:
        """A change in a message of its own (a schema change: assemble.py ``alone``)."""
        for out in self._assembler.alone(change):
            self._publish(out)

    def mark(self) -> None:
        """Publish the transaction in progress even if nothing of it is captured."""
        self._assembler.mark()

    def commit_end(self) -> int:
        """Where the commit record of the transaction in progress ends, if known yet."""
        return self._assembler.commit_end()

    def commit(self, end: int = 0) -> int | None:
        """Ends the transaction (whose commit record ends at ``end``, if its begin did not
        say): the delivery tag of its last message (0 while it waits in a batch), None if it
        had none."""
        out = self._assembler.commit(end)
        if out is None:
            return None
        if not self._batchable(out):
            return self._publish(out)
        batch = self._batch
        if not batch.outs and self._tracker.inflight == 0:
            return self._publish(out)  # nothing awaits a confirm: no reason to wait
        if not batch.outs:
            self._linger_from_now()
        batch.add(out)
        if batch.changes >= self._max_changes or batch.size >= self._max_bytes:
            self.flush()
        return 0

    def pass_empty(self, end: int) -> None:
        """A transaction with no message: the slot may pass it once all before is confirmed
        (and must: PostgreSQL's shutdown waits for the client to confirm it all). Behind a
        batch still waiting, it goes with that batch."""
        if self._batch.outs:
            self._batch.end = max(self._batch.end, end)
        else:
            self._tracker.nothing_to_publish(end)

    def flush(self) -> None:
        """Send the batch of small transactions that waits, if any."""
        batch, self._batch = self._batch, Batch()
        if len(batch.outs) == 1 and batch.end == batch.outs[0].commit_end:
            self._publish(batch.outs[0])
        elif batch.outs:
            self._publish_batch(batch)

    def _linger_from_now(self) -> None:
        """The first transaction of a batch begins to wait: the batch goes at most
        ``linger`` seconds from now."""
        if self._later is not None:
            group = self._group()
            self._later(self._linger, lambda: self._lingered(group))

    def _group(self) -> object:
        """What waits to go out together; each flush starts a new one."""
        return self._batch

    def _lingered(self, group: object) -> None:
        # Confirms, a full batch or a message after it may have sent the batch first: its
        # linger then has nothing to do (the batch waiting now has a linger of its own).
        if group is self._group() and self._waiting() and not self._closed:
            self.flush()

    def _batchable(self, out: Outgoing) -> bool:
        # A whole small transaction of the stream; not a copy, not a chunk of a large one, not
        # a schema change (which travels alone).
        return out.last and out.chunk == 0 and not out.copy and out.changes < self._max_changes

    def publish_state(self, body: bytes) -> None:
        seq = self._sink.publish_state(body)
        self._tracker.published(seq, self._tracker.flush_lsn, ends_txn=False)

    def _publish(self, out: Outgoing) -> int:
        if self._batch.outs:
            self.flush()  # what waits goes first: messages leave in stream order
        seq = self._sink.publish(out.body, out.message_id, out.headers)
        self._tracker.published(seq, out.commit_end, out.last)
        m = self._metrics
        m.messages.inc()
        m.changes.inc(out.changes)
        if out.last:
            m.transactions.inc()
        if not out.copy:
            m.published(out.commit_time)
        return seq

    def _publish_batch(self, batch: Batch) -> int:
        first, last = batch.outs[0], batch.outs[-1]
        body = b"[" + b",".join(o.body for o in batch.outs) + b"]"
        headers = envelope.batch_headers(first.headers, last.headers, batch.changes)
        message_id = f"{first.message_id}+{len(batch.outs) - 1}"
        seq = self._sink.publish(body, message_id, headers)
        self._tracker.published(seq, batch.end, ends_txn=True)
        m = self._metrics
        m.messages.inc()
        m.changes.inc(batch.changes)
        m.transactions.inc(len(batch.outs))
        m.published(first.commit_time)
        return seq

    # ------------------------------------------------------------ confirms

    def confirm(self, delivery_tag: int, multiple: bool, ack: bool) -> None:
        """RabbitMQ's ack or nack; a nack raises (the session ends). A batch that waited for
        the confirms goes now."""
        if not ack:
            self._tracker.nacked(delivery_tag)
        self._tracker.acked(delivery_tag, multiple)
        if self._waiting() and self._tracker.inflight == 0 and not self._closed:
            self.flush()

    def _waiting(self) -> bool:
        """Whether small transactions wait to go out together."""
        return bool(self._batch.outs)

    def confirmed(self, seq: int) -> bool:
        """This message and every one published before it are confirmed."""
        return self._tracker.confirmed(seq)

    def hold(self) -> object:
        """Keep the flush position behind everything published from now on, until release
        (what waits in a batch came before: it goes first, and is not held)."""
        self.flush()
        return self._tracker.hold()

    def release(self, token: object) -> None:
        self._tracker.release(token)

    def fail(self) -> None:
        """The session failed: nothing moves the flush position, nothing more goes out."""
        self._tracker.fail()
        self._closed = True

    def close(self) -> None:
        self._closed = True


class Batch:
    """Small transactions waiting to go out together, and the slot position they reach."""

    def __init__(self) -> None:
        self.outs: list[Outgoing] = []
        self.changes = 0
        self.size = 0
        self.end = 0  # where the last commit record ends (empty transactions included)

    def add(self, out: Outgoing) -> None:
        self.outs.append(out)
        self.changes += out.changes
        self.size += len(out.body)
        self.end = max(self.end, out.commit_end)
