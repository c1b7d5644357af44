"""What travels between extractor and applier, as objects: a chunk of a transaction
(``Envelope``) and its changes (``Change``), with their positions (shared/position.py).

Their JSON form on the wire, and its version, are shared/wire.py's; the message's place in
the stream is repeated in its AMQP headers (``headers_for``), so that a message whose body
cannot be read still has a place in the order (``stub``).

**Partitions** (``target.partitions`` N, ARCHITECTURE.md "Parallel apply"). Every envelope says
which partition's queue it is on (``partition``, 0 .. N-1) and into how many the stream is split
(``partitions``); with N = 1 both keep their defaults (0 and 1) and nothing else differs. The
contract for N > 1:

- each partition is a chain of its own: ``after`` is the end of the message published before
  this one *on the same partition* (or the session's resumed claim, or None for a new slot's
  first message). Positions are the source's and do not depend on the split.
- a *barrier* (a change that spans partitions: a truncate, a schema change, a key moved into
  another partition, a change whose key is unknown; and a copy as a whole) goes to every
  partition. Each copy of it has ``afters``, one position per partition: where that
  partition's chain stood just before the barrier (each copy's ``after`` is its own partition's
  entry). Partition 0 (``DESIGNATED``) gets the barrier's changes in full; every other
  partition a *marker*: no changes, ending exactly where the barrier ends (``end``).
- a barrier in the middle of a transaction (a truncate after 300,000 rows already published
  in chunks) ends at its last change: ``Position(commit, copy, ident)``, not the transaction's
  end. A marker cannot name that end by its changes (it has none), so it carries it
  (``stub_end``, as a stand-in for an unreadable message does). After a barrier every
  partition's chain continues from the barrier's end.
- a copy is one barrier: all its chunks go to partition 0, the first of them carrying
  ``afters``; every other partition gets one marker ending at the copy's end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.errors import DecodeError
from shared.lsn import format_lsn, parse_lsn
from shared.position import Ident, Position, optional

CONTENT_TYPE = "application/json"
MESSAGE_TYPE = "cdc.transaction"

INSERT, UPDATE, DELETE, TRUNCATE, DDL = "insert", "update", "delete", "truncate", "ddl"
OPERATIONS = frozenset({INSERT, UPDATE, DELETE, TRUNCATE, DDL})

# The partition that applies a barrier's changes; the others step past it (applier/barrier.py).
DESIGNATED = 0

Afters = tuple[Position | None, ...]


def message_id(
    commit_lsn: int, chunk: int, copy: bool = False, partition: int | None = None
) -> str:
    """Stable across resends: the same chunk of the same transaction has the same id. With
    partitions (``partition`` given), each partition numbers its own chunks: ``@p<i>`` keeps
    the ids apart where the partitions' messages meet (the dead-letter queue)."""
    text = f"{format_lsn(commit_lsn)}{'c' if copy else ''}.{chunk}"
    return text if partition is None else f"{text}@p{partition}"


@dataclass(slots=True)
class OldKey:
    columns: list[str]
    types: list[str]
    values: list[Any]


@dataclass(slots=True)
class Change:
    op: str
    lsn: str
    schema: str
    table: str
    columns: list[str]
    types: list[str]
    values: list[Any]
    key: list[str]
    old_key: OldKey | None
    n: int = 0  # ordinal among the captured changes of one WAL record
    ddl: dict[str, Any] | None = None  # a schema change's, or a copy's truncate's (above)
    # The identity, parsed once: the applier orders by it several times per change. A change
    # is never altered once made (a trimmed envelope is a new one).
    _ident: Ident | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def ident(self) -> Ident:
        """The change's identity within its transaction (see shared/position.py)."""
        ident = self._ident
        if ident is None:
            ident = self._ident = (parse_lsn(self.lsn), self.n)
        return ident


