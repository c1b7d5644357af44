"""Target tables: created from the types in the messages, extended with columns that appear
later, and changed when a source column's type changes.

DDL in MariaDB commits the open transaction implicitly, so this runs before a batch's
transaction begins, never inside it. The PostgreSQL type each target column was made from is
kept in ``_cdc_columns``: a column is altered only when that type really changes on the source.
A table the applier must not write (applier/refusal.py) is neither created nor changed, and
``refuse`` stops the batch before its transaction.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection
from sqlalchemy.types import TypeEngine

from applier.alter import AddPrimaryKey, AlterColumn
from applier.refusal import (
    Refusal,
    TargetFacts,
    owners_table,
    read_facts,
    record_owner,
    refusal,
)
from shared.envelope import Change
from shared.errors import TableRefused
from shared.naming import Naming, TargetRef
from shared.tables import TableRef
from shared.types import column_type

log = logging.getLogger(__name__)

CHARSET = "utf8mb4"
# Binary and NO PAD: 'a' <> 'A' and 'a' <> 'a ' as in PostgreSQL, so two source keys never
# collapse into one target row.
COLLATION = "utf8mb4_nopad_bin"

# Bytes of MariaDB's 65,535-byte row limit we let VARCHAR columns take (utf8mb4: 4 bytes a
# character); TEXT and BLOB columns count only a few bytes each.
ROW_BUDGET = 60_000

columns_table = sa.Table(
    "_cdc_columns",
    sa.MetaData(),
    sa.Column("db", mysql.VARCHAR(64), primary_key=True),
    sa.Column("tbl", mysql.VARCHAR(64), primary_key=True),
    sa.Column("col", mysql.VARCHAR(64), primary_key=True),
    sa.Column("pg_type", mysql.VARCHAR(255), nullable=False),
    mariadb_engine="InnoDB",
    mariadb_charset=CHARSET,
    mariadb_collate=COLLATION,
)


def fit_row(
    types: dict[str, TypeEngine[Any]], key: set[str], budget: int = ROW_BUDGET
) -> dict[str, TypeEngine[Any]]:
    """Turn the longest non-key VARCHARs into LONGTEXT until the row fits the budget."""
    out = dict(types)

    def width(t: TypeEngine[Any]) -> int:
        length = getattr(t, "length", None)
        return 4 * length + 2 if isinstance(t, mysql.VARCHAR) and length else 0

    total = sum(width(t) for t in out.values())
    for name in sorted(out, key=lambda n: width(out[n]), reverse=True):
        if total <= budget:
            break
        if name in key or not width(out[name]):
            continue
        total -= width(out[name])
        out[name] = mysql.LONGTEXT()
    return out


@dataclass
class TableShape:
    """What a batch tells us about one table: its columns (in order), types and key, and
    the source tables whose changes go to it (the first: the one these come from)."""

    target: TargetRef
    columns: dict[str, str] = field(default_factory=dict)  # name -> PostgreSQL type
    key: list[str] = field(default_factory=list)
    sources: list[TableRef] = field(default_factory=list)

    def add(self, change: Change) -> None:
        if not self.sources:
            self.sources.append(TableRef(change.schema, change.table))
        elif (change.schema, change.table) != (self.sources[0].schema, self.sources[0].table):
            # Another source table for the same target: refused, so it shapes nothing.
            other = TableRef(change.schema, change.table)
            if other not in self.sources:
                self.sources.append(other)
            return
        for name, type_text in zip(change.columns, change.types, strict=True):
            self.columns[name] = type_text  # the latest: a type may change within a batch
        if change.old_key is not None:
            for name, type_text in zip(change.old_key.columns, change.old_key.types, strict=True):
                self.columns.setdefault(name, type_text)
        if change.key and not self.key:
            self.key = list(change.key)


class TargetSchema:
    """Cache of the target's tables, their columns (lower-cased: MariaDB ignores their case)
    and the PostgreSQL type each column came from."""

    def __init__(self, naming: Naming) -> None:
        self._naming = naming
        self._columns: dict[TargetRef, dict[str, str | None]] = {}
        self._facts: dict[TargetRef, TargetFacts] = {}
        self._database = ""  # the target URL's database
        # Kept across ``forget``: the source key last seen per table (a batch with only a
        # TRUNCATE does not say it), and the refusals in force (metric; logged once).
        self._keys: dict[TargetRef, list[str]] = {}
        self.refused: dict[tuple[TargetRef, TableRef], Refusal] = {}
        self.galera = False  # the target is a Galera node: every table needs a primary key
        self.partitioned = False  # target.partitions > 1: no foreign keys

    def exists(self, target: TargetRef) -> bool:
        """Whether the table is known to exist (after ``ensure`` for this batch)."""
        return target in self._columns

    def forget(self) -> None:
        """After a reconnect or a schema error: read the catalog again."""
        self._columns.clear()
        self._facts.clear()

    def ensure_catalog(self, conn: Connection) -> None:
        columns_table.create(conn, checkfirst=True)
        owners_table.create(conn, checkfirst=True)
        self._database = str(conn.execute(sa.text("SELECT DATABASE()")).scalar() or "")
        conn.commit()

    def shapes(self, changes: Iterable[Change]) -> dict[TargetRef, TableShape]:
        shapes: dict[TargetRef, TableShape] = {}
        last: Change | None = None
        for change in changes:
            # Runs of changes to one table with the same columns say nothing new (the changes
            # of one run share their lists: compared by identity first, at no cost).
            if (
                last is not None
                and change.old_key is None
                and change.table == last.table
                and change.schema == last.schema
                and (change.columns is last.columns or change.columns == last.columns)
                and (change.types is last.types or change.types == last.types)
            ):
                continue
            last = change
            target = self._naming.target(change.schema, change.table)
            shape = shapes.get(target)
            if shape is None:
                shape = shapes[target] = TableShape(target)
            shape.add(change)
        return shapes

    def needs_look(self, shapes: dict[TargetRef, TableShape]) -> bool:
        """Whether ``ensure`` has anything to read or change for these shapes (usually not:
        the tables are known and the columns the same as in the last batch)."""
        for shape in shapes.values():
            facts = self._facts.get(shape.target)
            if facts is None or facts.owner is None or self._refusal(shape) is not None:
                return True
            known = self._columns.get(shape.target)
            if known is None:
                return True
            for column, type_text in shape.columns.items():
                if known.get(column.lower()) != type_text:
                    return True
        return False

    def ensure(self, conn: Connection, shapes: dict[TargetRef, TableShape]) -> None:
        """Create missing tables, add missing columns, follow type changes; record which
        source table feeds each table. Tables that ``refuse`` will refuse are left alone."""
        for shape in shapes.values():
            facts = self._facts.get(shape.target)
            if facts is None or self._refusal(shape) is not None:
                # A refusal is confirmed against the target as it is now: after a fix (an
                # index dropped), the replayed dead letters go through.
                facts = self._facts[shape.target] = read_facts(conn, shape.target, self._database)
            found = self._refusal(shape)
            if found is not None and found.reason != "no_unique_key":
                # (galera_needs_key too: a table Galera cannot replicate is not created)
                continue  # a table that is not written is not changed either
            known = self._known(conn, shape.target)
            if known is not None and found is not None:
                if facts.uniques:
                    continue  # unique indexes, none of them the key: refused
                # A table without any unique index, and its source has a key now (added after
                # the table was filled, as pg_restore and pgbench do): the target follows.
                self._add_key(conn, shape, known)
                facts.uniques = {"PRIMARY": tuple(k.lower() for k in shape.key)}
            if known is not None:
                self._follow(conn, shape, known)
            elif shape.columns:  # a TRUNCATE alone says nothing about the columns
                self._create(conn, shape)
                key = tuple(k.lower() for k in shape.key)
                facts.uniques = {"PRIMARY": key} if key else {}
            else:
                continue
            if facts.owner is None and shape.sources:
                facts.owner = record_owner(conn, shape.target, self._database, shape.sources[0])

    def _follow(self, conn: Connection, shape: TableShape, known: dict[str, str | None]) -> None:
        for column, type_text in shape.columns.items():
            seen = column.lower()
            if seen not in known:
                self._add(conn, shape, column, type_text)
            elif known[seen] is None:
                self._record(conn, shape.target, column, type_text)
            elif known[seen] != type_text:
                self._modify(conn, shape, column, known[seen], type_text)
            known[seen] = type_text

    def refuse(self, shapes: dict[TargetRef, TableShape]) -> None:
        """TableRefused if any of these tables must not take the batch's changes (after
        ``ensure``, or when ``needs_look`` said there was nothing to look at)."""
        found: list[Refusal] = []
        for shape in shapes.values():
            if shape.columns:
                self._keys[shape.target] = shape.key
            found_here = self._refusal(shape)
            if found_here is None:
                for source in shape.sources:
                    self.refused.pop((shape.target, source), None)
                continue
            where = (shape.target, found_here.source)
            if self.refused.get(where) != found_here:
                log.error(
                    "table_refused table=%s source=%s reason=%s: %s",
                    shape.target,
                    found_here.source,
                    found_here.reason,
                    found_here.text,
                )
            self.refused[where] = found_here
            found.append(found_here)
        if found:
            raise TableRefused("; ".join(r.text for r in found))

    def _refusal(self, shape: TableShape) -> Refusal | None:
        key = shape.key if shape.columns else self._keys.get(shape.target)
        facts = self._facts.get(shape.target)
        return refusal(
            shape.target,
            shape.sources,
            key,
            facts,
            galera=self.galera,
            partitioned=self.partitioned,
        )

    def _known(self, conn: Connection, target: TargetRef) -> dict[str, str | None] | None:
        if target in self._columns:
            return self._columns[target]
        rows = conn.execute(
            sa.text(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = COALESCE(:db, DATABASE()) AND table_name = :t"
            ),
            {"db": target.database, "t": target.table},
        ).fetchall()
        if not rows:
            conn.commit()
            return None
        recorded = dict(
            conn.execute(
                sa.select(columns_table.c.col, columns_table.c.pg_type).where(
                    columns_table.c.db == (target.database or ""),
                    columns_table.c.tbl == target.table,
                )
            ).fetchall()
        )
        conn.commit()
        known: dict[str, str | None] = {str(r[0]).lower(): recorded.get(str(r[0])) for r in rows}
        self._columns[target] = known
        return known

    def _add_key(self, conn: Connection, shape: TableShape, known: dict[str, str | None]) -> None:
        columns = []
        for name in shape.key:
            type_text = shape.columns.get(name) or known.get(name.lower())
            if type_text is None:
                return  # not known: refused, never keyless upserts
            columns.append((name, column_type(type_text, True)))
        conn.execute(AddPrimaryKey(shape.target, columns))
        conn.commit()
        log.warning(
            "primary_key_added table=%s key=%s (the source table has one now)",
            shape.target,
            ",".join(shape.key),
        )

    def _record(self, conn: Connection, target: TargetRef, column: str, type_text: str) -> None:
        stmt = mysql.insert(columns_table).values(
            db=target.database or "", tbl=target.table, col=column, pg_type=type_text
        )
        conn.execute(stmt.on_duplicate_key_update(pg_type=stmt.inserted.pg_type))
        conn.commit()

    def _add(self, conn: Connection, shape: TableShape, column: str, type_text: str) -> None:
        # The row's other columns are unknown here: a long VARCHAR could overflow MariaDB's row
        # limit, so it is added as text.
        type_ = fit_row({column: column_type(type_text, False)}, set(), ROW_BUDGET // 8)
        conn.execute(AlterColumn(shape.target, column, type_[column], add=True))
        conn.commit()
        self._record(conn, shape.target, column, type_text)
        log.info("column_added table=%s column=%s type=%s", shape.target, column, type_text)

    def _modify(
        self, conn: Connection, shape: TableShape, column: str, before: str | None, after: str
    ) -> None:
        type_ = column_type(after, column in shape.key)
        conn.execute(AlterColumn(shape.target, column, type_, add=False))
        conn.commit()
        self._record(conn, shape.target, column, after)
        log.warning(
            "column_type_changed table=%s column=%s from=%s to=%s",
            shape.target,
            column,
            before,
            after,
        )

    def _create(self, conn: Connection, shape: TableShape) -> None:
        key = set(shape.key)
        types = fit_row(
            {name: column_type(t, name in key) for name, t in shape.columns.items()}, key
        )
        columns = [
            sa.Column(
                name,
                types[name],
                primary_key=name in key,
                nullable=name not in key,
                autoincrement=False,
            )
            for name in shape.columns
        ]
        table = sa.Table(
            shape.target.table,
            sa.MetaData(),
            *columns,
            schema=shape.target.database,
            mariadb_engine="InnoDB",
            mariadb_charset=CHARSET,
            mariadb_collate=COLLATION,
        )
        table.create(conn, checkfirst=True)
        conn.commit()
        for name, type_text in shape.columns.items():
            self._record(conn, shape.target, name, type_text)
        self._columns[shape.target] = {c.lower(): t for c, t in shape.columns.items()}
        log.info(
            "table_created table=%s columns=%d key=%s",
            shape.target,
            len(columns),
            ",".join(shape.key) or "-",
        )
