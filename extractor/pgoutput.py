"""pgoutput as the output plugin: its start options, and its messages -> the records of decode.py.

pgoutput is built into PostgreSQL (no ``output_plugin_libraries`` change on 15.19+) and sends
its logical replication protocol (PostgreSQL docs, "Logical Replication Message Formats"),
version 1: Begin, Commit, Relation, Type, Insert, Update, Delete, Truncate, Message (and Origin,
ignored). The publication (publication.py) says which tables it sends.

Its changes become exactly the change objects wal2json's decoder makes (wal2json.py), so that
nothing after the decoder knows which plugin ran:

- a Relation message describes a table once per session (and again after it changed): its
  columns' names, type OIDs and typmods, and which are its replica identity. Type names are
  format_type's text, as wal2json prints them, looked up in the catalog once per (type,
  typmod) and session; the key is the replica identity's columns when that is the primary key
  (REPLICA IDENTITY DEFAULT: historic, exact), else the primary key from the catalog, as
  wal2json's ``pk`` (a DEFERRABLE primary key is none).
- values are PostgreSQL's text output, so NaN and +-Infinity arrive as themselves; the ints and
  bools of the built-in integer and boolean types become Python ints and bools (what wal2json's
  JSON gives), bytea loses its ``\\x`` (wal2json prints the bare hex).
- an unchanged TOASTed value ('u') is left out of the change's columns, as wal2json leaves it
  out: the applier then keeps the target's value.
- an UPDATE's old key: the old key ('K', the identity's columns) or old row ('O') PostgreSQL
  logged, else (the key did not change) the key columns of the new row, as wal2json's
  ``identity``.
- a TRUNCATE of several tables is one change per table, in the message's order.

Names and values arrive in the connection's client encoding (UTF8: the walsender converts
them); only a logical message's content is the bytes it was written as, in the database's
encoding, converted here (encoding.py).

Each message's WAL position (``data_start``) is the LSN of the record it came from, the change
``lsn`` wal2json prints. Protocol version 2 (streaming of in-progress transactions) is not used:
see docs/performance.md ("pgoutput and protocol version 2").
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Mapping
from contextlib import closing
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2

from extractor.decode import Begin, Commit, LogicalMessage, Record, RowChange
from extractor.encoding import SourceCodec
from extractor.pgoutput_wire import U32, UNCHANGED, Reader, Relation, columns_into, read_tuple
from extractor.publication import Publication
from shared.envelope import DELETE, INSERT, TRUNCATE, UPDATE
from shared.errors import DecodeError, SourceUnavailable
from shared.lsn import format_lsn
from shared.postgres import first_line
from shared.tables import TableFilter, TableRef

log = logging.getLogger(__name__)

PLUGIN = "pgoutput"
PROTO_VERSION = "1"

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)

_BEGIN = struct.Struct("!QqI")  # final LSN, commit time, xid
_COMMIT = struct.Struct("!BQQq")  # flags, commit LSN, end LSN, commit time
_MESSAGE = struct.Struct("!BQ")  # flags, LSN

# (type OIDs, typmods) -> their format_type text; (relation OID) -> its primary key's columns.
TypeLookup = Callable[[list[tuple[int, int]]], list[str]]
KeyLookup = Callable[[int], list[str]]


class PgOutput:
    """pgoutput, protocol version 1, streaming one publication (an OutputPlugin, decode.py)."""

    name = PLUGIN

    def __init__(self, publication: str, connect: Callable[[], Any]) -> None:
        self.publication = publication
        self._connect = connect
        self._publication = Publication(publication)

    def publish(self, conn: Any, tables: list[TableRef], at_start: bool) -> list[TableRef]:
        return self._publication.ensure(conn, tables, at_start)

    def start_options(self, capture: TableFilter, partitioned: bool) -> dict[str, str]:
        # The publication filters; the extractor filters exactly anyway (filtering.py).
        return {
            "proto_version": PROTO_VERSION,
            "publication_names": self.publication,
            "messages": "true",
        }

    def fallback_options(self, options: Mapping[str, str], refusal: str) -> dict[str, str] | None:
        return None

    def started(self, options: Mapping[str, str]) -> str:
        return f"publication={self.publication}"

    def decoder(self, codec: SourceCodec | None) -> PgOutputDecoder:
        types, keys = catalog_lookups(self._connect)
        return PgOutputDecoder(types, keys, codec)


def catalog_lookups(connect: Callable[[], Any]) -> tuple[TypeLookup, KeyLookup]:
    """The two catalog reads a Relation message may need, each over a connection of its own
    (they come once per table and session)."""

    def query(sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        try:
            with closing(connect()) as conn, conn.cursor() as cur:
                cur.execute(sql, args)
                rows: list[tuple[Any, ...]] = cur.fetchall()
                return rows
        except psycopg2.Error as e:
            raise SourceUnavailable(f"cannot read the catalog: {first_line(e)}") from e

    def types(pairs: list[tuple[int, int]]) -> list[str]:
        rows = query(
            "SELECT format_type(t.o, t.m) FROM unnest(%s::oid[], %s::int[])"
            " WITH ORDINALITY AS t(o, m, n) ORDER BY t.n",
            ([p[0] for p in pairs], [p[1] for p in pairs]),
        )
        return [r[0] for r in rows]

    def key(relid: int) -> list[str]:
        # As wal2json's pk: the primary key PostgreSQL can use (not DEFERRABLE), its columns
        # in the table's order (wal2json reads them from a bitmap of attribute numbers).
        rows = query(
            "SELECT a.attname FROM pg_index i"
            " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
            " WHERE i.indrelid = %s AND i.indisprimary AND i.indimmediate ORDER BY a.attnum",
            (relid,),
        )
        return [r[0] for r in rows]

    return types, key


class PgOutputDecoder:
    """Reads pgoutput's messages; keeps the session's Relation messages."""

    def __init__(
        self, types: TypeLookup, keys: KeyLookup, codec: SourceCodec | None = None
    ) -> None:
        self._lookup_types = types
        self._lookup_key = keys
        self._codec = codec
        self._relations: dict[int, Relation] = {}
        self._type_names: dict[tuple[int, int], str] = {}

    def decode(self, payload: bytes, wal_start: int) -> Record | list[RowChange] | None:
        """One message; None for those that are the decoder's own (Relation, Type, Origin);
        a list for a TRUNCATE (one change per table)."""
        try:
            kind = payload[:1]
            if kind and kind in b"IUD":
                return self._row(kind, payload, wal_start)
            if kind == b"B":
                final_lsn, at, xid = _BEGIN.unpack_from(payload, 1)
                return Begin(xid=xid, commit_lsn=final_lsn, commit_time=_timestamp(at))
            if kind == b"C":
                _flags, _lsn, end, _at = _COMMIT.unpack_from(payload, 1)
                return Commit(end)
            if kind == b"R":
                self._relation(payload)
                return None
            if kind == b"T":
                return self._truncate(payload, wal_start)
            if kind == b"M":
                return self._message(payload)
            if kind in (b"Y", b"O"):
                return None  # types are named by the catalog; origins mean nothing here
        except (struct.error, ValueError, IndexError, UnicodeDecodeError) as e:
            raise DecodeError(f"unreadable pgoutput message ({e}): {payload[:200]!r}") from e
        raise DecodeError(f"unknown pgoutput message {payload[:1]!r}")

    # ------------------------------------------------------------------ relations

    def _relation(self, payload: bytes) -> None:
        r = Reader(payload)
        relid = r.u32()
        schema = r.string().decode() or "pg_catalog"
        table = r.string().decode()
        replident = chr(r.u8())
        names, oids, typmods, identity = [], [], [], []
        for _ in range(r.i16()):
            identity.append(bool(r.u8() & 1))
            names.append(r.string().decode())
            oids.append(r.u32())
            typmods.append(r.i32())
        pairs = list(zip(oids, typmods, strict=True))
        unknown = [p for p in dict.fromkeys(pairs) if p not in self._type_names]
        if unknown:
            self._type_names.update(zip(unknown, self._lookup_types(unknown), strict=True))
        if replident == "d":
            # The identity is the primary key, as of this change (or none).
            key = [n for n, k in zip(names, identity, strict=True) if k]
        else:
            key = self._lookup_key(relid)
        self._relations[relid] = Relation(
            schema,
            table,
            names,
            [self._type_names[p] for p in pairs],
            oids,
            identity,
            replident == "f",
            key,
        )
        log.debug("relation relid=%d table=%s.%s key=%s", relid, schema, table, key)

    def _rel(self, relid: int) -> Relation:
        rel = self._relations.get(relid)
        if rel is None:
            raise DecodeError(f"pgoutput sent a change of relation {relid} before describing it")
        return rel

    # ------------------------------------------------------------------ changes

    def _row(self, kind: bytes, payload: bytes, wal_start: int) -> RowChange:
        (relid,) = U32.unpack_from(payload, 1)
        rel = self._relations.get(relid)
        if rel is None:
            raise DecodeError(f"pgoutput sent a change of relation {relid} before describing it")
        # Once per message, one character per byte: then a text value that is ASCII (most
        # are) is one slice of it, with no bytes object and no decoding of its own.
        text = payload.decode("latin-1")
        tag = payload[5:6]
        pos = 6
        old: list[Any] | None = None
        old_full = tag == b"O"
        if tag in (b"K", b"O"):
            old, pos = read_tuple(payload, text, pos, rel.kinds)
            if kind == b"U":
                tag = payload[pos : pos + 1]
                pos += 1
        new: list[Any] | None = None
        if kind != b"D":
            if tag != b"N":
                raise DecodeError(f"pgoutput change without its new row: {payload[:200]!r}")
            new, pos = read_tuple(payload, text, pos, rel.kinds)
        if pos > len(payload):
            raise DecodeError("pgoutput message ends early")
        lsn = format_lsn(wal_start)
        if new is None:
            change: dict[str, Any] = {
                "op": DELETE,
                "lsn": lsn,
                "schema": rel.schema,
                "table": rel.table,
                "columns": [],
                "types": [],
                "values": [],
                "key": rel.key,
            }
        elif UNCHANGED not in new:
            # The relation's own lists, shared by its changes (decode.py: never edited in place).
            change = {
                "op": INSERT if kind == b"I" else UPDATE,
                "lsn": lsn,
                "schema": rel.schema,
                "table": rel.table,
                "columns": rel.columns,
                "types": rel.types,
                "values": new,
                "key": rel.key,
            }
        else:
            change = {"op": UPDATE, "lsn": lsn, "schema": rel.schema, "table": rel.table}
            columns_into(change, rel, new, None)
            change["key"] = rel.key
        if old is not None:
            change["old_key"] = columns_into({}, rel, old, None if old_full else rel.identity)
        elif kind == b"U" and rel.has_identity:
            # The key did not change: wal2json gives the new row's identity columns.
            assert new is not None
            change["old_key"] = columns_into({}, rel, new, rel.identity)
        return RowChange(change, len(payload))

    def _truncate(self, payload: bytes, wal_start: int) -> list[RowChange]:
        r = Reader(payload)
        count = r.i32()
        r.u8()  # CASCADE / RESTART IDENTITY: the tables are listed anyway
        lsn = format_lsn(wal_start)
        out = []
        for _ in range(count):
            rel = self._rel(r.u32())
            change = {"op": TRUNCATE, "lsn": lsn, "schema": rel.schema, "table": rel.table}
            out.append(RowChange(change, len(payload) // max(count, 1)))
        return out

    def _message(self, payload: bytes) -> LogicalMessage:
        flags, lsn = _MESSAGE.unpack_from(payload, 1)
        r = Reader(payload, 1 + _MESSAGE.size)
        prefix = r.string().decode()
        content = r.take(r.i32())
        if self._codec is not None:
            content = self._codec.to_utf8(content)  # its bytes as written, in the database's
        return LogicalMessage(bool(flags & 1), prefix, content.decode(), format_lsn(lsn))


# What a column's text value becomes (Relation.kinds): as wal2json's JSON gives it.
def _timestamp(micros: int) -> str:
    """A commit time as PostgreSQL prints a timestamptz in UTC (wal2json's ``timestamp``)."""
    t = _EPOCH + timedelta(microseconds=micros)
    text = t.strftime("%Y-%m-%d %H:%M:%S")
    if t.microsecond:
        text += f".{t.microsecond:06d}".rstrip("0")
    return text + "+00"
