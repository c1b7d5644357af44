"""The records a decoder yields: begin / change / commit / message."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Begin:
    xid: int
    commit_lsn: int  # end of the commit record, known because decoding happens after commit
    commit_time: str
    commit_start: int = 0  # where the commit record begins


@dataclass(slots=True)
class RowChange:
    change: dict[str, Any]  # already in envelope form
    size: int  # bytes of wal2json text it came from: a cheap bound for chunking


@dataclass(slots=True)
class Commit:
    pass


@dataclass(slots=True)
class LogicalMessage:
    transactional: bool
    prefix: str
    content: str


Record = Begin | RowChange | Commit | LogicalMessage
