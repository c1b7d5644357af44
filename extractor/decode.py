"""The decoder boundary: what every output plugin's decoder yields, and what it must provide.

PostgreSQL decodes the WAL through an output plugin (wal2json or pgoutput: source.decoder); a
decoder turns the plugin's bytes into the records below, and nothing after it (the filter,
partitions, type resolution, assembly, copies) knows which plugin ran. A decoder must give:

- ``Begin``: the transaction's xid, its commit LSN (where the commit record *begins*: every
  position of the transaction is built on it, shared/position.py), the commit time as
  PostgreSQL prints a timestamptz in UTC, and where the commit record ends if the plugin
  says so at the beginning (wal2json does);
- ``RowChange``: one change in envelope form (shared/wire.py): ``op``, ``lsn`` (the text
  LSN of its WAL record), ``schema``, ``table``, and except for a truncate ``columns``,
  ``types`` (format_type's text, typmod included), ``values`` (ints and bools as such, every
  other value as the text PostgreSQL's output function prints, never a binary float),
  ``key`` (the primary key's columns) and, when the old row's key was logged, ``old_key``;
  ``size`` bounds the bytes it took, for chunking. The lists of names, types and key may be
  shared by many changes (pgoutput's are its Relation's): later stages replace them, never
  edit them in place;
- ``Commit``, with where the commit record ends if the plugin says so there (pgoutput does:
  the slot is confirmed up to it), and ``LogicalMessage`` (pg_logical_emit_message:
  heartbeats, backfill requests).

A plugin is chosen once; a decoder is made for each session, once the source database's
encoding is known (some plugins write in it), and may keep state between records (pgoutput's
Relation messages). The plugin also owns its START_REPLICATION options.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from extractor.encoding import SourceCodec
from shared.tables import TableFilter, TableRef


@dataclass(slots=True)
class Begin:
    xid: int
    commit_lsn: int  # where the commit record begins: the transaction's place in the stream
    commit_time: str
    # Where the commit record ends (the slot position once it is confirmed), when the decoder
    # knows it at the beginning (wal2json does); else 0 and the Commit record brings it.
    commit_end: int = 0


@dataclass(slots=True)
class RowChange:
    change: dict[str, Any]  # already in envelope form
    size: int  # bytes of the plugin's output it came from: a cheap bound for chunking


@dataclass(slots=True)
class Commit:
    end: int = 0  # where the commit record ends, if the decoder gives it here


@dataclass(slots=True)
class LogicalMessage:
    transactional: bool
    prefix: str
    content: str
    lsn: str = ""  # where its record ends (wal2json's include-lsn)


Record = Begin | RowChange | Commit | LogicalMessage


class Decoder(Protocol):
    def decode(self, payload: bytes, wal_start: int) -> Record | list[RowChange] | None:
        """One replication message's bytes, and the WAL position the server sent it at
        (``data_start``), as a record; several changes when one message holds several (a
        pgoutput TRUNCATE of many tables), None when it is the decoder's own (pgoutput's
        Relation). Raises DecodeError when it cannot be read."""
        ...


class OutputPlugin(Protocol):
    """The output plugin the slot is created with, and how a session starts it."""

    @property
    def name(self) -> str:
        """As CREATE_REPLICATION_SLOT and pg_replication_slots name it."""
        ...

    def publish(self, conn: Any, tables: list[TableRef], at_start: bool) -> list[TableRef]:
        """What the plugin needs in the database for ``tables`` to be streamed (pgoutput: its
        publication), made on ``conn`` at each start before the slot is made, and by every
        catalog check; returns the tables that were not streamed until now (to be copied).
        At start, raises SetupError when it cannot be done."""
        ...

    def start_options(self, capture: TableFilter, partitioned: bool) -> dict[str, str]:
        """The options of START_REPLICATION. ``partitioned``: a captured table is partitioned
        (its changes may be reported under its partitions' names)."""
        ...

    def fallback_options(self, options: Mapping[str, str], refusal: str) -> dict[str, str] | None:
        """Options to start with instead, after the plugin refused ``options`` with the
        error ``refusal`` (an older version lacking one); None: the refusal stands."""
        ...

    def started(self, options: Mapping[str, str]) -> str:
        """START_REPLICATION took ``options``: what the start line says of them."""
        ...

    def decoder(self, codec: SourceCodec | None) -> Decoder:
        """A decoder for one session; ``codec``: the database's encoding, if not UTF8."""
        ...
