"""What travels between extractor and applier, as objects: a chunk of a transaction
(``Envelope``) and its changes (``Change``), with their positions (shared/position.py).

Their JSON form on the wire, and its version, are shared/wire.py's; the message's place in
the stream is repeated in its AMQP headers (``headers_for``), so that a message whose body
cannot be read still has a place in the order (``stub``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shared.errors import DecodeError
from shared.lsn import format_lsn, parse_lsn
from shared.position import Ident, Position, optional

CONTENT_TYPE = "application/json"
MESSAGE_TYPE = "cdc.transaction"

INSERT, UPDATE, DELETE, TRUNCATE, DDL = "insert", "update", "delete", "truncate", "ddl"
OPERATIONS = frozenset({INSERT, UPDATE, DELETE, TRUNCATE, DDL})


def message_id(commit_lsn: int, chunk: int, copy: bool = False) -> str:
    """Stable across resends: the same chunk of the same transaction has the same id."""
    return f"{format_lsn(commit_lsn)}{'c' if copy else ''}.{chunk}"


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

    @property
    def ident(self) -> Ident:
        """The change's identity within its transaction (see shared/position.py)."""
        return (parse_lsn(self.lsn), self.n)


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
    stub_end: Position | None = None

    @property
    def end(self) -> Position:
        """The position of the last change this message carries (its transaction's end if
        it is the last chunk)."""
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
        if self.changes:
            return Position(self.commit_lsn, self.copy, self.changes[0].ident)
        return self.end

    @property
    def message_id(self) -> str:
        return message_id(self.commit_lsn, self.chunk, self.copy)

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
) -> dict[str, Any]:
    """The message's place in the stream, repeated in AMQP headers: if the body is ever
    unreadable, the applier can still put the message in order and step over it."""
    return {
        "commit_lsn": format_lsn(commit_lsn),
        "copy": copy,
        "chunk": chunk,
        "last": last,
        "after": None if after is None else str(after),
        "end": str(end),
        "resumed": resumed,
        "changes": count,
    }


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
        )
    except (KeyError, TypeError, ValueError, DecodeError):
        return None
