"""Schema changes as the DDL capture (sql/ddl-capture.sql) reports them, turned into changes of
the stream and into copies, at their exact place in the stream.

The capture's event triggers write a transactional logical message (prefix ``pg2maria.ddl``)
inside the transaction that changes a table's schema, so it arrives between the row changes
before and after it. Each message describes the tables a command touched as they are right
after it, inside that transaction: columns by attnum (with the value the rows that existed
before an ADD COLUMN hold), types, primary key, the table's OID; for a partitioned table the
partitions the command attached or detached. What a change of name means is left to who knows
the previous shape at that point of the stream: the applier, by attnum and OID (the catalog
this process could read is the present one, possibly ahead of the stream).

- A command on a captured table becomes one change of op ``ddl`` (shared/wire.py), which
  travels in a message of its own: the applier mirrors it in MariaDB as a unit of its own.
- Where PostgreSQL changed rows in a way DDL cannot mirror -- a table rewrite (a volatile
  default, a type change or USING, timestamp to timestamptz outside UTC), partitions with rows
  attached or detached, a partition dropped, a table come into the capture by a rename -- the
  table is copied again at that point, as for a backfill request: the request holds the slot
  behind it until RabbitMQ confirmed the copy (copying.py), so a crash reads it again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg2

from extractor.shapes import Shape, ShapeWatch
from shared.envelope import DDL
from shared.errors import DecodeError, SourceUnavailable
from shared.lsn import format_lsn, parse_lsn
from shared.postgres import first_line
from shared.tables import TableFilter, TableRef

log = logging.getLogger(__name__)

DDL_PREFIX = "pg2maria.ddl"
# The event triggers sql/ddl-capture.sql creates (all four make the capture).
TRIGGERS = ("pg2maria_ddl_start", "pg2maria_ddl_end", "pg2maria_ddl_drop", "pg2maria_ddl_rewrite")
# table_rewrite reasons that change values (persistence, a default, a column's type); a new
# access method alone changes none.
_VALUES_REWRITTEN = 0x01 | 0x02 | 0x04

# What a schema change does in the target (the ``action`` of a ddl change).
CREATE, ALTER, DROP = "create", "alter", "drop"


@dataclass(frozen=True)
class Column:
    attnum: int
    name: str
    type: str
    missing: str | None  # what rows that existed before the column was added hold


@dataclass(frozen=True)
class Relation:
    oid: int
    ref: TableRef
    kind: str = "r"
    persistence: str = "p"  # p: permanent, u: unlogged (its changes never reach the WAL)
    root: TableRef | None = None  # a partition's partitioned root
    columns: tuple[Column, ...] = ()
    key: tuple[str, ...] = ()
    attached: tuple[tuple[int, bool], ...] = ()  # partition OID, holds rows
    detached: tuple[tuple[int, bool], ...] = ()


@dataclass(frozen=True)
class SchemaEvent:
    event: str  # "ddl" (a command's result), "drop", "rewrite"
    tag: str  # the command: CREATE TABLE, ALTER TABLE, DROP TABLE, ...
    tables: tuple[Relation, ...]
    reason: int = 0  # a rewrite's reason bits


def parse_event(content: str) -> SchemaEvent:
    """The capture's message; DecodeError if it is not one."""
    try:
        doc = json.loads(content)
        if doc.get("v") != 1:
            raise DecodeError(f"DDL capture message of version {doc.get('v')!r} (expected 1)")
        return SchemaEvent(
            event=str(doc["event"]),
            tag=str(doc.get("tag", "")),
            tables=tuple(_relation(t) for t in doc["tables"]),
            reason=int(doc.get("reason") or 0),
        )
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise DecodeError(f"unreadable DDL capture message ({e}): {content[:200]!r}") from e


def _relation(doc: dict[str, Any]) -> Relation:
    root = doc.get("root")
    return Relation(
        oid=int(doc["oid"]),
        ref=TableRef(str(doc["schema"]), str(doc["name"])),
        kind=str(doc.get("kind", "r")),
        persistence=str(doc.get("persistence", "p")),
        root=TableRef(str(root[0]), str(root[1])) if root else None,
        columns=tuple(
            Column(int(n), str(name), str(type_), None if missing is None else str(missing))
            for n, name, type_, missing in doc.get("columns", ())
        ),
        key=tuple(str(k) for k in doc.get("key", ())),
        attached=tuple((int(oid), bool(rows)) for oid, rows in doc.get("attached", ())),
        detached=tuple((int(oid), bool(rows)) for oid, rows in doc.get("detached", ())),
    )


