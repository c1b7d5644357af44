"""What ``applier verify`` compares, column by column, and how.

The source side comes from PostgreSQL's catalog, not from information_schema (which hides the
columns of a table the role may not read): each column's base type (domains resolved, however
deep), the primary key in the order of its index, and whether the table is partitioned (read
as a whole) or a plain table (read without its inheritance children, which are tables of their
own). The target side comes from MariaDB: whether the table exists (a table the user may not
read is not "missing") and how each column stores its values.

From both, each column gets the kind its values are compared as: its PostgreSQL type when the
target column holds the type docs/types.md maps it to, TEXT when the target holds PostgreSQL's
text of the value (a domain the applier stored as text, a column widened to text by hand), and
no kind when verify has no exact comparison for the pair (the table is then not verified). How
each kind is compared is the type registry's (shared/types/comparison.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects.mysql.mariadbconnector import MySQLDialect_mariadbconnector
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler

from applier.upsert import driver_safe
from shared.naming import TargetRef
from shared.tables import TableRef
from shared.types import TEXT_STORAGE, Comparison, comparison

# The kind of a column whose target holds PostgreSQL's text of the value.
TEXT = "text"
# MariaDB error numbers of a probe: table or database unknown; the user may not look.
_ABSENT = {1146, 1049}


@dataclass(frozen=True)
class Column:
    """A compared column: its source type and the kind both sides are read as."""

    name: str
    pg_type: str  # the base type, as format_type names it (without typmod)
    kind: str  # pg_type, or TEXT
    c_ordered: bool = False  # PostgreSQL already orders its text by bytes (C, POSIX)
    target_collation: str | None = None

    @property
    def compared(self) -> Comparison:
        return comparison(self.kind)

    @property
    def as_output(self) -> bool:
        """Read in PostgreSQL through the type's output function: the text the extractor sends
        (a cast to text differs for some types: true, not t; char(n) without its padding)."""
        return self.kind == TEXT and comparison(self.pg_type) is not comparison(TEXT)


@dataclass(frozen=True)
class SourceTable:
    ref: TableRef
    oid: int
    relkind: str  # r: plain table, p: partitioned, other: not a table
    partition_of: TableRef | None
    names: list[str]
    pg_types: list[str]
    c_ordered: list[bool]  # text whose collation already orders by bytes (C, POSIX)
    key: list[str]


@dataclass(frozen=True)
class Storage:
    data_type: str  # MariaDB's DATA_TYPE, "json" for a JSON column
    collation: str | None


# A domain's base type, however many domains deep, as format_type names it (an array of a domain
# keeps its element's name: every array is compared alike).
_SOURCE_COLUMNS = """
WITH RECURSIVE base(attnum, typid) AS (
    SELECT attnum, atttypid FROM pg_attribute
    WHERE attrelid = %(oid)s AND attnum > 0 AND NOT attisdropped
  UNION ALL
    SELECT b.attnum, t.typbasetype FROM base b JOIN pg_type t ON t.oid = b.typid
    WHERE t.typtype = 'd'
)
SELECT a.attname,
       format_type(t.oid, NULL),
       COALESCE(coll.collname IN ('C', 'POSIX')
                OR (coll.collname = 'default' AND db.datcollate IN ('C', 'POSIX')), false)
FROM pg_attribute a
JOIN base b ON b.attnum = a.attnum
JOIN pg_type t ON t.oid = b.typid AND t.typtype <> 'd'
LEFT JOIN pg_collation coll ON coll.oid = a.attcollation
JOIN pg_database db ON db.datname = current_database()
WHERE a.attrelid = %(oid)s
ORDER BY a.attnum
"""
_SOURCE_KEY = """
SELECT a.attname FROM pg_index i
CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, n)
JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indrelid = %(oid)s AND i.indisprimary
ORDER BY k.n
"""
_SOURCE_RELATION = """
SELECT c.oid, c.relkind, c.relispartition, rn.nspname, r.relname
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class r ON c.relispartition AND r.oid = pg_partition_root(c.oid)
LEFT JOIN pg_namespace rn ON rn.oid = r.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(table)s
"""


def source_table(pg: Any, ref: TableRef) -> SourceTable | None:
    """The table as the source's catalog describes it; None if there is no such relation."""
    with pg.cursor() as cur:
        cur.execute(_SOURCE_RELATION, {"schema": ref.schema, "table": ref.table})
        row = cur.fetchone()
        if row is None:
            return None
        oid, relkind, is_partition, root_schema, root_table = row
        cur.execute(_SOURCE_COLUMNS, {"oid": oid})
        columns = cur.fetchall()
        cur.execute(_SOURCE_KEY, {"oid": oid})
        key = [r[0] for r in cur.fetchall()]
    root = TableRef(root_schema, root_table) if is_partition and root_table else None
    return SourceTable(
        ref,
        int(oid),
        str(relkind),
        root,
        [c[0] for c in columns],
        [c[1] for c in columns],
        [bool(c[2]) for c in columns],
        key,
    )


