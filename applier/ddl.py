"""A schema change (a ``ddl`` change, from the DDL capture: sql/ddl-capture.sql) mirrored in
MariaDB, as a unit of its own, at its place in the stream.

MariaDB commits every DDL statement by itself, so the unit is: the DDL statements, each
committed, then one transaction with what must go with the checkpoint (the values of rows that
existed before an ADD COLUMN with a constant default, the record of OIDs and attnums in
``_cdc_relations``) and the checkpoint. Every step is decided against the target as it is when
it runs, so a unit cut short by a crash and delivered again finishes what is left and repeats
nothing: a rename whose new name is there is done, a column whose number is new is made anew.

What each change does (``old`` shapes come from ``_cdc_relations``: the OIDs and attnums the
previous change or copy of the table recorded):
- ``create``: a new, empty table: whatever the target holds under that name (a table kept
  after an earlier DROP) gives way;
- ``alter``: the table found by its OID (renamed if its name changed); columns matched by
  attnum: renamed, dropped (``target.dropped``: drop, or keep), added (filled with the value
  PostgreSQL gives the rows that existed before, through the applier's type conversion),
  changed in type, key changed; a column of the target whose name a new column takes gives way;
- ``drop``: the table dropped (``target.dropped`` = drop) or kept as it is.
A command that rewrote the table's rows (``recopy``) empties its target table first: a copy
later in the stream brings the rows, and MariaDB converting the old values its own way is
never seen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from applier import relations
from applier.ddl_sql import DdlSql
from applier.relations import Relation
from applier.schema import TableShape, TargetSchema, columns_table
from shared.envelope import Change
from shared.errors import DecodeError
from shared.naming import Naming, TargetRef
from shared.types import converter

log = logging.getLogger(__name__)

CREATE, ALTER, DROP = "create", "alter", "drop"


@dataclass(frozen=True)
class NewColumn:
    attnum: int
    name: str
    type: str
    missing: Any  # what the rows that existed before the command hold (None: nothing filled)


@dataclass(frozen=True)
class SchemaChange:
    target: TargetRef
    action: str
    relid: int
    columns: tuple[NewColumn, ...]
    key: tuple[str, ...]
    recopy: bool
    change: Change


def parse(change: Change, naming: Naming) -> SchemaChange:
    """The ddl change, checked; DecodeError if it is malformed."""
    d = change.ddl or {}
    try:
        action = str(d["action"])
        attnums = [int(n) for n in d.get("attnums", ())]
        if action not in (CREATE, ALTER, DROP) or len(attnums) != len(change.columns):
            raise ValueError("unknown action, or attnums and columns differ in length")
        return SchemaChange(
            target=naming.target(change.schema, change.table),
            action=action,
            relid=int(d["relid"]),
            columns=tuple(
                NewColumn(n, name, type_, value)
                for n, name, type_, value in zip(
                    attnums, change.columns, change.types, change.values, strict=True
                )
            ),
            key=tuple(change.key),
            recopy=bool(d.get("recopy", False)),
            change=change,
        )
    except (KeyError, TypeError, ValueError) as e:
        raise DecodeError(f"malformed ddl change: {e}") from e


@dataclass
class ColumnSteps:
    """What to do to the target's columns, in this order."""

    drop: list[str] = field(default_factory=list)  # target columns
    rename: list[tuple[str, str]] = field(default_factory=list)
    added: list[NewColumn] = field(default_factory=list)
    unmatched: tuple[list[str], list[str]] | None = None  # (gone?, new?) without attnums


def column_steps(
    change: SchemaChange, old: dict[int, str] | None, present: dict[str, str], drop: bool
) -> ColumnSteps:
    """Compare the change's columns with the previous shape (``old``: attnum -> target column;
    None if unknown) and the target's columns as they are (``present``: lower-cased name ->
    name; MariaDB's column names ignore case). ``drop``: dropped columns leave the target."""
    steps = ColumnSteps()
    taken = {c.name.lower() for c in change.columns}
    if old is None:
        # Nothing says which column is which: by name. A column that went and one that came
        # may be one renamed column: neither dropped nor filled from the other.
        steps.added = [c for c in change.columns if c.name.lower() not in present]
        gone = [name for low, name in present.items() if low not in taken]
        if steps.added and gone:
            steps.unmatched = (gone, [c.name for c in steps.added])
        return steps
    now = {c.attnum: c for c in change.columns}
    freed: set[str] = set()  # names a rename takes away
    for attnum, name in sorted(old.items()):
        new = now.get(attnum)
        if new is None:
            if drop and name.lower() not in taken:
                steps.drop.append(present.get(name.lower(), name))
        elif new.name != name and name.lower() in present:
            if new.name.lower() in present and new.name.lower() != name.lower():
                # A column kept after a DROP, by that name: it gives way.
                steps.drop.append(present[new.name.lower()])
            steps.rename.append((present[name.lower()], new.name))
            freed.add(name.lower())
    for c in change.columns:
        if c.attnum in old:
            continue
        low = c.name.lower()
        if low in present and low not in freed:
            # A number never seen: a new column. What the target holds by that name (a column
            # dropped from the source and kept, or this very column made by a unit cut short)
            # gives way, so it starts as the source's does.
            steps.drop.append(present[low])
        steps.added.append(c)
    steps.drop = [d for d in dict.fromkeys(steps.drop) if d.lower() in present]
    return steps


