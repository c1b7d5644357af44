"""Group the changes of one source transaction into bounded chunks, each one message.

A chunk is emitted as soon as the next change would not fit, so memory stays bounded by one
chunk however large the transaction. Chunk boundaries depend only on the changes and the two
limits, so a transaction resent after a restart (same settings) gets the same message ids.
Each chunk also says where its first change stands in the transaction (``first``): with other
settings the boundaries move, and the applier still knows exactly which changes it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from extractor.decode import Begin
from shared import envelope
from shared.errors import DecodeError


@dataclass(frozen=True, slots=True)
class Outgoing:
    body: bytes
    message_id: str
    commit_lsn: int
    commit_time: str
    chunk: int
    first: int  # index of the chunk's first change within its transaction
    last: bool
    changes: int
    headers: dict[str, Any]


class Assembler:
    def __init__(self, slot: str, max_changes: int, max_bytes: int, resume_lsn: int) -> None:
        self._slot = slot
        self._max_changes = max_changes
        self._max_bytes = max_bytes
        # The message before the next transaction: where this session resumed the slot.
        self._prev_lsn = resume_lsn
        self._resumed = True
        self._marked = False
        self._snapshot = False
        self._txn: Begin | None = None
        self._pending: list[dict[str, Any]] = []
        self._pending_bytes = 0
        self._chunk = 0

    @property
    def in_transaction(self) -> bool:
        return self._txn is not None

    def begin(self, begin: Begin, snapshot: bool = False) -> None:
        if self._txn is not None:
            raise DecodeError(f"begin of xid {begin.xid} inside xid {self._txn.xid}")
        self._txn = begin
        self._snapshot = snapshot
        self._pending = []
        self._pending_bytes = 0
        self._chunk = 0
        self._first = 0
        self._marked = False

    def mark(self) -> None:
        """Publish this transaction even if it changes nothing we capture (a heartbeat)."""
        self._marked = True

    def add(self, change: dict[str, Any], size: int) -> Outgoing | None:
        """Buffer a change; returns the previous chunk if this change starts a new one."""
        if self._txn is None:
            raise DecodeError("change outside a transaction (is include-transaction off?)")
        out = None
        if self._pending and (
            len(self._pending) >= self._max_changes or self._pending_bytes + size > self._max_bytes
        ):
            out = self._emit(last=False)
        self._pending.append(change)
        self._pending_bytes += size
        return out

    def commit(self) -> Outgoing | None:
        """The transaction's last chunk, or None if it changed nothing we capture."""
        if self._txn is None:
            raise DecodeError("commit outside a transaction")
        out = self._emit(last=True) if self._pending or self._chunk or self._marked else None
        if out is not None:
            self._prev_lsn = self._txn.commit_lsn
            self._resumed = False
        self._txn = None
        return out

    def commit_lsn(self) -> int:
        if self._txn is None:
            raise DecodeError("no transaction in progress")
        return self._txn.commit_lsn

    def _emit(self, *, last: bool) -> Outgoing:
        txn = self._txn
        assert txn is not None
        body = envelope.encode(
            slot=self._slot,
            xid=txn.xid,
            commit_lsn=txn.commit_lsn,
            commit_time=txn.commit_time,
            prev_lsn=self._prev_lsn,
            resumed=self._resumed,
            chunk=self._chunk,
            first=self._first,
            last=last,
            changes=self._pending,
            snapshot=self._snapshot,
        )
        out = Outgoing(
            body=body,
            message_id=envelope.message_id(txn.commit_lsn, self._chunk),
            commit_lsn=txn.commit_lsn,
            commit_time=txn.commit_time,
            chunk=self._chunk,
            first=self._first,
            last=last,
            changes=len(self._pending),
            headers=envelope.headers_for(
                commit_lsn=txn.commit_lsn,
                prev_lsn=self._prev_lsn,
                resumed=self._resumed,
                chunk=self._chunk,
                first=self._first,
                last=last,
                count=len(self._pending),
                snapshot=self._snapshot,
            ),
        )
        self._chunk += 1
        self._first += len(self._pending)
        self._pending = []
        self._pending_bytes = 0
        return out
