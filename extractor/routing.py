"""The stream split into ``target.partitions`` N > 1 chains, one per partition's queue.

Each change goes to the partition of its key (shared/partitioning.py); each partition has an
assembler of its own (assemble.py), so each has its own chunks and its own chain (``after``
names the message before it on that partition), and its own batch of small transactions. A
change that spans partitions is a *barrier* (shared/envelope.py has the contract): every
partition's pending changes are cut into a chunk first, so each partition's ``after`` of the
barrier is exact; then partition 0 gets the barrier's changes (consecutive barrier changes
together, up to the chunk limits) and every other partition a marker ending where they end,
each copy listing every partition's ``after``. A barrier ends at its last change, which may be
in the middle of a long transaction; one that is the last thing in its transaction goes out
with the commit, ending where the transaction ends. A copy is one barrier: all its chunks on
partition 0, a marker on each other partition at its end. A heartbeat goes to every partition,
so each applier sees the stream move.

The slot moves past a transaction only when every message of it, on every partition, and
everything before it are confirmed: of a transaction's messages only the last one published
ends it for the confirm tracker (confirms.py), and the small transactions batched per
partition go out together, all batches at once, the last of them ending the group at the
newest commit any of them holds. The group goes as the single outbox's batch does
(outbox.py): when the confirms are in, when one of its batches is full, before any other
message, and at most ``linger`` seconds after its first transaction began to wait, confirmed
or not (the linger of a group already gone does nothing).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from extractor.assemble import Assembler, Outgoing
from extractor.confirms import ConfirmTracker
from extractor.decode import Begin
from extractor.metrics import ExtractorMetrics
from extractor.outbox import Batch, MessageSink, Outbox
from shared import envelope
from shared.envelope import DESIGNATED
from shared.partitioning import partitions_of_dict
from shared.position import Position


def assemblers(
    slot: str, max_changes: int, max_bytes: int, resume: Position | None, partitions: int
) -> list[Assembler]:
    """One per partition, each resuming from the session's claim: a partition quiet since
    the last session continues from "everything committed before the slot position"."""
    return [
        Assembler(slot, max_changes, max_bytes, resume, partition=i, partitions=partitions)
        for i in range(partitions)
    ]


def outbox_for(
    sink: MessageSink,
    tracker: ConfirmTracker,
    metrics: ExtractorMetrics,
    *,
    slot: str,
    partitions: int,
    resume: Position | None,
    max_inflight: int,
    max_changes: int,
    max_bytes: int,
    linger: float,
    later: Callable[[float, Callable[[], None]], None],
) -> Outbox:
    """A session's outbox: one chain (outbox.py), or one per partition (below)."""
    options: dict[str, Any] = {
        "max_changes": max_changes,
        "max_bytes": max_bytes,
        "linger": linger,
        "later": later,
    }
    if partitions == 1:
        one = Assembler(slot, max_changes, max_bytes, resume)
        return Outbox(one, sink, tracker, metrics, max_inflight, **options)
    parts = assemblers(slot, max_changes, max_bytes, resume, partitions)
    return PartitionedOutbox(parts, sink, tracker, metrics, max_inflight, **options)