class SchemaChanges:
    def __init__(self, naming: Naming, schema: TargetSchema, dropped: str) -> None:
        self._naming = naming
        self._schema = schema
        self._drop = dropped == "drop"
        self._sql: DdlSql | None = None

    def run(self, conn: Connection, change: Change) -> Callable[[Connection], None]:
        """The DDL statements (each commits by itself); returns what must be done inside the
        transaction that moves the checkpoint past the change."""
        if self._sql is None:
            self._sql = DdlSql(conn.dialect)
        ch = parse(change, self._naming)
        try:
            if ch.action == DROP:
                return self._dropped(conn, ch)
            return self._changed(conn, ch)
        finally:
            # Columns and tables changed behind the cache's back: read them again.
            self._schema.forget()

    # ------------------------------------------------------------ actions

    def _dropped(self, conn: Connection, ch: SchemaChange) -> Callable[[Connection], None]:
        if self._drop:
            self._execute(conn, self._s.drop_table(ch.target))
            self._forget_types(conn, ch.target)
            log.info("table_dropped table=%s", ch.target)
        else:
            log.info("table_kept table=%s (dropped in the source; target.dropped=keep)", ch.target)

        def finish(tx: Connection) -> None:
            for rel in [*relations.of_relid(tx, ch.relid), relations.of_target(tx, ch.target)]:
                if rel is not None:
                    relations.forget(tx, rel.target)

        return finish

    def _changed(self, conn: Connection, ch: SchemaChange) -> Callable[[Connection], None]:
        target = ch.target
        if ch.action == CREATE:
            # A new table holds no row: what the target has by that name goes.
            self._execute(conn, self._s.drop_table(target))
            self._forget_types(conn, target)
            old: dict[int, str] | None = {}
        else:
            old = self._follow(conn, ch)
        present = self._present(conn, target)
        if present and ch.recopy:
            # Rewritten rows: the copy that follows brings them.
            conn.execute(sa.delete(sa.table(target.table, schema=target.database)))
            conn.commit()
            log.warning(
                "table_emptied table=%s: PostgreSQL rewrote its rows; the copy that follows in "
                "the stream refills it",
                target,
            )
        steps = column_steps(ch, old if present else {}, present, self._drop)
        if steps.unmatched is not None:
            gone, new = steps.unmatched
            log.error(
                "schema_change_unmatched table=%s gone=%s new=%s: the target has no record of "
                "which source column is which (a table copied by an older version, or never "
                "copied); the new columns are added empty and the others kept; fix: python -m "
                "extractor backfill %s.%s",
                target,
                ",".join(gone),
                ",".join(new),
                ch.change.schema,
                ch.change.table,
            )
        self._alter_columns(conn, target, steps)
        shape = TableShape(target)
        shape.add(ch.change)
        self._schema.ensure(conn, {target: shape})
        self._follow_key(conn, ch)
        fills = (
            [] if ch.recopy or not present else [c for c in steps.added if c.missing is not None]
        )

        def finish(tx: Connection) -> None:
            for c in fills:
                self._fill(tx, target, c)
            relations.record(tx, target, ch.relid, {c.attnum: c.name for c in ch.columns})

        return finish

    # ------------------------------------------------------------ tables

    def _follow(self, conn: Connection, ch: SchemaChange) -> dict[int, str] | None:
        """The table's previous columns by attnum; renamed to its new name first if the OID
        was recorded under another."""
        target = ch.target
        here = relations.of_target(conn, target)
        others = [r for r in relations.of_relid(conn, ch.relid) if r.target != target]
        conn.commit()
        if here is not None and here.relid == ch.relid:
            return here.attnums
        moved: Relation | None = others[0] if others else None
        if moved is not None and self._exists(conn, moved.target):
            # What the new name holds (a table kept after a DROP, or left by a source table
            # renamed away) gives way.
            self._execute(conn, self._s.drop_table(target))
            self._execute(conn, self._s.rename_table(moved.target, target))
            self._move_types(conn, moved.target, target)
            log.info("table_renamed table=%s from=%s", target, moved.target)
        if moved is not None:
            relations.forget(conn, moved.target)
            relations.record(conn, target, ch.relid, moved.attnums)
            conn.commit()
            return moved.attnums
        if here is not None:
            log.error(
                "schema_change_other_table table=%s: the target table was made from another "
                "source table (OID %d, now %d): columns are matched by name",
                target,
                here.relid,
                ch.relid,
            )
        return None

    def _present(self, conn: Connection, target: TargetRef) -> dict[str, str]:
        rows = conn.execute(
            sa.text(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_schema = COALESCE(:db, DATABASE()) AND table_name = :t"
                " ORDER BY ordinal_position"
            ),
            {"db": target.database, "t": target.table},
        ).fetchall()
        conn.commit()
        return {str(r[0]).lower(): str(r[0]) for r in rows}

    def _exists(self, conn: Connection, target: TargetRef) -> bool:
        return bool(self._present(conn, target))

    def _column_types(
        self, conn: Connection, target: TargetRef, columns: list[str]
    ) -> list[tuple[str, str]]:
        """(name, MariaDB column type as SHOW COLUMNS says it) of these target columns."""
        if not columns:
            return []
        rows = conn.execute(
            sa.text(
                "SELECT column_name, column_type FROM information_schema.columns"
                " WHERE table_schema = COALESCE(:db, DATABASE()) AND table_name = :t"
            ),
            {"db": target.database, "t": target.table},
        ).fetchall()
        conn.commit()
        wanted = {c.lower() for c in columns}
        return [(str(n), str(t)) for n, t in rows if str(n).lower() in wanted]

    # ------------------------------------------------------------ columns

    def _alter_columns(self, conn: Connection, target: TargetRef, steps: ColumnSteps) -> None:
        if steps.drop:
            self._execute(conn, self._s.drop_columns(target, steps.drop))
            self._forget_types(conn, target, steps.drop)
            log.info("columns_dropped table=%s columns=%s", target, ",".join(steps.drop))
        for old, new in steps.rename:
            self._execute(conn, self._s.rename_column(target, old, new))
            self._forget_types(conn, target, [old, new])
            log.info("column_renamed table=%s from=%s to=%s", target, old, new)

    def _fill(self, tx: Connection, target: TargetRef, column: NewColumn) -> None:
        """The rows that existed before the column was added hold PostgreSQL's value for them
        (a constant default), bound through the applier's conversion of that type."""
        conv = converter(column.type)
        value = conv(column.missing) if conv is not None else column.missing
        tx.exec_driver_sql(self._s.fill(target, column.name), (value,))
        log.info("column_filled table=%s column=%s", target, column.name)

    def _follow_key(self, conn: Connection, ch: SchemaChange) -> None:
        """The target's primary key made the source's, where it changed."""
        rows = conn.execute(
            sa.text(
                "SELECT column_name FROM information_schema.statistics"
                " WHERE table_schema = COALESCE(:db, DATABASE()) AND table_name = :t"
                " AND index_name = 'PRIMARY' ORDER BY seq_in_index"
            ),
            {"db": ch.target.database, "t": ch.target.table},
        ).fetchall()
        conn.commit()
        have = [str(r[0]) for r in rows]
        want = list(ch.key)
        if [h.lower() for h in have] == [k.lower() for k in want]:
            return
        types = {c.name: c.type for c in ch.columns}
        wanted = {k.lower() for k in want}
        # Out of the key, a column may be NULL again, as in the source (or, kept after a
        # DROP, for the rows that come without it).
        released = [
            (k, t) for k, t in self._column_types(conn, ch.target, have) if k.lower() not in wanted
        ]
        statement = self._s.primary_key(ch.target, have, [(k, types[k]) for k in want], released)
        self._execute(conn, statement)
        log.warning(
            "primary_key_changed table=%s from=%s to=%s", ch.target, ",".join(have) or "-",
            ",".join(want) or "-",
        )  # fmt: skip

    # ------------------------------------------------------------ _cdc_columns

    def _forget_types(
        self, conn: Connection, target: TargetRef, columns: list[str] | None = None
    ) -> None:
        """The PostgreSQL types recorded for these columns (all: None) are forgotten; the
        schema module records them again from the change."""
        c = columns_table.c
        where = [c.db == (target.database or ""), c.tbl == target.table]
        if columns is not None:
            where.append(c.col.in_(columns))
        conn.execute(sa.delete(columns_table).where(*where))
        conn.commit()

    def _move_types(self, conn: Connection, old: TargetRef, new: TargetRef) -> None:
        self._forget_types(conn, new)
        c = columns_table.c
        conn.execute(
            sa.update(columns_table)
            .where(c.db == (old.database or ""), c.tbl == old.table)
            .values(db=new.database or "", tbl=new.table)
        )
        conn.commit()

    # ------------------------------------------------------------ SQL

    @property
    def _s(self) -> DdlSql:
        assert self._sql is not None
        return self._sql

    def _execute(self, conn: Connection, statement: str) -> None:
        conn.exec_driver_sql(statement)
        conn.commit()