def target_storage(maria: Any, target: TargetRef) -> dict[str, Storage] | None:
    """Each column of the target table (lower-cased: MariaDB ignores their case) and how it
    stores values; None if the table (or its database) does not exist. A table the user may
    not read raises, whether it exists or not: MariaDB does not say."""
    probe = sa.select(sa.literal(1)).select_from(target_table(target.table, [], target.database))
    text, params = compile_for_target(probe.where(sa.false()))
    cur = maria.cursor()
    try:
        try:
            cur.execute(text, params)
            cur.fetchall()
        except Exception as e:  # the driver's own error class; anything else is re-raised
            if getattr(e, "errno", None) in _ABSENT:
                return None
            raise
        cur.execute(
            "SELECT COLUMN_NAME, DATA_TYPE, COLLATION_NAME FROM information_schema.COLUMNS"
            " WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
            (target.database, target.table),
        )
        columns = cur.fetchall()
        # A JSON column is a LONGTEXT with a json_valid check named after it.
        cur.execute(
            "SELECT CONSTRAINT_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS"
            " WHERE CONSTRAINT_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?",
            (target.database, target.table),
        )
        json_columns = {
            str(name).lower()
            for name, clause in cur.fetchall()
            if str(clause) == "json_valid(`" + str(name).replace("`", "``") + "`)"
        }
    finally:
        cur.close()
    return {
        str(name).lower(): Storage(
            "json" if str(name).lower() in json_columns else str(data_type).lower(),
            None if collation is None else str(collation),
        )
        for name, data_type, collation in columns
    }


def kind_of(pg_type: str, storage: Storage) -> str | None:
    """What a column's values are compared as, given how the target stores them; None if
    verify has no exact comparison for the pair."""
    if storage.data_type in comparison(pg_type).storage:
        return pg_type
    if storage.data_type in TEXT_STORAGE:
        # What the applier binds for a type it does not map is PostgreSQL's text of the value.
        return TEXT
    return None


def columns(
    source: SourceTable, target: dict[str, Storage], names: Sequence[str]
) -> tuple[list[Column], list[str]]:
    """The compared columns (``names`` of the source's), and a reason for each column verify
    cannot compare. A column the target lacks keeps its PostgreSQL type."""
    out: list[Column] = []
    problems: list[str] = []
    for name in names:
        i = source.names.index(name)
        pg_type = source.pg_types[i]
        storage = target.get(name.lower())
        kind = pg_type if storage is None else kind_of(pg_type, storage)
        if kind is None:
            assert storage is not None
            problems.append(
                f"column {name} is {storage.data_type} in the target, which verify cannot "
                f"compare with {pg_type} exactly"
            )
            kind = pg_type
        out.append(
            Column(
                name,
                pg_type,
                kind,
                c_ordered=source.c_ordered[i],
                target_collation=None if storage is None else storage.collation,
            )
        )
    return out, problems


# ---------------------------------------------------------------- MariaDB statements


def target_table(name: str, columns: Sequence[str], database: str | None = None) -> sa.TableClause:
    return sa.table(name, *(sa.column(c) for c in columns), schema=database)


def compile_for_target(stmt: sa.sql.ClauseElement) -> tuple[str, tuple[Any, ...]]:
    """SQL text and positional parameters for MariaDB Connector/Python: names quoted by the
    dialect (and safe from the connector's placeholder parser), every value a parameter."""
    compiled = cast(SQLCompiler, stmt.compile(dialect=_target_dialect()))
    names = compiled.positiontup or []
    return str(compiled), tuple(compiled.params[n] for n in names)


@lru_cache(maxsize=1)
def _target_dialect() -> Dialect:
    return driver_safe(MySQLDialect_mariadbconnector())