class PartitionedOutbox(Outbox):
    def __init__(
        self,
        parts: list[Assembler],
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
        super().__init__(
            parts[DESIGNATED],
            sink,
            tracker,
            metrics,
            max_inflight,
            max_changes=max_changes,
            max_bytes=max_bytes,
            linger=linger,
            later=later,
        )
        self._parts = parts
        self._count = len(parts)
        self._batches = [Batch() for _ in parts]
        self._group_end = 0  # the newest commit end of what waits in the batches
        self._copy = False
        self._last_lsn = ""
        self._n = 0
        # Each table's key columns as its last change had them: a table that gains, loses or
        # changes its primary key changes partitions, which only a barrier keeps in order
        # when no schema change says so (the DDL capture not installed).
        self._keys: dict[tuple[str, str], list[str]] = {}
        # The barrier being gathered on partition 0, if any: its changes and bytes so far.
        self._barrier: tuple[Position | None, ...] | None = None
        self._barrier_changes = 0
        self._barrier_bytes = 0

    # ------------------------------------------------------------ transactions

    def begin(self, begin: Begin, copy: bool = False) -> None:
        for part in self._parts:
            part.begin(begin, copy)
        self._copy = copy
        self._last_lsn = ""
        self._n = 0
        self._barrier = None
        if copy:
            # A copy is one barrier: its first chunk on partition 0 and a marker on every
            # other partition (at its commit, as nothing comes between) say where each
            # chain stood.
            afters = self._afters()
            for i, part in enumerate(self._parts):
                part.barrier_next(afters)
                if i != DESIGNATED:
                    part.mark()

    def add(self, change: dict[str, Any], size: int) -> None:
        self._number(change)
        if self._copy:
            self._send(self._parts[DESIGNATED].add_numbered(change, size))
            return
        partitions = partitions_of_dict(change, self._count)
        if len(partitions) == 1 and self._rekeyed(change):
            partitions = frozenset(range(self._count))
        if len(partitions) == 1:
            if self._barrier is not None:
                self._end_barrier()
            (p,) = partitions
            self._send(self._parts[p].add_numbered(change, size))
            return
        if self._barrier is not None and (
            self._barrier_changes >= self._max_changes
            or self._barrier_bytes + size > self._max_bytes
        ):
            self._end_barrier()
        if self._barrier is None:
            self._start_barrier()
        # Within the limits just checked: partition 0's assembler never cuts it by itself.
        out = self._parts[DESIGNATED].add_numbered(change, size)
        assert out is None, "a barrier cut by the chunk limits"
        self._barrier_changes += 1
        self._barrier_bytes += size

    def _rekeyed(self, change: dict[str, Any]) -> bool:
        """Whether the change's table had other key columns at its last change (in this
        session): its rows were routed otherwise until now."""
        table = (change["schema"], change["table"])
        key = change.get("key") or []
        seen = self._keys.get(table)
        if seen == key:
            return False
        self._keys[table] = key
        return seen is not None

    def alone(self, change: dict[str, Any]) -> None:
        """A schema change: a barrier of its own, in a message of its own."""
        self._number(change)
        if self._barrier is not None:
            self._end_barrier()
        self._start_barrier()
        self._parts[DESIGNATED].add_numbered(change, 0)
        self._end_barrier()

    def mark(self) -> None:
        for part in self._parts:
            part.mark()

    def commit(self, end: int = 0) -> int | None:
        if self._barrier is not None:
            # The barrier is the last of its transaction: it goes with ``last``, ending where
            # the transaction ends, markers included.
            for part in self._parts:
                part.mark()
            self._barrier = None
        outs = [out for part in self._parts if (out := part.commit(end)) is not None]
        if not outs:
            return None
        self._metrics.transactions.inc()
        if any(not self._batchable(out) for out in outs) or (
            not self._waiting() and self._tracker.inflight == 0
        ):
            seq = 0
            for i, out in enumerate(outs):
                seq = self._publish_one(out, ends_txn=i == len(outs) - 1)
            return seq
        if not self._waiting():
            self._linger_from_now()  # one linger for the group, on whatever partitions
        for out in outs:
            self._batches[out.partition].add(out)
            self._group_end = max(self._group_end, out.commit_end)
        if any(b.changes >= self._max_changes or b.size >= self._max_bytes for b in self._batches):
            self.flush()
        return 0

    def pass_empty(self, end: int) -> None:
        if self._waiting():
            self._group_end = max(self._group_end, end)
        else:
            self._tracker.nothing_to_publish(end)

    def flush(self) -> None:
        """Every partition's batch goes now; the group ends with the last of them."""
        waiting = [b for b in self._batches if b.outs]
        if not waiting:
            return
        end, self._group_end = self._group_end, 0
        self._batches = [Batch() for _ in self._parts]
        for i, batch in enumerate(waiting):
            final = i == len(waiting) - 1
            if len(batch.outs) == 1:
                self._send_one(batch.outs[0], final, end)
            else:
                self._send_batch(batch, final, end)

    def _group(self) -> object:
        return self._batches  # a new list at each flush

    def _batchable(self, out: Outgoing) -> bool:
        return super()._batchable(out) and not out.barrier

    def _waiting(self) -> bool:
        return any(b.outs for b in self._batches)

    # ------------------------------------------------------------ barriers

    def _afters(self) -> tuple[Position | None, ...]:
        return tuple(part.tail for part in self._parts)

    def _start_barrier(self) -> None:
        for part in self._parts:
            if part.pending:
                self._send(part.cut())
        afters = self._afters()
        for part in self._parts:
            part.barrier_next(afters)
        self._barrier = afters
        self._barrier_changes = 0
        self._barrier_bytes = 0

    def _end_barrier(self) -> None:
        """The barrier gathered so far goes out, ending at its last change (inside the
        transaction): partition 0's changes, then every other partition's marker."""
        full = self._parts[DESIGNATED].cut()
        self._send(full)
        for i, part in enumerate(self._parts):
            if i != DESIGNATED:
                self._send(part.cut(end=full.end))
        self._barrier = None

    def _number(self, change: dict[str, Any]) -> None:
        # A change's ordinal among its WAL record's captured changes, as assemble.py numbers
        # them with one partition: positions must not depend on the split.
        lsn = change["lsn"]
        if lsn == self._last_lsn:
            self._n += 1
            change["n"] = self._n
        else:
            self._last_lsn = lsn
            self._n = 0

    # ------------------------------------------------------------ publishing

    def _send(self, out: Outgoing | None) -> None:
        """A chunk that does not end its transaction."""
        if out is not None:
            self._publish_one(out, ends_txn=False)

    def _publish(self, out: Outgoing) -> int:
        return self._publish_one(out, ends_txn=out.last)

    def _publish_one(self, out: Outgoing, ends_txn: bool) -> int:
        if self._waiting():
            self.flush()  # what waits goes first: the slot's order is the decode order
        return self._send_one(out, ends_txn, out.commit_end)

    def _send_one(self, out: Outgoing, ends_txn: bool, end: int) -> int:
        seq = self._sink.publish(out.body, out.message_id, out.headers, out.partition)
        self._tracker.published(seq, end, ends_txn)
        self._metrics.messages.inc()
        self._metrics.changes.inc(out.changes)
        if not out.copy:
            self._metrics.published(out.commit_time)
        return seq

    def _send_batch(self, batch: Batch, ends_txn: bool, end: int) -> int:
        first, last = batch.outs[0], batch.outs[-1]
        body = b"[" + b",".join(o.body for o in batch.outs) + b"]"
        headers = envelope.batch_headers(first.headers, last.headers, batch.changes)
        message_id = f"{first.message_id}+{len(batch.outs) - 1}"
        seq = self._sink.publish(body, message_id, headers, first.partition)
        self._tracker.published(seq, end, ends_txn)
        self._metrics.messages.inc()
        self._metrics.changes.inc(batch.changes)
        self._metrics.published(first.commit_time)
        return seq
