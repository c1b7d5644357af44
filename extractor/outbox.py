"""Everything that leaves for RabbitMQ, and what RabbitMQ confirmed of it.

The stream's transactions and the copies' go through here alike: chunked into messages
(assemble.py), published (publisher.py) and tracked until confirmed (confirms.py), which gives
the flush position feedback.py sends to PostgreSQL. At most ``max_inflight`` messages await
their confirm: the reader (reading.py) and the copies stop putting out more beyond that.
"""

from __future__ import annotations

from typing import Any, Protocol

from extractor.assemble import Assembler, Outgoing
from extractor.confirms import ConfirmTracker
from extractor.decode import Begin
from extractor.metrics import ExtractorMetrics


class MessageSink(Protocol):
    """Publishing with confirms (publisher.py); each call returns the message's delivery tag."""

    def publish(self, body: bytes, message_id: str, headers: dict[str, Any]) -> int: ...

    def publish_state(self, body: bytes) -> int: ...


class Outbox:
    def __init__(
        self,
        assembler: Assembler,
        sink: MessageSink,
        tracker: ConfirmTracker,
        metrics: ExtractorMetrics,
        max_inflight: int,
    ) -> None:
        self._assembler = assembler
        self._sink = sink
        self._tracker = tracker
        self._metrics = metrics
        self._max_inflight = max_inflight
        self._closed = False

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
        say): the delivery tag of its last message, None if it had none."""
        out = self._assembler.commit(end)
        return self._publish(out) if out is not None else None

    def pass_empty(self, end: int) -> None:
        """A transaction with no message: the slot may pass it once all before is confirmed
        (and must: PostgreSQL's shutdown waits for the client to confirm it all)."""
        self._tracker.nothing_to_publish(end)

    def publish_state(self, body: bytes) -> None:
        seq = self._sink.publish_state(body)
        self._tracker.published(seq, self._tracker.flush_lsn, ends_txn=False)

    def _publish(self, out: Outgoing) -> int:
        seq = self._sink.publish(out.body, out.message_id, out.headers)
        self._tracker.published(seq, out.commit_end, out.last)
        m = self._metrics
        m.messages.inc()
        m.changes.inc(out.changes)
        if out.last:
            m.transactions.inc()
        return seq

    # ------------------------------------------------------------ confirms

    def confirm(self, delivery_tag: int, multiple: bool, ack: bool) -> None:
        """RabbitMQ's ack or nack; a nack raises (the session ends)."""
        if not ack:
            self._tracker.nacked(delivery_tag)
        self._tracker.acked(delivery_tag, multiple)

    def confirmed(self, seq: int) -> bool:
        """This message and every one published before it are confirmed."""
        return self._tracker.confirmed(seq)

    def hold(self) -> object:
        """Keep the flush position behind everything published from now on, until release."""
        return self._tracker.hold()

    def release(self, token: object) -> None:
        self._tracker.release(token)

    def fail(self) -> None:
        """The session failed: nothing moves the flush position, nothing more goes out."""
        self._tracker.fail()
        self._closed = True

    def close(self) -> None:
        self._closed = True
