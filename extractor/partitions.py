"""Partitioned tables: one captured table, and one target table, per partitioned root.

wal2json reports each change of a partitioned table under the name of the leaf partition that
holds the row, while a copy reads the root with all its partitions. So every change reported
under a partition is renamed here to its root (looked up once per name, cached): the envelope
names the root, and nothing downstream knows about partitions. A filter names roots; a
partition follows its root, whatever its own name.

The catalog's layout (which partition belongs to which root) is read when a session starts,
again when a table name never seen before appears in the stream (a partition created while
running), and by the periodic catalog check (catalog.py). Rows that enter or leave a root
without a change in the WAL (ATTACH PARTITION of a table holding rows, DETACH, DROP of a
partition) are reported with the fix: a backfill of the root.

A TRUNCATE of the root arrives as a truncate of the root itself (then of each partition, at
the same LSN): it empties the root's target table. A TRUNCATE of some partitions only cannot
be applied to the one target table as a truncate; the root is copied again instead, through a
backfill request written into the WAL (durable: if the extractor stops before acting on it,
the stream still holds it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg2
from psycopg2 import sql

from extractor.snapshot import BACKFILL_PREFIX, backfill_request
from shared.config import SourceConfig
from shared.envelope import TRUNCATE
from shared.errors import ConfigError, SourceUnavailable
from shared.postgres import connect, first_line
from shared.tables import TableFilter, TableRef

log = logging.getLogger(__name__)

# Every table (and materialized view) of the database with the root it belongs to (itself
# unless it is a partition), its kind, and for a partitioned root its primary key. Partitions
# are followed through pg_inherits, which takes no lock (pg_partition_tree would).
_LAYOUT_SQL = """
WITH RECURSIVE tree(root, rel) AS (
    SELECT c.oid, c.oid FROM pg_class c
     WHERE c.relkind IN ('r', 'p', 'f', 'm') AND NOT c.relispartition
    UNION ALL
    SELECT t.root, i.inhrelid FROM tree t
      JOIN pg_inherits i ON i.inhparent = t.rel
      JOIN pg_class c ON c.oid = i.inhrelid AND c.relispartition
)
SELECT n.nspname, c.relname, c.relkind, rn.nspname, r.relname,
       CASE WHEN c.relkind = 'p' AND t.root = t.rel THEN ARRAY(
           SELECT a.attname::text FROM pg_index i
             JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n) ON true
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
            WHERE i.indrelid = c.oid AND i.indisprimary AND i.indimmediate ORDER BY k.n) END
  FROM tree t
  JOIN pg_class c ON c.oid = t.rel JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_class r ON r.oid = t.root JOIN pg_namespace rn ON rn.oid = r.relnamespace
 WHERE rn.nspname NOT IN ('pg_catalog', 'information_schema') AND rn.nspname NOT LIKE 'pg\\_%'
