"""Copying tables as they are at one exact point of the stream (initial snapshot, backfill).

A copy reads the tables inside a snapshot that PostgreSQL exported together with a replication
slot: the rows are exactly the state at that slot's consistent point. The stream session
(stream.py) places the copied rows in the stream at that very point, as one more transaction:
after every transaction committed before it, before every one committed after. Each copied
table starts with a truncate, so the target table equals the source table at that point, and
everything after it is applied on top, in order.

The reading is blocking work, so it runs in a worker thread and hands batches to the
extractor's I/O loop through a bounded queue (which bounds its memory).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras
from psycopg2 import sql

from extractor.basetypes import base_type_text
from extractor.ddl import relation_of
from extractor.heartbeat import HEARTBEAT_PREFIX
from shared.config import SourceConfig
from shared.envelope import INSERT, TRUNCATE
from shared.errors import CdcError, SetupError, SourceUnavailable
from shared.lsn import format_lsn, parse_lsn
from shared.postgres import connect, connect_kwargs, rows_of
from shared.tables import TableFilter, TableRef
from shared.types import copied_as_values

log = logging.getLogger(__name__)

BACKFILL_PREFIX = "pg2maria.backfill"
BATCH_ROWS = 1000
_PROGRESS_SECONDS = 5.0


@dataclass(frozen=True)
class Ready:
    position: int  # the snapshot's place in the stream (a consistent point)


@dataclass(frozen=True)
class Rows:
    table: TableRef
    changes: list[dict[str, Any]]
    size: int


@dataclass(frozen=True)
class Done:
    tables: tuple[TableRef, ...]
    rows: int


@dataclass(frozen=True)
class Failed:
    error: CdcError


Event = Ready | Rows | Done | Failed


class Copier(threading.Thread):
    """Reads ``tables`` in a snapshot and puts Ready / Rows / Done (or Failed) on ``events``.

    ``snapshot`` given: import that exported snapshot, whose place in the stream is
    ``position``. Not given: create a temporary slot with an exported snapshot, which gives
    both (a backfill while the stream runs).
    """

    def __init__(
        self,
        cfg: SourceConfig,
        tables: list[TableRef],
        flt: TableFilter,
        *,
        plugin: str,
        wake: Callable[[], None],
        snapshot: str | None = None,
        position: int = 0,
    ) -> None:
        super().__init__(daemon=True, name="copier")
        self._cfg = cfg
        self._plugin = plugin
        self._tables = tables
        self._filter = flt
        self._wake = wake
        self._snapshot = snapshot
        self._position = position
        self._stop = threading.Event()
        self.events: queue.Queue[Event] = queue.Queue(maxsize=16)

    def stop(self) -> None:
        self._stop.set()

    def _put(self, event: Event) -> None:
        while not self._stop.is_set():
            try:
                self.events.put(event, timeout=0.5)
            except queue.Full:
                continue
            self._wake()
            return

    def run(self) -> None:
        repl = conn = None
        try:
            snapshot, position = self._snapshot, self._position
            if snapshot is None:
                repl = psycopg2.connect(
                    connection_factory=psycopg2.extras.LogicalReplicationConnection,
                    **connect_kwargs(self._cfg),
                )
                snapshot, position = self._temporary_slot(repl)
            conn = psycopg2.connect(**connect_kwargs(self._cfg))
            # Text as PostgreSQL converts it to Unicode, whatever the database's encoding:
            # the stream reads wal2json's output the same way (encoding.py).
            conn.set_client_encoding("UTF8")
            _read_as_text(conn)
            conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
            with conn.cursor() as cur:
                cur.execute("SET TRANSACTION SNAPSHOT %s", (snapshot,))
            if repl is not None:
                # A transaction committed after the snapshot, so the stream soon passes the
                # snapshot's place even on a quiet database.
                self._nudge()
            self._put(Ready(position))
            total = 0
            for table in self._tables:
                total += self._copy(conn, table, position)
                if self._stop.is_set():
                    return
            self._put(Done(tuple(self._tables), total))
        except psycopg2.errors.InsufficientPrivilege as e:
            text = str(e).strip().splitlines()[0]
            self._put(
                Failed(
                    SetupError(
                        f"cannot copy ({text}): the role needs USAGE on each captured schema and "
                        "SELECT on every captured table, e.g. GRANT USAGE ON SCHEMA s TO <role>; "
                        "GRANT SELECT ON ALL TABLES IN SCHEMA s TO <role>"
                    )
                )
            )
        except psycopg2.Error as e:
            self._put(Failed(SourceUnavailable(f"copy failed: {str(e).strip().splitlines()[0]}")))
        except CdcError as e:
            self._put(Failed(e))
        finally:
            for c in (conn, repl):
                if c is not None:
                    try:
                        c.close()  # closing the replication connection drops the temporary slot
                    except psycopg2.Error:
                        log.debug("close after the copy failed", exc_info=True)

    def _temporary_slot(self, repl: Any) -> tuple[str, int]:
        name = f"{self._cfg.slot[:40]}_copy_{uuid.uuid4().hex[:8]}"
        with repl.cursor() as cur:
            # The name is ours: [a-z0-9_] only (checked in settings), so quoting it is enough.
            cur.execute(
                f'CREATE_REPLICATION_SLOT "{name}" TEMPORARY LOGICAL {self._plugin} EXPORT_SNAPSHOT'
            )
            row = cur.fetchone()
        position = parse_lsn(row[1])
        log.info("copy_snapshot slot=%s position=%s", name, format_lsn(position))
        return str(row[2]), position

    def _nudge(self) -> None:
        with psycopg2.connect(**connect_kwargs(self._cfg)) as c, c.cursor() as cur:
            cur.execute(
                "SELECT pg_logical_emit_message(true, %s, %s)", (HEARTBEAT_PREFIX, self._cfg.slot)
            )
        c.close()

    def _copy(self, conn: Any, table: TableRef, position: int) -> int:
        names, types, key, estimate = _describe(conn, table)
        if names is None:
            log.warning("copy_skipped table=%s reason=not found", table)
            return 0
        keep = [i for i, n in enumerate(names) if not self._filter.drops_column(table, n, key)]
        names = [names[i] for i in keep]
        types = [types[i] for i in keep]
        lsn = format_lsn(position)
        base = {"lsn": lsn, "schema": table.schema, "table": table.table}
        # The truncate carries the table's shape, so that an empty table is created too.
        truncate: dict[str, Any] = {
            "op": TRUNCATE,
            **base,
            "columns": names,
            "types": types,
            "key": key,
        }
        relation = relation_of(conn, table, names)
        if relation is not None:
            truncate["ddl"] = relation  # which column is which, for later schema changes
        self._put(Rows(table, [truncate], 0))
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(sql.Identifier(n) for n in names),
            rows_of(conn, table),
        )
        rows = 0
        started = reported = time.monotonic()
        with conn.cursor(name=f"copy_{uuid.uuid4().hex[:8]}") as cur:
            cur.itersize = BATCH_ROWS
            cur.execute(query)
            while not self._stop.is_set():
                batch = cur.fetchmany(BATCH_ROWS)
                if not batch:
                    break
                changes = [
                    {
                        "op": INSERT,
                        **base,
                        "columns": names,
                        "types": types,
                        "values": list(r),
                        "key": key,
                    }
                    for r in batch
                ]
                # The size of one row, times the rows: close enough to keep messages bounded,
                # without touching every value of every row.
                first = batch[0]
                size = (sum(len(str(v)) for v in first if v is not None) + 64) * len(batch)
                self._put(Rows(table, changes, size))
                rows += len(batch)
                now = time.monotonic()
                if now - reported >= _PROGRESS_SECONDS:
                    reported = now
                    log.info(
                        "copy_progress table=%s rows=%d estimated_total=%d rate=%.0f/s",
                        table,
                        rows,
                        max(estimate, rows),
                        rows / max(now - started, 1e-6),
                    )
        took = time.monotonic() - started
        log.info(
            "copy_table_done table=%s rows=%d seconds=%.1f rate=%.0f/s",
            table,
            rows,
            took,
            rows / max(took, 1e-6),
        )
        return rows


def _read_as_text(conn: Any) -> None:
    """On this connection, psycopg2 hands back every type as the text PostgreSQL's output
    function prints, as a decoder sends it (char(n) keeps its padding, bytea is hex, numbers
    keep every digit), but those that travel as ints and bools (the type registry's), whose
    Python value from psycopg2 is what wal2json's JSON gives."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT oid FROM pg_type WHERE format_type(oid, NULL) <> ALL(%s)",
            (copied_as_values(),),
        )
        oids = tuple(r[0] for r in cur.fetchall())
    conn.rollback()
    raw = psycopg2.extensions.new_type(oids, "PG2MARIA_TEXT", lambda value, _cur: value)
    psycopg2.extensions.register_type(raw, conn)