@dataclass
class Outcome:
    """What one message asks of the stream."""

    changes: list[dict[str, Any]] = field(default_factory=list)  # each in a message of its own
    copy: list[TableRef] = field(default_factory=list)  # tables to copy again, here
    created: list[TableRef] = field(default_factory=list)  # complete from their creation on


class SchemaChanges:
    """The DDL capture's messages of one session -> ddl changes and copies."""

    def __init__(
        self,
        capture: TableFilter,
        watch: ShapeWatch,
        copies_missing: bool,
        types: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        """``copies_missing``: a table that comes into the capture holding rows is copied
        (source.snapshot=initial; with never, only changes are carried). ``types``: what is
        done to the types of every row change (if anything), done to a schema change's too, so
        that both name a column's type alike."""
        self._capture = capture
        self._watch = watch
        self._copies_missing = copies_missing
        self._types = types
        # Tables whose rows a command of the transaction being read rewrote: a copy of each
        # follows the transaction, so its later schema changes may say so (``recopy``).
        self._rewritten: set[TableRef] = set()

    def committed(self) -> None:
        """The end of the transaction being read."""
        self._rewritten.clear()

    def handle(self, content: str, lsn: str, copied: set[TableRef]) -> Outcome:
        """A message read at ``lsn``. ``copied``: the tables copied so far (kept up to date
        here)."""
        out = Outcome()
        try:
            event = parse_event(content)
        except DecodeError as e:
            # Nothing a retry could change; what it said is not lost for good: a change that
            # does not fit what was seen of its table has the table copied (shapes.py).
            log.error("ddl_message_unreadable lsn=%s error=%s", lsn, e)
            return out
        # wal2json gives a message the LSN where its record ends, which is where the next
        # record starts: one less is between the two, and no record starts there (records are
        # aligned), so the changes it becomes keep their own place.
        at = format_lsn(parse_lsn(lsn) - 1)
        if event.event == "rewrite":
            self._rewrite(event, out)
        elif event.event == "drop":
            self._dropped(event, at, copied, out)
        elif event.event == "ddl":
            for rel in event.tables:
                if rel.root is None:
                    recopy = rel.ref in self._rewritten
                    self._changed(event.tag, rel, at, copied, out, recopy=recopy)
        else:
            log.warning("ddl_message_ignored event=%s (written by a newer capture?)", event.event)
        return out

    # ------------------------------------------------------------ events

    def _rewrite(self, event: SchemaEvent, out: Outcome) -> None:
        if not event.reason & _VALUES_REWRITTEN:
            return
        for rel in event.tables:
            table = rel.root or rel.ref
            if self._capture.captures(table):
                self._rewritten.add(table)
                log.warning(
                    "schema_rewrite table=%s%s reason=%d: PostgreSQL rewrote its rows (%s); "
                    "copying it again at this point",
                    table,
                    f" partition={rel.ref}" if rel.root else "",
                    event.reason,
                    _why(event.reason),
                )
                _add(out.copy, table)

    def _dropped(self, event: SchemaEvent, at: str, copied: set[TableRef], out: Outcome) -> None:
        gone = {rel.ref for rel in event.tables}
        for rel in event.tables:
            if rel.root is not None:
                if rel.root not in gone and self._capture.captures(rel.root):
                    log.warning(
                        "partition_dropped table=%s partition=%s: its rows leave %s; copying "
                        "it again at this point",
                        rel.root,
                        rel.ref,
                        rel.root,
                    )
                    _add(out.copy, rel.root)
            elif self._capture.captures(rel.ref):
                out.changes.append(_change(DROP, rel, at, self._capture))
                self._watch.forget(rel.ref)
                copied.discard(rel.ref)

    def _changed(
        self,
        tag: str,
        rel: Relation,
        at: str,
        copied: set[TableRef],
        out: Outcome,
        *,
        recopy: bool,
    ) -> None:
        table = rel.ref
        was = self._watch.named(rel.oid)
        if not self._capture.captures(table):
            if was is not None and was != table:
                # Renamed (or moved to another schema) out of the capture: for the target, as
                # if it were dropped.
                log.warning("table_left_capture table=%s now=%s", was, table)
                out.changes.append(_change(DROP, Relation(rel.oid, was), at, self._capture))
                self._watch.forget(was)
                copied.discard(was)
            return
        if rel.persistence == "u":
            log.error(
                "table_unlogged table=%s: its changes do not reach PostgreSQL's WAL, so none is "
                "carried; fix: ALTER TABLE %s SET LOGGED (which copies it again)",
                table,
                table,
            )
        action = CREATE if tag == "CREATE TABLE" else ALTER
        change = _change(action, rel, at, self._capture, recopy)
        if self._types is not None:
            self._types(change)
        out.changes.append(change)
        if was is not None and was != table:
            self._watch.forget(was)
            copied.discard(was)
            copied.add(table)
        if tag in ("CREATE TABLE", "CREATE TABLE AS", "SELECT INTO"):
            # Created here: the stream carries every row it ever has.
            out.created.append(table)
        elif was is None and table not in copied and self._copies_missing:
            # Come into the capture (renamed, or moved from another schema) with its rows,
            # or never copied: its rows are copied here.
            log.warning(
                "table_entered_capture table=%s: not copied before; copying it at this point",
                table,
            )
            _add(out.copy, table)
        self._watch.reported(table, Shape(change["columns"], change["types"], rel.oid))
        for oid, rows in rel.attached + rel.detached:
            if rows:
                verb = "attached" if (oid, rows) in rel.attached else "detached"
                log.warning(
                    "partition_%s table=%s partition_oid=%d: it holds rows; copying %s again "
                    "at this point",
                    verb,
                    table,
                    oid,
                    table,
                )
                _add(out.copy, table)


def _change(
    action: str, rel: Relation, at: str, capture: TableFilter, recopy: bool = False
) -> dict[str, Any]:
    """The ddl change for a captured table, its excluded columns left out. ``recopy``: the
    command rewrote its rows, which are copied again right after it."""
    key = list(rel.key)
    cols = [c for c in rel.columns if not capture.drops_column(rel.ref, c.name, key)]
    return {
        "op": DDL,
        "lsn": at,
        "schema": rel.ref.schema,
        "table": rel.ref.table,
        "columns": [c.name for c in cols],
        "types": [c.type for c in cols],
        "values": [c.missing for c in cols],
        "key": key,
        "ddl": {
            "action": action,
            "relid": rel.oid,
            "attnums": [c.attnum for c in cols],
            "recopy": recopy,
        },
    }


def _add(tables: list[TableRef], table: TableRef) -> None:
    if table not in tables:
        tables.append(table)


def _why(reason: int) -> str:
    parts = []
    if reason & 0x01:
        parts.append("LOGGED/UNLOGGED changed")
    if reason & 0x02:
        parts.append("a column added with a default that is not a constant")
    if reason & 0x04:
        parts.append("a column's type or its values changed")
    return ", ".join(parts) or "rewrite"


def relation_of(conn: Any, table: TableRef, names: list[str]) -> dict[str, Any] | None:
    """For a copy's truncate: the table's OID and the attnums of ``names``, so the applier can
    tell later which column a rename or a drop is about (None if the table is gone)."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.oid, a.attname, a.attnum FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
            " WHERE n.nspname = %s AND c.relname = %s",
            (table.schema, table.table),
        )
        rows = cur.fetchall()
    if not rows:
        return None
    attnums = {name: int(n) for _oid, name, n in rows}
    if any(n not in attnums for n in names):
        return None
    return {"relid": int(rows[0][0]), "attnums": [attnums[n] for n in names]}


def capture_installed(conn: Any) -> bool:
    """Whether the DDL capture's triggers are installed and enabled in this database; said
    in the log (at WARNING if not)."""
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_event_trigger"
                " WHERE evtname = ANY(%s) AND evtenabled <> 'D'",
                (list(TRIGGERS),),
            )
            row = cur.fetchone()
    except psycopg2.Error as e:
        raise SourceUnavailable(f"cannot read the catalog: {first_line(e)}") from e
    found = bool(row) and int(row[0]) == len(TRIGGERS)
    if found:
        log.info("ddl_capture installed=true")
    else:
        log.warning(
            "ddl_capture installed=false: schema changes are noticed only from the changes that "
            "follow them, and their tables copied again; for schema changes mirrored exactly at "
            "their place in the stream, install sql/ddl-capture.sql (README, Schema changes)"
        )
    return found
