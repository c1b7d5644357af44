"""The chunks verify compares (ranges of a table's key) and the numbers each database gives
for one: its rows' count and checksum, computed where the rows are (applier/checksums.py
writes the SQL), so only two numbers per chunk travel.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from psycopg2 import sql
from psycopg2.extensions import connection as Connection
from sqlalchemy.dialects import mysql

from applier import checksums
from applier.checksums import Key, Name
from applier.verify_columns import TEXT, Column, compile_for_target, target_table
from shared.naming import TargetRef
from shared.tables import TableRef

NULL = "~"  # a NULL column in a row's canonical text


@dataclass
class Table:
    """A table to verify: the source's, its target, the columns compared, the key."""

    ref: TableRef
    target: TargetRef
    partitioned: bool
    columns: list[Column]
    key: list[Column]

    def named(self, names: Sequence[str]) -> list[Column]:
        by_name = {c.name: c for c in self.columns}
        return [by_name[n] for n in names]

    @property
    def source(self) -> sql.Composable:
        # ONLY: an inheritance parent's own rows; a partitioned table has none of its own.
        only = sql.SQL("") if self.partitioned else sql.SQL("ONLY ")
        return sql.Composed([only, Name(self.ref.schema, self.ref.table)])

    @property
    def chunkable(self) -> bool:
        return bool(self.key) and all(c.compared.ordered for c in self.key)

    @property
    def indexed(self) -> bool:
        """The key's order is its index's: each boundary is found by a short index scan."""
        return not any(c.kind == TEXT and (c.as_output or not c.c_ordered) for c in self.key)

    @property
    def floats(self) -> list[Column]:
        """The columns without a canonical text (floats), compared by value."""
        return [c for c in self.columns if c.compared.pg_text is None]


def chunks(
    pg: Connection, table: Table, chunk_rows: int
) -> Iterator[tuple[Key | None, Key | None]]:
    """(lo, hi] ranges of the key, the last one open; one open range without an order."""
    if not table.chunkable:
        yield None, None
        return
    lo: Key | None = None
    bounds = None if table.indexed else iter(_all_boundaries(pg, table, chunk_rows))
    while True:
        hi = _next_boundary(pg, table, lo, chunk_rows) if bounds is None else next(bounds, None)
        yield lo, hi
        if hi is None:
            return
        lo = hi


def _next_boundary(pg: Connection, table: Table, lo: Key | None, chunk_rows: int) -> Key | None:
    """The last key of the chunk after ``lo``; None if that chunk is the last one."""
    where, params = checksums.pg_range(table.key, lo, None)
    query = sql.SQL("SELECT {} FROM {}{} ORDER BY {} LIMIT 1 OFFSET %s").format(
        sql.SQL(", ").join(checksums.pg_key_text(c) for c in table.key),
        table.source,
        where,
        sql.SQL(", ").join(checksums.pg_order(c) for c in table.key),
    )
    rows = pg_all(pg, query, [*params, chunk_rows - 1])
    return tuple(rows[0]) if rows else None


def _all_boundaries(pg: Connection, table: Table, chunk_rows: int) -> list[Key]:
    """Every chunk's last key at once, in one sorted pass: the order (text as bytes) is
    not the one the key's index serves, so looking for each boundary would sort the
    table again each time."""
    query = sql.SQL(
        "SELECT {} FROM (SELECT {}, row_number() OVER (ORDER BY {}) AS n FROM {}) AS s"
        " WHERE n %% %s = 0 ORDER BY n"
    ).format(
        sql.SQL(", ").join(checksums.pg_key_text(c) for c in table.key),
        sql.SQL(", ").join(Name(c.name) for c in table.key),
        sql.SQL(", ").join(checksums.pg_order(c) for c in table.key),
        table.source,
    )
    return [tuple(r) for r in pg_all(pg, query, [chunk_rows])]


def source_sums(pg: Connection, table: Table, lo: Key | None, hi: Key | None) -> tuple[int, int]:
    """The rows of the chunk (lo, hi] in the source: their count and their checksum."""
    where, params = checksums.pg_range(table.key, lo, hi)
    pieces = [
        sql.SQL("COALESCE(length({e}) || ':' || {e}, {null})").format(
            e=expr, null=sql.Literal(NULL)
        )
        for expr in map(checksums.pg_canonical, table.columns)
        if expr is not None
    ]
    row_text = (
        sql.SQL("concat_ws(',', {})").format(sql.SQL(", ").join(pieces))
        if pieces
        else sql.Literal("")
    )
    query = sql.SQL(
        "SELECT count(*), COALESCE(sum(('x' || substr(md5({}), 1, 15))::bit(60)::bigint), 0)"
        " FROM {}{}"
    ).format(row_text, table.source, where)
    row = pg_one(pg, query, params)
    return int(row[0]), int(row[1])


def target_sums(maria: Any, table: Table, lo: Key | None, hi: Key | None) -> tuple[int, int]:
    """The same two numbers in the target (``maria``: a DB-API connection)."""
    t = target_table(table.target.table, [c.name for c in table.columns], table.target.database)
    # One collation for every piece: concat_ws refuses to mix a JSON column's utf8mb4_bin
    # with the other columns' utf8mb4_nopad_bin. The bytes, which MD5 reads, are the same.
    pieces = [
        sa.collate(
            sa.func.coalesce(sa.func.concat(sa.func.char_length(e), ":", e), NULL),
            "utf8mb4_bin",
        )
        for e in (checksums.target_canonical(t, c) for c in table.columns)
        if e is not None
    ]
    row_text = sa.func.concat_ws(",", *pieces) if pieces else sa.literal("")
    digest = sa.func.conv(sa.func.substring(sa.func.md5(row_text), 1, 15), 16, 10)
    stmt = sa.select(
        sa.func.count(),
        sa.func.coalesce(sa.func.sum(sa.cast(digest, mysql.BIGINT(unsigned=True))), 0),
    ).select_from(t)
    stmt = stmt.where(checksums.target_range(t, table.key, lo, hi))
    text, params = compile_for_target(stmt)
    cur = maria.cursor()
    try:
        cur.execute(text, params)
        count, total = cur.fetchone()
    finally:
        cur.close()
    return int(count), int(total)


# ------------------------------------------------------------ PostgreSQL


def pg_all(pg: Connection, query: sql.Composable, params: list[Any]) -> list[tuple[Any, ...]]:
    with pg.cursor() as cur:
        cur.execute(query, params)
        return cur.fetchall()


def pg_one(pg: Connection, query: sql.Composable, params: list[Any]) -> tuple[Any, ...]:
    rows = pg_all(pg, query, params)
    assert rows  # an aggregate always returns a row
    return tuple(rows[0])
