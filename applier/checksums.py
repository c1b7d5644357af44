"""The SQL that verify runs in each database, per kind of column (applier/verify_columns.py):
a row's canonical text (each value's is the type registry's, shared/types/comparison.py: the
same text in PostgreSQL and in MariaDB for the same value, none for floats, compared by value
instead), the order a primary key is cut in, and ranges of that key spelt for each database.

Both databases must put keys in the same order for one range to hold the same rows on both
sides. Numbers, dates, times, booleans and bytes agree by value. Text agrees as bytes (code
points): ``COLLATE "C"`` in PostgreSQL, whose index on a column of another collation cannot
serve that order (each chunk of such a key is then a scan of the table), and
utf8mb4_nopad_bin in MariaDB (the applier's collation; a column of another is read in that
one). A key value the target cannot hold (a date after 9999, infinity, NaN) comes before or
after every value it can, as in PostgreSQL. Keys travel as PostgreSQL's text of each value:
PostgreSQL reads that text back exactly, and MariaDB gets the value its column stores."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from psycopg2 import sql
from sqlalchemy.dialects import mysql

from applier.verify_columns import TEXT, Column
from shared.types import Edge
from shared.types.comparison import output_text

NOPAD_BIN = "utf8mb4_nopad_bin"

Key = tuple[str, ...]  # PostgreSQL's text of each key value


class Name(sql.Composable):
    """A quoted PostgreSQL name that survives psycopg2's parameter interpolation: a ``%`` in it
    is doubled, so every statement built with it is executed with parameters (maybe none)."""

    def __init__(self, *parts: str) -> None:
        super().__init__(parts)
        self._name = sql.Identifier(*parts)

    def as_string(self, context: Any) -> str:
        return self._name.as_string(context).replace("%", "%%")


# ---------------------------------------------------------------- canonical text


def pg_value(col: Column) -> sql.Composable:
    """The column as compared: itself, or the text the extractor sends for it."""
    c = Name(col.name)
    return output_text(c) if col.as_output else c


def pg_canonical(col: Column) -> sql.Composable | None:
    text = col.compared.pg_text
    return None if text is None else text(pg_value(col))


def target_canonical(t: sa.TableClause, col: Column) -> Any:
    text = col.compared.target_text
    return None if text is None else text(t.c[col.name])


# ---------------------------------------------------------------- key order and ranges


def pg_order(col: Column) -> sql.Composable:
    """The key column in the order MariaDB shares."""
    value = pg_value(col)
    if col.kind == TEXT and (col.as_output or not col.c_ordered):
        return sql.SQL('{} COLLATE "C"').format(value)
    return value


def pg_key_text(col: Column) -> sql.Composable:
    """A key value as PostgreSQL's text (a key is never NULL)."""
    return sql.SQL("concat({})").format(Name(col.name))


def pg_range(
    key: Sequence[Column], lo: Key | None, hi: Key | None, keyword: bool = True
) -> tuple[sql.Composable, list[Any]]:
    """`` WHERE (key) > (lo) AND (key) <= (hi)`` (either side may be open). The values are
    text that PostgreSQL reads as the column's type (or compares as text, for text keys)."""
    keys = sql.SQL(", ").join(pg_order(c) for c in key)
    marks = sql.SQL(", ").join(sql.Placeholder() * len(key))
    parts: list[sql.Composable] = []
    params: list[Any] = []
    if lo is not None:
        parts.append(sql.SQL("({}) > ({})").format(keys, marks))
        params += lo
    if hi is not None:
        parts.append(sql.SQL("({}) <= ({})").format(keys, marks))
        params += hi
    if not parts:
        return (sql.SQL("") if keyword else sql.SQL("TRUE")), []
    cond = sql.SQL(" AND ").join(parts)
    return (sql.SQL(" WHERE {}").format(cond) if keyword else cond), params


def target_range(
    t: sa.TableClause, key: Sequence[Column], lo: Key | None, hi: Key | None
) -> sa.ColumnElement[bool]:
    """The same range in MariaDB, spelt out (a > x OR (a = x AND b > y)) so that its range
    optimizer uses the primary key; key values as the target column holds them."""
    cols = [target_order(t, c) for c in key]
    conds = []
    if lo is not None:
        conds.append(_after(cols, [target_value(v, c) for v, c in zip(lo, key, strict=True)]))
    if hi is not None:
        later = _after(cols, [target_value(v, c) for v, c in zip(hi, key, strict=True)])
        conds.append(sa.not_(later))
    return sa.and_(sa.true(), *conds)


def target_order(t: sa.TableClause, col: Column) -> Any:
    c = t.c[col.name]
    if col.kind == TEXT and col.target_collation != NOPAD_BIN:
        return sa.collate(sa.cast(c, mysql.CHAR(charset="utf8mb4")), NOPAD_BIN)
    return c


def _after(cols: list[Any], values: list[Any]) -> sa.ColumnElement[bool]:
    """(cols) > (values), lexicographically."""
    options = []
    for i, col in enumerate(cols):
        equal = [_equal(cols[j], values[j]) for j in range(i)]
        options.append(sa.and_(*equal, _greater(col, values[i])))
    return sa.or_(*options)


def _greater(col: Any, value: Any) -> Any:
    if value is Edge.BELOW:
        return sa.true()
    if value is Edge.ABOVE:
        return sa.false()
    return col > value


def _equal(col: Any, value: Any) -> Any:
    return sa.false() if isinstance(value, Edge) else col == value


def target_value(text: str, col: Column) -> Any:
    """PostgreSQL's text of a key value as the target column holds it, or the Edge of what it
    cannot hold."""
    return col.compared.key_value(text)
