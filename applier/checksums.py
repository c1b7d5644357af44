"""The SQL that verify runs in each database, per kind of column (applier/verify_columns.py):
a value's canonical text (the same text in PostgreSQL and in MariaDB for the same value), the
order a primary key is cut in, and ranges of that key spelt for each database.

Floats have no common text (PostgreSQL prints 1e-05 where MariaDB prints 0.00001): ``None``,
compared by value instead.

Both databases must put keys in the same order for one range to hold the same rows on both
sides. Numbers, dates, times, booleans and bytes agree by value. Text agrees as bytes (code
points): ``COLLATE "C"`` in PostgreSQL, whose index on a column of another collation cannot
serve that order (each chunk of such a key is then a scan of the table), and
utf8mb4_nopad_bin in MariaDB (the applier's collation; a column of another is read in that
one). A key value the target cannot hold (a date after 9999, infinity, NaN) comes before or
after every value it can, as in PostgreSQL. Keys travel as PostgreSQL's text of each value:
PostgreSQL reads that text back exactly, and MariaDB gets the value its column stores.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from psycopg2 import sql
from sqlalchemy.dialects import mysql

from applier.verify_columns import TEXT, Column

FLOATS = ("real", "double precision")
INTEGERS = ("smallint", "integer", "bigint", "oid")
TEMPORAL = ("date", "timestamp without time zone", "timestamp with time zone")
# Kinds whose order both databases share: a key of these is cut into ranges; any other key
# makes its table one chunk.
ORDERED = {*INTEGERS, *FLOATS, *TEMPORAL, "numeric", "boolean", "time without time zone",
           "bytea", TEXT}  # fmt: skip
NOPAD_BIN = "utf8mb4_nopad_bin"

Key = tuple[str, ...]  # PostgreSQL's text of each key value


class Edge(enum.Enum):
    """A key value no target column holds: before, or after, every value it can hold."""

    BELOW = "below"
    ABOVE = "above"


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
    if col.as_output:
        # concat() goes through the type's output function; it turns NULL into ''.
        return sql.SQL("CASE WHEN {c} IS NOT NULL THEN concat({c}) END").format(c=c)
    return c


def pg_canonical(col: Column) -> sql.Composable | None:
    c, kind = pg_value(col), col.kind
    if kind in FLOATS:
        return None
    if kind == "numeric":
        return sql.SQL("trim_scale({})::text").format(c)
    if kind == "boolean":
        return sql.SQL("CASE WHEN {c} THEN '1' WHEN NOT {c} THEN '0' END").format(c=c)
    if kind == "bytea":
        return sql.SQL("encode({}, 'hex')").format(c)
    if kind == "date":
        return sql.SQL("to_char({}, 'YYYY-MM-DD')").format(c)
    if kind == "timestamp without time zone":
        return sql.SQL("to_char({}, 'YYYY-MM-DD HH24:MI:SS.US')").format(c)
    if kind == "timestamp with time zone":
        return sql.SQL("to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')").format(c)
    if kind == "time without time zone":
        return sql.SQL("to_char({}, 'HH24:MI:SS.US')").format(c)
    if kind == "ARRAY":
        return sql.SQL("to_json({})::text").format(c)
    if kind == TEXT:
        return c
    return sql.SQL("{}::text").format(c)


def target_canonical(t: sa.TableClause, col: Column) -> Any:
    c, kind = t.c[col.name], col.kind
    if kind in FLOATS:
        return None
    text = sa.cast(c, sa.CHAR)
    if kind == "numeric":
        # DECIMAL(65,30) prints 30 decimals: drop trailing zeros as trim_scale does.
        return sa.case((text.like("%.%"), sa.func.regexp_replace(text, r"\.?0*$", "")), else_=text)
    if kind == "bytea":
        return sa.func.lower(sa.func.hex(c))
    if kind == "date":
        return sa.func.date_format(c, "%Y-%m-%d")
    if kind in ("timestamp without time zone", "timestamp with time zone"):
        return sa.func.date_format(c, "%Y-%m-%d %H:%i:%s.%f")
    if kind == "time without time zone":
        return sa.func.time_format(c, "%H:%i:%s.%f")
    if kind == "ARRAY":
        return sa.func.json_compact(c)
    if kind == TEXT:
        return c
    return text


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
    kind = col.kind
    if kind in INTEGERS:
        return int(text)
    if kind == "numeric":
        if text in ("NaN", "Infinity", "-Infinity"):
            return Edge.BELOW if text == "-Infinity" else Edge.ABOVE
        return Decimal(text)
    if kind in FLOATS:
        number = float(text)
        if not math.isfinite(number):  # NaN sorts after Infinity in PostgreSQL
            return Edge.BELOW if number == -math.inf else Edge.ABOVE
        return number
    if kind == "boolean":
        return 1 if text in ("t", "true") else 0
    if kind in TEMPORAL:
        return _moment(text, kind)
    if kind == "bytea":
        return bytes.fromhex(text[2:])
    # time (MariaDB reads the text as a TIME, 24:00:00 too; the driver would send a
    # timedelta of a day as "1 day, 0:00:00"), and text.
    return text


def _moment(text: str, kind: str) -> Any:
    if text == "-infinity" or text.endswith(" BC"):
        return Edge.BELOW
    if text == "infinity" or text[4:5] != "-":  # a year after 9999
        return Edge.ABOVE
    if kind == "date":
        return date.fromisoformat(text)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment
