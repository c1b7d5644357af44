"""What the catalog says about the captured tables, when a session starts and every 30 s after.

- Tables whose updates and deletes PostgreSQL cannot identify: it then logs no old key for
  them, wal2json emits nothing, and only the server's log says "no tuple identifier". Each is
  named at ERROR, with the fix, at start and when it changes while running (an identity taken
  away or given back), and counted in a gauge.
- Partitions: the layout partitions.py maps changes with, kept current; partitions attached
  or detached are reported there.
- A captured table that became partitioned while wal2json filters by table name (which drops
  its partitions' changes): the session is restarted without that filter.
- With pgoutput, captured tables its publication lacks (a new table a wildcard matches): added
  to it (publication.py), and returned to be copied.

The periodic check runs on the extractor's I/O loop, on a short connection of its own with
short timeouts, so it never holds the loop up for long.
"""

from __future__ import annotations

import logging
from contextlib import closing
from dataclasses import dataclass
from typing import Any, NamedTuple

import psycopg2

from extractor.ddl import capture_installed
from extractor.decode import OutputPlugin
from extractor.metrics import ExtractorMetrics
from extractor.partitions import Layout, Partitions, load_layout, refuse_partition_names
from shared.config import SourceConfig
from shared.errors import SourceUnavailable
from shared.postgres import captured_tables, connect, connect_kwargs, first_line
from shared.tables import TableRef

log = logging.getLogger(__name__)

CHECK_SECONDS = 30.0
# Catalog reads take no lock worth waiting for; a copy request must not wait for a
# synchronous standby that is down (flushed locally, it is durable).
_BRIEF_OPTIONS = " -c statement_timeout=3000 -c lock_timeout=1000 -c synchronous_commit=local"

# For each table: its kind and replica identity setting; whether it has a primary key, and
# whether PostgreSQL can use that key, or the index chosen with REPLICA IDENTITY USING INDEX,
# to identify rows (relcache.c skips indexes that are not valid, live, unique, immediate and
# without a predicate).
_IDENTITY_SQL = """
SELECT n.nspname, c.relname, c.relkind, c.relreplident,
       pk.indexrelid IS NOT NULL,
       COALESCE(pk.indimmediate, true),
       COALESCE(pk.indisvalid AND pk.indislive AND pk.indimmediate, false),
       EXISTS (SELECT 1 FROM pg_index i
                WHERE i.indrelid = c.oid AND i.indisreplident AND i.indisvalid
                  AND i.indislive AND i.indisunique AND i.indimmediate AND i.indpred IS NULL)
  FROM unnest(%s::text[], %s::text[]) AS w(nspname, relname)
  JOIN pg_namespace n ON n.nspname = w.nspname
  JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.relname
  LEFT JOIN pg_index pk ON pk.indrelid = c.oid AND pk.indisprimary
"""


@dataclass(frozen=True, order=True)
class Unidentified:
    """A captured table (or one of its partitions) whose row changes cannot be identified."""

    table: TableRef  # the captured table
    relation: TableRef  # the table itself, or the partition that is the problem
    reason: str
    fix: str

    def where(self) -> str:
        if self.relation == self.table:
            return f"table={self.table}"
        return f"table={self.table} partition={self.relation}"


# What happens to the updates and deletes of a table PostgreSQL cannot identify rows of: wal2json
# sends nothing for them; a publication that publishes updates makes PostgreSQL refuse them.
LOST = "its updates and deletes are lost"
REFUSED = "PostgreSQL refuses its updates and deletes (the publication publishes them)"


def find_unidentified(
    conn: Any, tables: list[TableRef], layout: Layout, lost: str = LOST
) -> list[Unidentified]:
    """The captured tables (a partitioned root: its partitions) PostgreSQL cannot identify
    rows of."""
    owner: dict[TableRef, TableRef] = {}
    for t in tables:
        if t in layout.roots:
            owner.update((leaf, t) for leaf in layout.leaves_of(t))
        else:
            owner[t] = t
    if not owner:
        return []
    names = sorted(owner)
    with conn.cursor() as cur:
        cur.execute(_IDENTITY_SQL, ([r.schema for r in names], [r.table for r in names]))
        found = cur.fetchall()
    out = []
    for schema, name, *facts in found:
        rel = TableRef(schema, name)
        table = owner[rel]
        root_key = layout.roots.get(table) if table != rel else None
        why = _why(rel, table, _Identity(*facts), root_key, lost)
        if why is not None:
            out.append(Unidentified(table, rel, *why))
    return sorted(out)


def find_generated(conn: Any, tables: list[TableRef]) -> dict[TableRef, list[str]]:
    """The generated columns of the captured tables, if the server's pgoutput leaves them out
    of its changes (before PostgreSQL 18)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT n.nspname, c.relname, a.attname"
            " FROM unnest(%s::text[], %s::text[]) AS w(nspname, relname)"
            " JOIN pg_namespace n ON n.nspname = w.nspname"
            " JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = w.relname"
            " JOIN pg_attribute a ON a.attrelid = c.oid"
            " WHERE a.attgenerated <> '' AND NOT a.attisdropped AND a.attnum > 0"
            " AND current_setting('server_version_num')::int < 180000"
            " ORDER BY 1, 2, a.attnum",
            ([t.schema for t in tables], [t.table for t in tables]),
        )
        found: dict[TableRef, list[str]] = {}
        for schema, table, column in cur.fetchall():
            found.setdefault(TableRef(schema, table), []).append(column)
    return found


class _Identity(NamedTuple):
    kind: str  # relkind
    ident: str  # relreplident
    has_pk: bool
    pk_immediate: bool
    pk_usable: bool
    index_usable: bool  # the REPLICA IDENTITY USING INDEX one


def _why(
    rel: TableRef,
    table: TableRef,
    facts: _Identity,
    root_key: list[str] | None,
    lost: str = LOST,
) -> tuple[str, str] | None:
    """Why the rows of ``rel`` cannot be identified, and the fix; None if they can.
    ``root_key``: the primary key of the root, if ``rel`` is a partition of ``table``."""
    kind, ident, has_pk, pk_immediate, pk_usable, index_usable = facts
    full = f"ALTER TABLE {rel} REPLICA IDENTITY FULL"
    if kind == "f":
        return (
            "a foreign table: its changes never reach PostgreSQL's WAL, only its copy does",
            f"detach it from {table}, or leave {table} out of source.tables",
        )
    if ident == "f":
        return None
    if ident == "n":
        return f"REPLICA IDENTITY NOTHING: {lost}", f"{full}, or DEFAULT with a primary key"
    if ident == "i" and not index_usable:
        return (
            f"its REPLICA IDENTITY index was dropped or cannot be used: {lost}",
            f"{full}, or DEFAULT with a primary key, or USING INDEX with a unique, "
            "non-partial, not deferrable index",
        )
    if ident == "d" and not pk_usable:
        if has_pk and not pk_immediate:
            return (
                f"its primary key is DEFERRABLE, which PostgreSQL never uses to identify rows: "
                f"{lost}",
                f"{full}, or make the primary key NOT DEFERRABLE",
            )
        if has_pk:
            return f"its primary key index is not valid: {lost}", f"REINDEX it, or {full}"
        return f"no primary key and no replica identity: {lost}", f"add a primary key, or {full}"
    if root_key is not None and not root_key:
        return (
            f"{table} has no primary key, so only the whole old row identifies a row across its "
            "partitions: updates and deletes may be applied to another row",
            f"{full}, or add a primary key to {table}",
        )
    return None


def connect_briefly(cfg: SourceConfig) -> Any:
    """A connection for a catalog read on the extractor's loop: short connect and statement
    timeouts, so that it never holds the loop up for long (psycopg2 errors as they are)."""
    params = connect_kwargs(cfg)
    params["options"] += _BRIEF_OPTIONS
    params["connect_timeout"] = "3"
    params["tcp_user_timeout"] = "5000"
    conn = psycopg2.connect(**params)
    conn.autocommit = True
    return conn


class CatalogWatch:
    """The catalog checks of one extractor session (see the module's docstring); what was
    reported is remembered across the sessions of the process (in its metrics)."""

    def __init__(self, cfg: SourceConfig, metrics: ExtractorMetrics, plugin: OutputPlugin) -> None:
        self._cfg = cfg
        self._plugin = plugin
        self._lost = REFUSED if plugin.name == "pgoutput" else LOST
        self._gauge = metrics.unidentified_tables
        self._reported = metrics.identity_reported
        self.partitions = Partitions(cfg, self._connect)
        # Whether a captured table was partitioned at start: wal2json then does not filter
        # by table name (replication.py), since partitions have names of their own.
        self.partitioned = False

    def _connect(self) -> Any:
        return connect_briefly(self._cfg)

    def begin(self) -> list[TableRef]:
        """At the start of a session: the captured tables, checked (see start)."""
        with closing(connect(self._cfg)) as conn:
            tables = captured_tables(conn, self._cfg.capture)
            self.start(conn, tables)
        return tables

    def start(self, conn: Any, tables: list[TableRef]) -> None:
        """At the start of a session, on its catalog connection: refuse a filter naming a
        partition, load the layout, name the tables PostgreSQL cannot identify."""
        try:
            layout = load_layout(conn)
            refuse_partition_names(self._cfg.capture, layout)
            self.partitions.adopt(layout, conn)
            self.partitions.ddl_capture = capture_installed(conn)
            problems = find_unidentified(conn, tables, layout, self._lost)
            generated = find_generated(conn, tables) if self._plugin.name == "pgoutput" else {}
        except psycopg2.Error as e:
            raise SourceUnavailable(f"cannot read the catalog: {first_line(e)}") from e
        for table, all_columns in generated.items():
            columns = [c for c in all_columns if not self._cfg.capture.drops_column(table, c, [])]
            if not columns:
                continue  # left out of the capture: nothing goes stale
            excluded = ",".join(f"{table}.{c}" for c in columns)
            log.error(
                "generated_columns_not_streamed table=%s columns=%s: pgoutput before "
                "PostgreSQL 18 does not send generated columns, so the target's copies of them "
                "go stale; fix: leave them out (source.exclude_columns=%s) or use "
                "source.decoder=wal2json",
                table,
                ",".join(columns),
                excluded,
            )
        self.partitioned = any(t in layout.roots for t in tables)
        self._report(problems, tables, layout)

    def check(self) -> list[TableRef]:
        """The periodic check; returns the captured tables the plugin was not streaming until
        now (pgoutput's publication lacked them: to be copied). A failed query is logged and
        skipped (the next one comes); raises SourceUnavailable only to restart the session
        without wal2json's table filter."""
        try:
            conn = self._connect()
            try:
                tables = captured_tables(conn, self._cfg.capture)
                layout = load_layout(conn)
                self.partitions.adopt(layout, conn)
                problems = find_unidentified(conn, tables, layout, self._lost)
                added = self._plugin.publish(conn, tables, at_start=False)
            finally:
                conn.close()
        except psycopg2.Error as e:
            log.warning("catalog_check_failed error=%s", first_line(e))
            return []
        self._report(problems, tables, layout)
        if self.partitioned or not self._filters_by_name():
            return added
        became = [t for t in tables if t in layout.roots]
        if became:
            log.warning(
                "partitioned_table_found table=%s: wal2json filters by table name in this "
                "session, which drops its partitions' changes; restarting the session without "
                "that filter (a table created while running is copied at the restart; with "
                "source.snapshot=never run python -m extractor backfill %s)",
                became[0],
                " ".join(str(t) for t in became),
            )
            raise SourceUnavailable(f"captured table {became[0]} is partitioned")
        return added

    def _filters_by_name(self) -> bool:
        """Whether the plugin was started with a filter by table name, which it leaves out
        while a captured table is partitioned."""
        capture = self._cfg.capture
        return self._plugin.start_options(capture, False) != self._plugin.start_options(
            capture, True
        )

    def _report(self, problems: list[Unidentified], tables: list[TableRef], layout: Layout) -> None:
        """Log what changed since this process last reported (at its start: everything)."""
        now = {(p.table, p.relation): p for p in problems}
        for key, p in now.items():
            if self._reported.get(key) != (p.reason, p.fix):
                log.error("table_without_identity %s: %s; fix: %s", p.where(), p.reason, p.fix)
        captured = set(tables)
        for table, relation in self._reported:
            still_there = relation == table or layout.partitions.get(relation) == table
            if (table, relation) not in now and table in captured and still_there:
                log.warning(
                    "table_identified %s: PostgreSQL identifies its rows again; the updates and "
                    "deletes made while it could not are missing in the target; fix: "
                    "python -m extractor backfill %s",
                    Unidentified(table, relation, "", "").where(),
                    table,
                )
        self._reported.clear()
        self._reported.update((key, (p.reason, p.fix)) for key, p in now.items())
        self._gauge.set(len({p.table for p in problems}))
