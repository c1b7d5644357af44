"""Which slot position is safe to confirm to PostgreSQL, given RabbitMQ's publisher confirms.

The rule of the whole pipeline, on this side: the flush LSN sent to PostgreSQL only ever covers
transactions whose every message RabbitMQ has confirmed. Entries are kept in the order the
transactions were decoded (commit order); the flush LSN moves to the commit LSN of the newest
transaction such that it and everything before it is confirmed. Transactions that produced no
message (nothing captured in them) move it too, but only once everything before is confirmed.

A hold keeps the flush LSN behind a point until it is released: a request to copy tables
(a backfill, a schema change that needs a re-copy) holds the slot behind the transaction that
asked for it until RabbitMQ confirmed the whole copy. A crash before that makes PostgreSQL
resend the request, and the copy is made again: a request is never lost with the process.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from shared.errors import BrokerUnavailable


@dataclass(slots=True)
class _Entry:
    seq: int  # publisher delivery tag; 0 for a transaction with nothing to publish
    lsn: int  # where the commit record of the transaction the message ends ends
    ends_txn: bool
    confirmed: bool
    at: float = 0.0  # when it was published (monotonic)


class ConfirmTracker:
    def __init__(self, start_lsn: int, observe: Callable[[float], None] | None = None) -> None:
        self._observe = observe
        self._entries: deque[_Entry] = deque()
        self._by_seq: dict[int, _Entry] = {}
        self._flush_lsn = start_lsn
        self._last_seq = 0
        self._failed = False

    @property
    def flush_lsn(self) -> int:
        """Everything up to here is in RabbitMQ (or was never to be published)."""
        return self._flush_lsn

    def confirmed(self, seq: int) -> bool:
        """True once this message and every one published before it is confirmed, holds or
        not (a hold is released when the copy published after it is confirmed)."""
        # Unconfirmed messages, in the order they were published.
        oldest = next(iter(self._by_seq), None)
        return oldest is None or oldest > seq

    @property
    def inflight(self) -> int:
        """Published messages RabbitMQ has not confirmed yet."""
        return len(self._by_seq)

    def published(self, seq: int, end: int, ends_txn: bool) -> None:
        """``end``: where the transaction's commit record ends (for its last message)."""
        if seq <= self._last_seq:
            raise ValueError(f"delivery tag {seq} after {self._last_seq}")
        self._last_seq = seq
        entry = _Entry(seq, end, ends_txn, confirmed=False, at=time.monotonic())
        self._entries.append(entry)
        self._by_seq[seq] = entry

    def nothing_to_publish(self, lsn: int) -> None:
        """A transaction (or position) with no message: passable once all before it is."""
        self._entries.append(_Entry(0, lsn, ends_txn=True, confirmed=True))
        self._advance()

    def hold(self) -> object:
        """Keep the flush LSN behind everything published from now on, until ``release``."""
        entry = _Entry(0, 0, ends_txn=False, confirmed=False)
        self._entries.append(entry)
        return entry

    def release(self, token: object) -> None:
        assert isinstance(token, _Entry)
        token.confirmed = True
        self._advance()

    def fail(self) -> None:
        """The session failed: from now on nothing moves the flush LSN."""
        self._failed = True

    def acked(self, delivery_tag: int, multiple: bool) -> None:
        if self._failed:
            return
        now = time.monotonic()
        if multiple:
            for entry in self._entries:
                if entry.seq > delivery_tag:
                    break
                if entry.seq and not entry.confirmed:
                    self._confirm(entry, now)
                    self._by_seq.pop(entry.seq, None)
        else:
            entry_or_none = self._by_seq.pop(delivery_tag, None)
            if entry_or_none is not None:
                self._confirm(entry_or_none, now)
        self._advance()

    def _confirm(self, entry: _Entry, now: float) -> None:
        entry.confirmed = True
        if self._observe is not None:
            self._observe(now - entry.at)

    def nacked(self, delivery_tag: int) -> None:
        # RabbitMQ could not take the message (an internal error on its side). Nothing past it
        # may be confirmed to PostgreSQL, even if a later multiple ack covers it; the session
        # restarts and the slot resends it.
        self._failed = True
        raise BrokerUnavailable(f"RabbitMQ refused (nack) delivery tag {delivery_tag}")

    def _advance(self) -> None:
        if self._failed:
            return
        entries = self._entries
        while entries and entries[0].confirmed:
            entry = entries.popleft()
            if entry.ends_txn and entry.lsn > self._flush_lsn:
                self._flush_lsn = entry.lsn