def _describe(conn: Any, table: TableRef) -> tuple[Any, list[str], list[str], int]:
    """Column names, their types as wal2json prints them, the primary key, a row estimate."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.oid, c.reltuples::bigint FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s",
            (table.schema, table.table),
        )
        found = cur.fetchone()
        if found is None:
            return None, [], [], 0
        oid, estimate = found
        # Built-in types as wal2json prints them; any other (a domain, an enum, an array of
        # one) through the stream's own resolution, so both give a column the same type text.
        cur.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.atttypid, a.atttypmod,"
            " t.typnamespace <> 'pg_catalog'::regnamespace OR t.typtype = 'd'"
            " OR coalesce(e.typnamespace <> 'pg_catalog'::regnamespace OR e.typtype = 'd'"
            "   OR e.typdelim <> ',', false)"
            " FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid"
            " LEFT JOIN pg_type e ON e.oid = t.typelem"
            # Generated columns too: wal2json carries them in every change.
            " WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped"
            " ORDER BY a.attnum",
            (oid,),
        )
        cols = [
            (name, base_type_text(cur, typ, typmod) if resolve else printed)
            for name, printed, typ, typmod, resolve in cur.fetchall()
        ]
        # The key wal2json sends with each change: a DEFERRABLE primary key is not one (it
        # identifies no row in the WAL), so the copy does not make it the target's key either.
        cur.execute(
            "SELECT a.attname FROM pg_index i"
            " JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true"
            " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
            " WHERE i.indrelid = %s AND i.indisprimary AND i.indimmediate ORDER BY k.n",
            (oid,),
        )
        key = [r[0] for r in cur.fetchall()]
    return [c[0] for c in cols], [c[1] for c in cols], key, int(estimate or 0)


def backfill_request(slot: str, tables: list[TableRef]) -> str:
    """The content of the logical message that asks the extractor of ``slot`` for a copy."""
    return json.dumps({"slot": slot, "tables": [[t.schema, t.table] for t in tables]})


def request_backfill(cfg: SourceConfig, tables: list[TableRef]) -> int:
    """Ask the running extractor (through the WAL) to copy these tables again; returns the
    request's LSN. The extractor acts on it when its stream reaches it, even after a restart."""
    conn = connect(cfg)
    try:
        with conn.cursor() as cur:
            for t in tables:
                cur.execute("SELECT to_regclass(%s)", (str(t),))
                if cur.fetchone()[0] is None:
                    raise SetupError(f"table {t} does not exist")
            body = backfill_request(cfg.slot, tables)
            cur.execute(
                "SELECT pg_logical_emit_message(true, %s, %s)::text", (BACKFILL_PREFIX, body)
            )
            return parse_lsn(cur.fetchone()[0])
    finally:
        conn.close()