"""


@dataclass(frozen=True)
class Layout:
    """Which tables are partitions of which root, as the catalog said at one moment."""

    roots: dict[TableRef, list[str]] = field(default_factory=dict)  # root -> primary key
    partitions: dict[TableRef, TableRef] = field(default_factory=dict)  # any level -> root
    leaves: dict[TableRef, str] = field(default_factory=dict)  # rows live here: relkind
    tables: frozenset[TableRef] = frozenset()  # every table that is not a partition

    def knows(self, ref: TableRef) -> bool:
        return ref in self.tables or ref in self.partitions

    def leaves_of(self, root: TableRef) -> list[TableRef]:
        return sorted(p for p in self.leaves if self.partitions[p] == root)


def load_layout(conn: Any) -> Layout:
    with conn.cursor() as cur:
        cur.execute(_LAYOUT_SQL)
        found = cur.fetchall()
    roots: dict[TableRef, list[str]] = {}
    partitions: dict[TableRef, TableRef] = {}
    leaves: dict[TableRef, str] = {}
    tables: set[TableRef] = set()
    for schema, name, kind, root_schema, root_name, key in found:
        ref, root = TableRef(schema, name), TableRef(root_schema, root_name)
        if ref == root:
            tables.add(ref)
            if kind == "p":
                roots[ref] = list(key or [])
        else:
            partitions[ref] = root
            if kind != "p":
                leaves[ref] = kind
    return Layout(roots, partitions, leaves, frozenset(tables))


def refuse_partition_names(capture: TableFilter, layout: Layout) -> None:
    """A filter names roots: a partition named alone, or left out of a captured root, is a
    mistake said at start in one line."""
    for pattern in capture.include:
        ref = pattern.exact
        root = layout.partitions.get(ref) if ref else None
        if root is not None and not capture.captures(root):
            raise ConfigError(
                f"source.tables: {ref} is a partition of {root}: name the root instead "
                f"({root}); its partitions, present and future, come with it"
            )
    for pattern in capture.exclude:
        ref = pattern.exact
        root = layout.partitions.get(ref) if ref else None
        if root is not None and capture.captures(root):
            raise ConfigError(
                f"source.exclude_tables: {ref} is a partition of {root}, which is captured: "
                f"a partition cannot be left out of its root (exclude {root} itself)"
            )


def refuse_partitions(cfg: SourceConfig, tables: list[TableRef], setting: str) -> None:
    """For commands naming tables (a backfill): a partition is copied as part of its root."""
    conn = connect(cfg)
    try:
        layout = load_layout(conn)
    except psycopg2.Error as e:
        raise SourceUnavailable(f"cannot read the catalog: {first_line(e)}") from e
    finally:
        conn.close()
    for ref in tables:
        root = layout.partitions.get(ref)
        if root is not None:
            raise ConfigError(f"{setting}: {ref} is a partition of {root}: name {root} instead")


class Partitions:
    """Renames changes reported under a partition to its root; follows the catalog."""

    def __init__(self, cfg: SourceConfig, connect_briefly: Callable[[], Any]) -> None:
        self._cfg = cfg
        self._connect = connect_briefly
        self.layout = Layout()
        self._loaded = False
        self._roots: dict[tuple[str, str], TableRef | None] = {}
        self._whole: dict[TableRef, str] = {}  # root -> LSN of its last truncate as a whole
        self._recopy: dict[TableRef, str] = {}  # root -> LSN of the last copy it asked for
        # With the DDL capture (sql/ddl-capture.sql), partitions attached or detached with
        # rows have their root copied again at that point of the stream (ddl.py).
        self.ddl_capture = False

    # ------------------------------------------------------------ the stream

    def root_of(self, schema: str, table: str) -> TableRef | None:
        """The partitioned root of this table, or None if it is not a partition."""
        key = (schema, table)
        try:
            return self._roots[key]
        except KeyError:
            pass
        ref = TableRef(schema, table)
        if not self.layout.knows(ref):
            # Created (or renamed) since the layout was read: perhaps a new partition.
            self._reload()
            if not self.layout.knows(ref):
                log.info("table_not_in_catalog table=%s (dropped since?)", ref)
        root = self._roots[key] = self.layout.partitions.get(ref)
        return root

    def as_root(self, change: dict[str, Any], root: TableRef) -> bool:
        """Rename a partition's change to its root (False: nothing to publish for it)."""
        if change["op"] == TRUNCATE:
            self._partly_truncated(root, TableRef(change["schema"], change["table"]), change)
            return False
        change["schema"] = root.schema
        change["table"] = root.table
        # The root's key, as a copy of the root has it (a partition of a root without one may
        # have a key of its own, not unique across the root).
        key = self.layout.roots.get(root)
        if key is not None and change.get("key") != key:
            change["key"] = list(key)
        return True

    def truncating(self, ref: TableRef, lsn: str) -> None:
        """A truncate of a captured table that is not a partition (perhaps a whole root)."""
        if ref in self.layout.roots:
            self._whole[ref] = lsn

    def _partly_truncated(self, root: TableRef, part: TableRef, change: dict[str, Any]) -> None:
        lsn = change["lsn"]
        # One TRUNCATE statement logs the root (if named) and each partition at one LSN.
        if self._whole.get(root) == lsn or self._recopy.get(root) == lsn:
            return
        self._recopy[root] = lsn
        log.warning(
            "partition_truncated table=%s partition=%s lsn=%s: a truncate of part of %s "
            "cannot be applied to its one target table; copying %s again",
            root,
            part,
            lsn,
            root,
            root,
        )
        self._request_copy(root)

    def _request_copy(self, root: TableRef) -> None:
        # The same request as `python -m extractor backfill`, written before the truncate's
        # transaction can be confirmed: a crash before this point decodes the truncate again.
        body = backfill_request(self._cfg.slot, [root])
        try:
            conn = self._connect()
            try:
                with conn.cursor() as cur:
                    cur.execute(
                        "SELECT pg_logical_emit_message(true, %s, %s)", (BACKFILL_PREFIX, body)
                    )
            finally:
                conn.close()
        except psycopg2.Error as e:
            raise SourceUnavailable(f"cannot request a copy of {root}: {first_line(e)}") from e

    # ------------------------------------------------------------ the catalog

    def _reload(self) -> None:
        try:
            conn = self._connect()
            try:
                self.adopt(load_layout(conn), conn)
            finally:
                conn.close()
        except psycopg2.Error as e:
            # Which table a change belongs to cannot be known: the session ends, the change
            # is decoded again by the next one.
            raise SourceUnavailable(f"cannot read the catalog: {first_line(e)}") from e

    def adopt(self, layout: Layout, conn: Any) -> None:
        """Take a newer layout; say which partitions came and went since the last one."""
        old, self.layout = self.layout, layout
        self._roots.clear()
        if not self._loaded:
            self._loaded = True
            return
        for part, root in sorted(layout.partitions.items()):
            if part in layout.leaves and old.partitions.get(part) != root:
                self._attached(part, root, conn)
        for part, root in sorted(old.partitions.items()):
            if part in old.leaves and layout.partitions.get(part) != root:
                self._detached(part, root, layout)

    def _attached(self, part: TableRef, root: TableRef, conn: Any) -> None:
        if not _holds_rows(conn, part):
            log.info("partition_added table=%s partition=%s", root, part)
            return
        if self.ddl_capture:
            log.info(
                "partition_attached table=%s partition=%s (the DDL capture copies it)", root, part
            )
            return
        log.warning(
            "partition_attached table=%s partition=%s: it holds rows; those it held before it "
            "became a partition of %s are not in its target table; fix: "
            "python -m extractor backfill %s",
            root,
            part,
            root,
            root,
        )

    def _detached(self, part: TableRef, root: TableRef, layout: Layout) -> None:
        alone = part in layout.tables and self._cfg.capture.captures(part)
        if self.ddl_capture:
            log.info(
                "partition_detached table=%s partition=%s (the DDL capture copies it)", root, part
            )
            return
        log.warning(
            "partition_detached table=%s partition=%s: no longer a partition of %s (detached "
            "or dropped); the rows it held are still in the target table of %s; fix: "
            "python -m extractor backfill %s%s",
            root,
            part,
            root,
            root,
            root,
            f" {part} (captured by itself now)" if alone else "",
        )


def _holds_rows(conn: Any, ref: TableRef) -> bool:
    """Whether a new partition has rows; if that cannot be read, assume it has."""
    try:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT EXISTS (SELECT 1 FROM ONLY {})").format(
                    sql.Identifier(ref.schema, ref.table)
                )
            )
            return bool(cur.fetchone()[0])
    except psycopg2.Error as e:
        log.debug("partition_rows_unknown partition=%s error=%s", ref, first_line(e))
        return True
