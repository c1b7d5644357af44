"""Read a table from PostgreSQL and its copy from MariaDB as comparable Python values.

Used by ``python -m applier verify`` (for the rows of a chunk whose checksums differ), the
demo and the tests.
Each column is read and made comparable by its kind's comparison in the type registry
(shared/types/comparison.py, which says how, type by type), the rules looked up once per
column, not per value.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from psycopg2 import sql

from applier import verify_columns
from applier.checksums import Name, pg_value
from applier.verify_columns import Column, compile_for_target, target_table
from shared.naming import TargetRef
from shared.tables import TableRef
from shared.types import comparison

Row = tuple[Any, ...]

# The extractor's session settings: PostgreSQL's text of a value is the text it sends.
_SESSION = (
    "SET DateStyle = ISO; SET TimeZone = 'UTC'; SET IntervalStyle = postgres;"
    " SET extra_float_digits = 3; SET bytea_output = hex"
)


@dataclass
class Difference:
    missing: list[Row]  # in the source, not in the target
    extra: list[Row]  # in the target, not in the source
    different: list[tuple[Row, Row]]  # same key, other values

    @property
    def equal(self) -> bool:
        return not (self.missing or self.extra or self.different)

    def summary(self) -> str:
        return (
            f"{len(self.missing)} missing, {len(self.extra)} extra, {len(self.different)} different"
        )


def _norm(value: Any, kind: str) -> Any:
    """A value of a column compared as ``kind`` (a type, or TEXT), made comparable."""
    return None if value is None else comparison(kind).norm(value)


def _normalizer(kinds: list[str]) -> Callable[[Row], Row]:
    """Rows made comparable, each column by its kind: the rules looked up once, not per value."""
    norms = [comparison(k).norm for k in kinds]
    return lambda row: tuple(
        None if v is None else norm(v) for v, norm in zip(row, norms, strict=True)
    )


def source_columns(pg: Any, schema: str, table: str) -> tuple[list[str], list[str], list[str]]:
    """Column names, (base) data types and primary key columns of a source table."""
    found = verify_columns.source_table(pg, TableRef(schema, table))
    if found is None:
        return [], [], []
    return found.names, found.pg_types, found.key


def read_source(
    pg: Any,
    schema: str,
    table: str,
    *,
    where: sql.Composable | None = None,
    params: tuple[Any, ...] = (),
    columns: tuple[list[str], list[str]] | list[Column] | None = None,
    partitioned: bool | None = None,
) -> tuple[list[str], list[str], list[Row]]:
    """Column names, kinds, and every row normalized (those matching ``where``; only
    ``columns``, if given). A partitioned table is read whole; another without the rows of
    its inheritance children, which are tables of their own."""
    found = None
    if columns is None or partitioned is None:
        found = verify_columns.source_table(pg, TableRef(schema, table))
    if columns is None:
        names, types = (found.names, found.pg_types) if found else ([], [])
        cols = [Column(n, t, t) for n, t in zip(names, types, strict=True)]
    elif isinstance(columns, tuple):
        cols = [Column(n, t, t) for n, t in zip(*columns, strict=True)]
    else:
        cols = list(columns)
    if partitioned is None:
        partitioned = found is not None and found.relkind == "p"
    query = sql.SQL("SELECT {} FROM {}{}").format(
        sql.SQL(", ").join(_select(c) for c in cols) if cols else sql.SQL("1"),
        sql.SQL("") if partitioned else sql.SQL("ONLY "),
        Name(schema, table),
    )
    if where is not None:
        query = sql.SQL("{} WHERE {}").format(query, where)
    kinds = [c.kind for c in cols]
    with pg.cursor() as cur:
        cur.execute(_SESSION)
        cur.execute(query, params)
        rows = cur.fetchall()
    norm = _normalizer(kinds)
    return [c.name for c in cols], kinds, [norm(r) for r in rows] if cols else []


def _select(col: Column) -> sql.Composable:
    return col.compared.pg_read(pg_value(col))


def read_target(
    maria: Any,
    target: str,
    names: list[str],
    types: list[str],
    target_db: str | None = None,
    *,
    where: Callable[[sa.TableClause], sa.ColumnElement[bool]] | None = None,
) -> list[Row]:
    """The target table's rows normalized like the source's (those ``where`` selects);
    ``types`` are the kinds the columns are compared as."""
    t = target_table(target, names, target_db)
    columns = [comparison(kind).target_read(t.c[n]) for n, kind in zip(names, types, strict=True)]
    stmt = sa.select(*columns) if columns else sa.select(sa.literal(1)).select_from(t)
    if where is not None:
        stmt = stmt.where(where(t))
    text, params = compile_for_target(stmt)
    cur = maria.cursor()
    try:
        cur.execute(text, params)
        rows = cur.fetchall()
    finally:
        cur.close()
    if not names:
        return []
    norm = _normalizer(types)
    return [norm(r) for r in rows]


def compare_rows(source: list[Row], target: list[Row], key_index: list[int]) -> Difference:
    """By primary key when there is one; as multisets of whole rows when there is none, so a
    row applied twice shows up as extra."""
    if not key_index:
        src, dst = Counter(source), Counter(target)
        missing = list((src - dst).elements())
        extra = list((dst - src).elements())
        return Difference(sorted(missing, key=repr), sorted(extra, key=repr), [])
    by_src = {tuple(r[i] for i in key_index): r for r in source}
    by_dst: dict[Row, Row] = {}
    doubled = []  # a key the target holds twice (a target table without the primary key)
    for r in target:
        k = tuple(r[i] for i in key_index)
        if k in by_dst:
            doubled.append(r)
        else:
            by_dst[k] = r
    missing = [by_src[k] for k in by_src.keys() - by_dst.keys()]
    extra = [by_dst[k] for k in by_dst.keys() - by_src.keys()] + doubled
    different = [
        (by_src[k], by_dst[k]) for k in by_src.keys() & by_dst.keys() if by_src[k] != by_dst[k]
    ]
    return Difference(sorted(missing, key=repr), sorted(extra, key=repr), different)


def compare_table(
    pg: Any,
    maria: Any,
    schema: str,
    table: str,
    target_table: str,
    *,
    target_db: str | None = None,
) -> Difference:
    """A whole table and its copy, each column compared by how the target stores it."""
    found = verify_columns.source_table(pg, TableRef(schema, table))
    if found is None:
        return Difference([], [], [])
    target = TargetRef(target_db, target_table)
    storage = verify_columns.target_storage(maria, target)
    cols, _ = verify_columns.columns(found, storage or {}, found.names)
    _, kinds, source = read_source(
        pg, schema, table, columns=cols, partitioned=found.relkind == "p"
    )
    rows = (
        [] if storage is None else read_target(maria, target_table, found.names, kinds, target_db)
    )
    return compare_rows(source, rows, [found.names.index(k) for k in found.key])
