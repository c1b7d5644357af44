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
- bytea as bytes, uuid as text, boolean as bool (a target 0/1 only);
- a column the target holds as PostgreSQL's text of the value (kind TEXT, see
  applier/verify_columns.py: a domain stored as text, a column widened by hand) as that text,
  read in PostgreSQL through the type's output function.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from psycopg2 import sql

from applier import verify_columns
from applier.checksums import Name, pg_value
from applier.verify_columns import TEXT, Column, compile_for_target, target_table
from shared.naming import TargetRef
from shared.tables import TableRef

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
# The extractor's session settings: PostgreSQL's text of a value is the text it sends.
_SESSION = (
    "SET DateStyle = ISO; SET TimeZone = 'UTC'; SET IntervalStyle = postgres;"
    " SET extra_float_digits = 3; SET bytea_output = hex"
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
    try:
        doc = json.loads(text, parse_float=Decimal, parse_int=Decimal, object_pairs_hook=_Pairs)
    except (ValueError, RecursionError):
        return ("not JSON text", text)  # equals no array
    return _tagged(doc)


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
    if pg_type in (TEXT, "json", "jsonb"):
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
    return (
        [c.name for c in cols],
        kinds,
        [tuple(_norm(v, k) for v, k in zip(r, kinds, strict=True)) for r in rows] if cols else [],
    )


def _select(col: Column) -> sql.Composable:
    value = pg_value(col)
    if col.kind == "ARRAY":
        return sql.SQL("to_json({})::text").format(value)
    if col.kind in _AS_TEXT:
        return sql.SQL("{}::text").format(value)
    return value


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
    # Temporal values as text, like the source: the driver turns a year-0 DATE into None.
    columns = [
        sa.cast(t.c[n], sa.CHAR) if kind in _TEMPORAL else t.c[n]
        for n, kind in zip(names, types, strict=True)
    ]
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
    return [tuple(_norm(v, k) for v, k in zip(r, types, strict=True)) for r in rows]


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
