"""Read a table from PostgreSQL and its copy from MariaDB as comparable Python values.

Used by ``python -m applier verify`` (for the rows of a chunk whose checksums differ), the
demo and the tests.
Values are compared exactly, each type the way docs/types.md says it is carried:

- numeric as Decimal (value equality: DECIMAL(65,30) adds trailing zeros), integers as ints;
- real and double as the float that PostgreSQL's shortest exact text parses to (the target's
  DOUBLE holds exactly that); float equality, so -0 equals 0 as in both databases;
- date, timestamp and time parsed from PostgreSQL's own text, read in a session with
  DateStyle ISO and TimeZone UTC, not through psycopg2's casts (which turn infinity into
  date.max and 24:00:00 into 00:00:00); a value no MariaDB column holds (BC, infinity, a
  year after 9999) stays its text, which equals nothing in the target;
- timestamptz as a naive UTC datetime; time as a timedelta (MariaDB's TIME is one, 24:00:00 too);
- timetz, interval, enum, inet, cidr and other types kept as text: compared as PostgreSQL's
  text (IntervalStyle postgres, as the extractor's session has it);
- char(n) with its padding on both sides (the target is a VARCHAR that keeps it);
- json and jsonb as their exact text (the target's JSON column stores the text as it came);
- arrays through PostgreSQL's own to_json, parsed into tagged values (numbers as Decimal,
  booleans apart from numbers, object keys in order with duplicates), so the target's JSON
  array is checked against an independent conversion;
- bytea as bytes, uuid as text, boolean as bool (a target 0/1 only).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any, cast

import sqlalchemy as sa
from psycopg2 import sql
from sqlalchemy.dialects.mysql.mariadbconnector import MySQLDialect_mariadbconnector
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler

from applier.upsert import driver_safe

Row = tuple[Any, ...]

# Read as PostgreSQL's text; _norm parses what it must.
_AS_TEXT = {
    "date",
    "timestamp without time zone",
    "timestamp with time zone",
    "time without time zone",
    "time with time zone",
    "interval",
    "json",
    "jsonb",
}
_SESSION = (
    "SET DateStyle = ISO; SET TimeZone = 'UTC'; SET IntervalStyle = postgres;"
    " SET extra_float_digits = 3"
)
_ISO_YEAR = re.compile(r"^\d{4}-")
_TIME = re.compile(r"^(-?)(\d+):(\d\d):(\d\d)(?:\.(\d{1,6}))?$")
_TEMPORAL = {
    "date",
    "timestamp without time zone",
    "timestamp with time zone",
    "time without time zone",
}


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


class _Pairs(list[tuple[str, Any]]):
    """A JSON object's members, in order, duplicates kept."""


def _tagged(value: Any) -> Any:
    """A parsed JSON value, hashable, with its JSON type beside it: true is not 1, "1" is not 1."""
    if value is None:
        return None
    if isinstance(value, _Pairs):
        return ("object", tuple((k, _tagged(v)) for k, v in value))
    if isinstance(value, list):
        return ("array", tuple(_tagged(v) for v in value))
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, Decimal):
        return ("number", value)
    if isinstance(value, str):
        return ("string", value)
    raise TypeError(f"not a JSON value: {value!r}")


def _json_doc(value: Any) -> Any:
    text = value.decode() if isinstance(value, bytes) else value
    if not isinstance(text, str):
        return ("not JSON text", repr(value))
    return _tagged(
        json.loads(text, parse_float=Decimal, parse_int=Decimal, object_pairs_hook=_Pairs)
    )


def _unrepresentable(text: str) -> tuple[str, str]:
    return ("no MariaDB equivalent", text)


def _temporal(value: Any, pg_type: str) -> Any:
    """Both sides are read as text; objects are accepted too, for other callers."""
    if isinstance(value, datetime):
        value = value.isoformat(sep=" ")
    elif isinstance(value, date | time):
        value = value.isoformat()
    elif isinstance(value, timedelta):
        return value
    elif isinstance(value, bytes):
        value = value.decode()
    if pg_type == "time without time zone":
        return _time_of_day(value)
    if not _ISO_YEAR.match(value) or value.endswith("BC"):
        return _unrepresentable(value)  # infinity, BC, a year after 9999
    try:
        if pg_type == "date":
            return date.fromisoformat(value)
        moment = datetime.fromisoformat(value)
    except ValueError:
        return _unrepresentable(value)  # e.g. a year-0 date in the target
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _time_of_day(text: str) -> Any:
    """``HH:MM:SS[.ffffff]`` (up to 24:00:00 in PostgreSQL; MariaDB's TIME goes beyond, and
    below zero) as a timedelta."""
    m = _TIME.match(text)
    if m is None:
        return _unrepresentable(text)
    sign, hours, minutes, seconds, fraction = m.groups()
    span = timedelta(
        hours=int(hours),
        minutes=int(minutes),
        seconds=int(seconds),
        microseconds=int((fraction or "").ljust(6, "0")),
    )
    return -span if sign else span


def _norm(value: Any, pg_type: str) -> Any:
    if value is None:
        return None
    if pg_type in ("json", "jsonb"):
        return value.decode() if isinstance(value, bytes) else value
    if pg_type.startswith("_") or pg_type == "ARRAY":
        if isinstance(value, str | bytes):
            return _json_doc(value)
        return _json_doc(json.dumps(value, default=str))
    if pg_type in _TEMPORAL:
        return _temporal(value, pg_type)
    if pg_type in ("time with time zone", "interval", "USER-DEFINED", "inet", "cidr"):
        return value.decode() if isinstance(value, bytes) else str(value)
    if pg_type == "boolean":
        return bool(value) if value in (0, 1) else ("not a boolean", value)
    if pg_type == "bytea":
        return bytes(value)
    if pg_type in ("real", "double precision"):
        return float(value)
    if pg_type == "uuid":
        return str(value)
    if pg_type in ("numeric", "money"):
        return Decimal(value)
    return value


def source_columns(pg: Any, schema: str, table: str) -> tuple[list[str], list[str], list[str]]:
    """Column names, data types and primary key columns of a source table."""
    with pg.cursor() as cur:
        cur.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
            (schema, table),
        )
        cols = cur.fetchall()
        cur.execute(
            "SELECT a.attname FROM pg_index i"
            " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
            " WHERE i.indrelid = (quote_ident(%s) || '.' || quote_ident(%s))::regclass"
            " AND i.indisprimary",
            (schema, table),
        )
        key = [r[0] for r in cur.fetchall()]
    return [c[0] for c in cols], [c[1] for c in cols], key


def read_source(
    pg: Any,
    schema: str,
    table: str,
    *,
    where: sql.Composable | None = None,
    params: tuple[Any, ...] = (),
    columns: tuple[list[str], list[str]] | None = None,
) -> tuple[list[str], list[str], list[Row]]:
    """Column names, types, and every row normalized (those matching ``where``; only
    ``columns``, names and types, if given)."""
    names, types = columns if columns is not None else source_columns(pg, schema, table)[:2]
    query = sql.SQL("SELECT {} FROM {}").format(
        sql.SQL(", ").join(_select(n, t) for n, t in zip(names, types, strict=True)),
        sql.Identifier(schema, table),
    )
    if where is not None:
        query = sql.SQL("{} WHERE {}").format(query, where)
    with pg.cursor() as cur:
        cur.execute(_SESSION)
        cur.execute(query, params)
        rows = cur.fetchall()
    return names, types, [tuple(_norm(v, t) for v, t in zip(r, types, strict=True)) for r in rows]


def _select(name: str, pg_type: str) -> sql.Composable:
    column = sql.Identifier(name)
    if pg_type == "ARRAY":
        return sql.SQL("to_json({})::text").format(column)
    if pg_type in _AS_TEXT:
        return sql.SQL("{}::text").format(column)
    return column


def target_table(name: str, columns: list[str], database: str | None = None) -> sa.TableClause:
    return sa.table(name, *(sa.column(c) for c in columns), schema=database)


def compile_for_target(stmt: sa.sql.ClauseElement) -> tuple[str, tuple[Any, ...]]:
    """SQL text and positional parameters for MariaDB Connector/Python."""
    compiled = cast(SQLCompiler, stmt.compile(dialect=_target_dialect()))
    names = compiled.positiontup or []
    return str(compiled), tuple(compiled.params[n] for n in names)


@lru_cache(maxsize=1)
def _target_dialect() -> Dialect:
    return driver_safe(MySQLDialect_mariadbconnector())


def read_target(
    maria: Any,
    target: str,
    names: list[str],
    types: list[str],
    target_db: str | None = None,
    *,
    where: Callable[[sa.TableClause], sa.ColumnElement[bool]] | None = None,
) -> list[Row]:
    """The target table's rows normalized like the source's (those ``where`` selects)."""
    t = target_table(target, names, target_db)
    # Temporal values as text, like the source: the driver turns a year-0 DATE into None.
    columns = [
        sa.cast(t.c[n], sa.CHAR) if pg_type in _TEMPORAL else t.c[n]
        for n, pg_type in zip(names, types, strict=True)
    ]
    stmt = sa.select(*columns)
    if where is not None:
        stmt = stmt.where(where(t))
    text, params = compile_for_target(stmt)
    cur = maria.cursor()
    cur.execute(text, params)
    rows = cur.fetchall()
    cur.close()
    return [tuple(_norm(v, t) for v, t in zip(r, types, strict=True)) for r in rows]


def compare_rows(source: list[Row], target: list[Row], key_index: list[int]) -> Difference:
    """By primary key when there is one; as multisets of whole rows when there is none, so a
    row applied twice shows up as extra."""
    if not key_index:
        src, dst = Counter(source), Counter(target)
        missing = list((src - dst).elements())
        extra = list((dst - src).elements())
        return Difference(sorted(missing, key=repr), sorted(extra, key=repr), [])
    by_src = {tuple(r[i] for i in key_index): r for r in source}
    by_dst = {tuple(r[i] for i in key_index): r for r in target}
    missing = [by_src[k] for k in by_src.keys() - by_dst.keys()]
    extra = [by_dst[k] for k in by_dst.keys() - by_src.keys()]
    if len(by_dst) != len(target):
        extra.append(("duplicate keys in target",))
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
    names, types, key = source_columns(pg, schema, table)
    _, _, source = read_source(pg, schema, table)
    try:
        target = read_target(maria, target_table, names, types, target_db)
    except Exception as e:
        if "doesn't exist" not in str(e):
            raise
        target = []
    return compare_rows(source, target, [names.index(k) for k in key])