@dataclass(slots=True)
class Envelope:
    slot: str
    xid: int
    commit_lsn: int
    commit_time: str
    copy: bool
    chunk: int
    last: bool
    after: Position | None
    resumed: bool
    changes: list[Change]
    # Set on a stand-in for a message whose body cannot be decoded (see ``stub``): why, and
    # where it ends, from its headers.
    undecodable: str | None = None
    # Where the message ends when its changes cannot say: a stub's (from its headers), a
    # barrier's marker's (from the wire: it has no changes, and may end mid-transaction).
    stub_end: Position | None = None
    partition: int = 0
    partitions: int = 1
    # A barrier's copy: every partition's ``after`` of the barrier (None: not a barrier).
    afters: Afters | None = None
    # Where it starts and ends, made once (the applier orders by them several times per
    # message). Only a stand-in's or a marker's stub_end is set after the envelope is made,
    # before either is asked for; anything else that differs is a new envelope.
    _start: Position | None = field(default=None, init=False, repr=False, compare=False)
    _end: Position | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def barrier(self) -> bool:
        return self.afters is not None

    @property
    def marker(self) -> bool:
        """A barrier's copy on a partition that does not apply it: no changes, just its end."""
        return self.afters is not None and not self.changes

    @property
    def end(self) -> Position:
        """The position of the last change this message carries (its transaction's end if
        it is the last chunk)."""
        end = self._end
        if end is None:
            end = self._end = self._find_end()
        return end

    def _find_end(self) -> Position:
        if self.last:
            return Position.end_of(self.commit_lsn, self.copy)
        if self.stub_end is not None:
            return self.stub_end
        if not self.changes:
            raise DecodeError("a chunk that is not the last holds no change")
        return Position(self.commit_lsn, self.copy, self.changes[-1].ident)

    @property
    def sort_key(self) -> Position:
        """Where the message's first change stands: messages sort by it."""
        start = self._start
        if start is None:
            if self.changes:
                start = Position(self.commit_lsn, self.copy, self.changes[0].ident)
            else:
                start = self.end
            self._start = start
        return start

    @property
    def message_id(self) -> str:
        partition = self.partition if self.partitions > 1 else None
        return message_id(self.commit_lsn, self.chunk, self.copy, partition)

    @property
    def schema_change(self) -> Change | None:
        """The ddl change this message carries (alone), if it is one."""
        changes = self.changes
        return changes[0] if len(changes) == 1 and changes[0].op == DDL else None

    def trimmed(self, applied: Position) -> Envelope | None:
        """This message without the changes ``applied`` already covers (None: all of them)."""
        if self.end <= applied:
            return None
        if not applied.same_transaction(self.commit_lsn, self.copy):
            return self
        done = applied.change
        keep = [c for c in self.changes if c.ident > done]
        if len(keep) == len(self.changes):
            return self
        return Envelope(
            self.slot,
            self.xid,
            self.commit_lsn,
            self.commit_time,
            self.copy,
            self.chunk,
            self.last,
            applied,
            self.resumed,
            keep,
            partition=self.partition,
            partitions=self.partitions,
            afters=self.afters,
        )


def headers_for(
    *,
    commit_lsn: int,
    copy: bool,
    chunk: int,
    last: bool,
    after: Position | None,
    end: Position,
    resumed: bool,
    count: int,
    partition: int = 0,
    partitions: int = 1,
    afters: Afters | None = None,
) -> dict[str, Any]:
    """The message's place in the stream, repeated in AMQP headers: if the body is ever
    unreadable, the applier can still put the message in order and step over it (and, with
    partitions, still knows its partition and whether it is a barrier). With one partition
    the headers are exactly what they were before partitions existed."""
    headers: dict[str, Any] = {
        "commit_lsn": format_lsn(commit_lsn),
        "copy": copy,
        "chunk": chunk,
        "last": last,
        "after": None if after is None else str(after),
        "end": str(end),
        "resumed": resumed,
        "changes": count,
    }
    if partitions != 1:
        headers["partition"] = partition
        headers["partitions"] = partitions
        headers["barrier"] = afters is not None
        if afters is not None:
            headers["afters"] = [None if a is None else str(a) for a in afters]
    return headers


def batch_headers(first: dict[str, Any], last: dict[str, Any], changes: int) -> dict[str, Any]:
    """The headers of a message of several envelopes: where the first continues from, where
    the last ends (a stand-in for it, if unreadable, covers them all)."""
    return {**last, "after": first["after"], "resumed": first["resumed"], "changes": changes}


def stub(headers: dict[str, Any] | None, reason: str) -> Envelope | None:
    """A stand-in without changes for an undecodable message, from its headers (None if they
    do not say where it stands)."""
    h = headers or {}
    try:
        after = h["after"]
        partitions = int(h.get("partitions", 1))
        partition = int(h.get("partition", 0))
        afters = None
        if h.get("barrier"):
            afters = tuple(optional(None if a is None else str(a)) for a in h["afters"])
            if len(afters) != partitions:
                return None
        if not 0 <= partition < partitions:
            return None
        return Envelope(
            slot="",
            xid=0,
            commit_lsn=parse_lsn(str(h["commit_lsn"])),
            commit_time="",
            copy=bool(h["copy"]),
            chunk=int(h["chunk"]),
            last=bool(h["last"]),
            after=optional(None if after is None else str(after)),
            resumed=bool(h["resumed"]),
            changes=[],
            undecodable=reason,
            stub_end=Position.parse(str(h["end"])),
            partition=partition,
            partitions=partitions,
            afters=afters,
        )
    except (KeyError, TypeError, ValueError, DecodeError):
        return None
