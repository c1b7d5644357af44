"""A place in the stream of changes: which transaction, and how far into it.

Every change the pipeline carries has a position: its transaction's commit LSN (where the
commit record begins: both decoders know it when the transaction begins), then the change's
own identity inside it, ``(lsn, n)``: the LSN of its WAL record and its ordinal among the
captured changes of that record (a multi-row insert of COPY writes one record for many rows).
The identity does not depend on how the transaction was cut into messages, on the table
filter or on excluded columns, so a transaction sent again after a restart with other settings
is trimmed to exactly what is new.

A copy of tables (initial snapshot, catch-up, backfill) is one more transaction, placed at the
stream point P its snapshot shows the data as of: after every transaction whose commit record
begins before P, before every other; so at one LSN a copy sorts before a transaction. Its rows
are numbered ``(0, n)``.

The slot's confirmed position is the END of a commit record; everything a session resumed at
R vouches for is "every transaction committed before R": ``Position.before(R)``.

Text form (logs, AMQP headers, the envelope): ``0/196D868`` (all of that transaction),
``0/196D868c`` (all of that copy), ``0/196D868:0/196D980.3`` (that transaction up to and
including the change 0/196D980, ordinal 3).
"""

from __future__ import annotations

from shared.errors import DecodeError
from shared.lsn import format_lsn, parse_lsn

# Past every change of a transaction: the transaction is complete.
END = (2**64, 0)
START = (0, 0)

Ident = tuple[int, int]


class Position(tuple[int, bool, Ident]):
    """Held as the tuple ``(commit_lsn, not copy, change)``: positions are compared many
    times per change on the applier's path, and tuples compare in C. At one LSN a copy comes
    first (False before True): it holds what committed before that point."""

    __slots__ = ()

    def __new__(cls, commit_lsn: int, copy: bool, change: Ident = END) -> Position:
        return tuple.__new__(cls, (commit_lsn, not copy, change))

    @property
    def commit_lsn(self) -> int:
        return self[0]

    @property
    def copy(self) -> bool:
        return not self[1]

    @property
    def change(self) -> Ident:
        return self[2]

    def __repr__(self) -> str:
        return f"Position(commit_lsn={self[0]}, copy={not self[1]}, change={self[2]})"

    def __getnewargs__(self) -> tuple[int, bool, Ident]:  # copy and pickle: the arguments
        return (self[0], not self[1], self[2])

    @property
    def complete(self) -> bool:
        return self.change == END

    @classmethod
    def end_of(cls, commit_lsn: int, copy: bool = False) -> Position:
        return cls(commit_lsn, copy, END)

    @classmethod
    def before(cls, lsn: int) -> Position:
        """Every transaction whose commit record begins before ``lsn`` (a slot position: the
        end of a commit record), and nothing at or after it."""
        return cls(lsn - 1, False, END)

    def same_transaction(self, commit_lsn: int, copy: bool) -> bool:
        return self.commit_lsn == commit_lsn and self.copy == copy

    def __str__(self) -> str:
        text = format_lsn(self.commit_lsn) + ("c" if self.copy else "")
        if self.complete:
            return text
        lsn, n = self.change
        return f"{text}:{format_lsn(lsn)}.{n}"

    @classmethod
    def parse(cls, text: str) -> Position:
        """The text form back; DecodeError if it is not one."""
        head, sep, tail = text.partition(":")
        copy = head.endswith("c")
        commit = parse_lsn(head[:-1] if copy else head)
        if not sep:
            return cls(commit, copy, END)
        lsn, dot, n = tail.partition(".")
        if not dot or not n.isdigit():
            raise DecodeError(f"not a position: {text!r}")
        return cls(commit, copy, (parse_lsn(lsn), int(n)))


def optional(text: str | None) -> Position | None:
    """``None`` stays None (nothing comes before a new slot's first message)."""
    return None if text is None else Position.parse(text)
