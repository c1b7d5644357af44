"""Group the changes of one source transaction into bounded chunks, each one message.

A chunk is emitted as soon as the next change would not fit, so memory stays bounded by one
chunk however large the transaction. Each change gets its identity within the transaction
(its WAL record's LSN and its ordinal among that record's captured changes, shared/position.py),
and each message says which position it continues from (``after``: the end of the message
published before it in this session). Neither depends on the chunk limits, the table filter or
excluded columns, so the applier trims a transaction resent with other settings to exactly
what is new.

In a copy, a chunk never mixes tables: a value MariaDB refuses then parks one table's rows in
the dead-letter queue, never another table's.

With ``target.partitions`` N > 1 there is one assembler per partition, each its own chain,
driven by routing.py, which numbers the changes itself (``add_numbered``: a WAL record's
changes may go to several partitions), cuts chunks before a barrier (``cut``) and marks the
next chunk as a barrier's copy (``barrier_next``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from extractor.decode import Begin
from shared import envelope, wire
from shared.errors import DecodeError
from shared.lsn import parse_lsn
from shared.position import Position
from shared.runs import Runs


@dataclass(frozen=True, slots=True)
class Outgoing:
    body: bytes
    commit_lsn: int
    commit_end: int  # where the commit record ends: what the slot may be confirmed up to
    commit_time: str
    copy: bool
    chunk: int
    last: bool
    changes: int
    after: Position | None  # where the message continues from
    end: Position  # where the message ends (its transaction's end if last)
    resumed: bool
    partition: int = 0
    partitions: int = 1
    afters: tuple[Position | None, ...] | None = None  # a barrier's copy: every partition's
    barrier: bool = False

    # The message's id and headers are made when it is published alone: a small transaction
    # batched with others goes under the batch's (the first's and the last's), and making
    # them for every one was a tenth of the extractor's CPU on single-row transactions.
    @property
    def message_id(self) -> str:
        partition = self.partition if self.partitions > 1 else None
        return envelope.message_id(self.commit_lsn, self.chunk, self.copy, partition)

    @property
    def headers(self) -> dict[str, Any]:
        return envelope.headers_for(
            commit_lsn=self.commit_lsn,
            copy=self.copy,
            chunk=self.chunk,
            last=self.last,
            after=self.after,
            end=self.end,
            resumed=self.resumed,
            count=self.changes,
            partition=self.partition,
            partitions=self.partitions,
            afters=self.afters,
        )


class Assembler:
    def __init__(
        self,
        slot: str,
        max_changes: int,
        max_bytes: int,
        resume: Position | None,
        *,
        partition: int = 0,
        partitions: int = 1,
    ) -> None:
        """``resume``: where this session resumed the slot (None: a new slot, before whose
        first message nothing exists). ``partition`` of ``partitions``: the chain this one
        assembles (with N > 1, routing.py)."""
        self._slot = slot
        self._partition = partition
        self._partitions = partitions
        self._barrier: tuple[Position | None, ...] | None = None
        self._max_changes = max_changes
        self._max_bytes = max_bytes
        self._after = resume
        self._resumed = resume is not None
        self._marked = False
        self._copy = False
        self._txn: Begin | None = None
        # The chunk being filled: its changes already in the wire's runs (no change object is
        # kept), how many, their bytes, and what its last change was.
        self._runs = Runs()
        self._pending = 0
        self._pending_bytes = 0
        self._tail_lsn = ""
        self._tail_n = 0
        self._tail_table: tuple[str, str] = ("", "")
        self._chunk = 0
        self._chunk_after: Position | None = None
        self._last_lsn = ""
        self._n = 0

    @property
    def in_transaction(self) -> bool:
        return self._txn is not None

    def begin(self, begin: Begin, copy: bool = False) -> None:
        if self._txn is not None:
            raise DecodeError(f"begin of xid {begin.xid} inside xid {self._txn.xid}")
        self._txn = begin
        self._copy = copy
        if self._runs.runs:  # else the empty one the last chunk left (one per chunk, not two)
            self._runs = Runs()
        self._pending = 0
        self._pending_bytes = 0
        self._chunk = 0
        self._chunk_after = self._after
        self._marked = False
        self._last_lsn = ""
        self._n = 0

    def mark(self) -> None:
        """Publish this transaction even if it changes nothing we capture (a heartbeat)."""
        self._marked = True

    def add(self, change: dict[str, Any], size: int) -> Outgoing | None:
        """Buffer a change; returns the previous chunk if this change starts a new one."""
        if self._txn is None:
            raise DecodeError("change outside a transaction (is include-transaction off?)")
        lsn = change["lsn"]
        if lsn == self._last_lsn:
            self._n += 1
            change["n"] = n = self._n
        else:
            self._last_lsn = lsn
            self._n = 0
            n = change.get("n", 0)  # add_numbered's caller numbered it
        out = None
        if self._pending and (
            self._pending >= self._max_changes
            or self._pending_bytes + size > self._max_bytes
            or (self._copy and self._tail_table != (change["schema"], change["table"]))
        ):
            out = self._emit(last=False)
        self._runs.add(change)
        self._pending += 1
        self._pending_bytes += size
        self._tail_lsn, self._tail_n = lsn, n
        if self._copy:
            self._tail_table = (change["schema"], change["table"])
        return out

    def add_numbered(self, change: dict[str, Any], size: int) -> Outgoing | None:
        """``add`` for a change the caller numbered already (routing.py: the changes of one WAL
        record may go to several partitions, so only the caller sees them all)."""
        self._last_lsn = ""  # never the same record as this change's: its ``n`` stands
        return self.add(change, size)

    @property
    def tail(self) -> Position | None:
        """Where this chain stands: the end of its last message (or the session's claim)."""
        return self._chunk_after if self._txn is not None else self._after

    @property
    def pending(self) -> int:
        """Changes buffered for the next chunk."""
        return self._pending

    def barrier_next(self, afters: tuple[Position | None, ...]) -> None:
        """The next chunk this assembler emits is a barrier's copy, with every partition's
        ``after`` of it."""
        self._barrier = afters

    def cut(self, end: Position | None = None) -> Outgoing:
        """The changes buffered as a chunk now, not the last of its transaction. ``end``: a
        marker's (no changes to say where it ends: the barrier's end on partition 0)."""
        return self._emit(last=False, end=end)

    def alone(self, change: dict[str, Any]) -> list[Outgoing]:
        """A change that travels in a message of its own (a schema change: MariaDB commits
        DDL by itself, so the applier applies it as a unit of its own): the chunk before it,
        if any, and its own."""
        out = [self._emit(last=False)] if self._pending else []
        self.add(change, 0)  # the chunk is empty now: nothing to emit before it
        out.append(self._emit(last=False))
        return out

    def commit(self, end: int = 0) -> Outgoing | None:
        """The transaction's last chunk, or None if it changed nothing we capture. ``end``:
        where its commit record ends, if the begin did not say."""
        txn = self._txn
        if txn is None:
            raise DecodeError("commit outside a transaction")
        if end:
            txn.commit_end = end
        out = self._emit(last=True) if self._pending or self._chunk or self._marked else None
        if out is not None:
            self._after = Position.end_of(txn.commit_lsn, self._copy)
        self._txn = None
        return out

    def commit_end(self) -> int:
        if self._txn is None:
            raise DecodeError("no transaction in progress")
        return self._txn.commit_end

    def _emit(self, *, last: bool, end: Position | None = None) -> Outgoing:
        txn = self._txn
        assert txn is not None
        pending, copy, chunk = self._pending, self._copy, self._chunk
        afters, self._barrier = self._barrier, None
        if last:
            end = Position.end_of(txn.commit_lsn, copy)
        elif end is not None:
            if pending:
                raise ValueError("only a marker, without changes, is given its end")
        else:
            end = Position(txn.commit_lsn, copy, (parse_lsn(self._tail_lsn), self._tail_n))
        after = self._chunk_after
        body = wire.encode(
            slot=self._slot,
            xid=txn.xid,
            commit_lsn=txn.commit_lsn,
            commit_time=txn.commit_time,
            copy=copy,
            chunk=chunk,
            last=last,
            after=after,
            resumed=self._resumed,
            runs=self._runs.runs,
            partition=self._partition,
            partitions=self._partitions,
            afters=afters,
            end=end,
        )
        out = Outgoing(
            body=body,
            commit_lsn=txn.commit_lsn,
            commit_end=txn.commit_end,
            commit_time=txn.commit_time,
            copy=copy,
            chunk=chunk,
            last=last,
            changes=pending,
            after=after,
            end=end,
            resumed=self._resumed,
            partition=self._partition,
            partitions=self._partitions,
            afters=afters,
            barrier=afters is not None,
        )
        self._chunk += 1
        self._chunk_after = end
        self._resumed = False  # only a session's first message continues from the slot
        self._runs = Runs()
        self._pending = 0
        self._pending_bytes = 0
        return out
