"""How ``applier verify`` (and the tests' comparison) compares the values of each type.

A Comparison says, for the types the registry (shared/types/registry.py) gives it:

- which MariaDB storages (information_schema's DATA_TYPE) hold the values as docs/types.md
  maps them; a column stored otherwise as text is compared as PostgreSQL's text (TEXT);
- the canonical text of a value, the same in PostgreSQL and in MariaDB for the same value, for
  the checksums; none for floats, which have no common text (PostgreSQL prints 1e-05 where
  MariaDB prints 0.00001) and are compared by value instead;
- whether both databases order its values alike (a key of it is then cut into ranges), and a
  key value's PostgreSQL text as the target column holds it, or the Edge of what it cannot
  hold (a date after 9999, infinity, NaN: before or after every value it can, as in
  PostgreSQL);
- how each database's value is read for a row-by-row comparison (applier/compare.py) and
  made comparable.

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

import enum
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from psycopg2 import sql

PgSql = Callable[[sql.Composable], sql.Composable]
TargetSql = Callable[[Any], Any]

# MariaDB storages (DATA_TYPE; "json" for a LONGTEXT with its json_valid check) that hold
# PostgreSQL's text of a value: what the applier binds for a type it does not map.
TEXT_STORAGE = frozenset({"char", "varchar", "tinytext", "text", "mediumtext", "longtext", "json"})
_INTS = frozenset({"tinyint", "smallint", "mediumint", "int", "bigint"})
_BYTES = frozenset({"binary", "varbinary", "tinyblob", "blob", "mediumblob", "longblob"})
_DATETIMES = frozenset({"datetime", "timestamp"})


class Edge(enum.Enum):
    """A key value no target column holds: before, or after, every value it can hold."""

    BELOW = "below"
    ABOVE = "above"


def _itself(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class Comparison:
    """How values of the types that share it are compared (see the module's docstring)."""

    name: str
    storage: frozenset[str]  # MariaDB storages that hold the type as docs/types.md maps it
    ordered: bool  # both databases order it alike: a key of it is cut into ranges
    pg_text: PgSql | None  # canonical text in PostgreSQL; None: compared by value
    target_text: TargetSql | None  # the same text in MariaDB
    key_value: Callable[[str], Any]  # a key's PostgreSQL text -> as MariaDB's column holds it
    norm: Callable[[Any], Any]  # a value read from either database -> comparable (not None)
    pg_read: PgSql = _itself  # how a row-by-row comparison reads it in PostgreSQL
    target_read: TargetSql = _itself  # ... and in MariaDB

    def __repr__(self) -> str:
        return f"Comparison({self.name})"


# ---------------------------------------------------------------- SQL pieces


def _pg_cast_text(c: sql.Composable) -> sql.Composable:
    return sql.SQL("{}::text").format(c)


def output_text(c: sql.Composable) -> sql.Composable:
    """The text the extractor sends: the type's output function (a cast to text differs for
    some types: true, not t; char(n) without its padding). concat() turns NULL into ''."""
    return sql.SQL("CASE WHEN {c} IS NOT NULL THEN concat({c}) END").format(c=c)


def _pg_to_char(fmt: str, utc: bool = False) -> PgSql:
    template = sql.SQL("to_char({}" + (" AT TIME ZONE 'UTC'" if utc else "") + f", '{fmt}')")
    return template.format


def _pg_array(c: sql.Composable) -> sql.Composable:
    # PostgreSQL's own conversion, independent of the applier's.
    return sql.SQL("to_json({})::text").format(c)


# The target's pieces import SQLAlchemy when verify builds its queries: the extractor loads
# this registry too, and SQLAlchemy is a fifth of its start-up.


def _target_char(c: Any) -> Any:
    import sqlalchemy as sa  # noqa: PLC0415 (see above)

    return sa.cast(c, sa.CHAR)


def _target_numeric(c: Any) -> Any:
    import sqlalchemy as sa  # noqa: PLC0415 (see above)

    # DECIMAL(65,30) prints 30 decimals: drop trailing zeros as trim_scale does.
    text = sa.cast(c, sa.CHAR)
    return sa.case((text.like("%.%"), sa.func.regexp_replace(text, r"\.?0*$", "")), else_=text)


def _target_function(name: str, *args: str) -> TargetSql:
    """MariaDB's function ``name`` of the column, then ``args``."""

    def build(c: Any) -> Any:
        import sqlalchemy as sa  # noqa: PLC0415 (see above)

        return getattr(sa.func, name)(c, *args)

    return build


def _target_hex(c: Any) -> Any:
    import sqlalchemy as sa  # noqa: PLC0415 (see above)

    return sa.func.lower(sa.func.hex(c))


# ---------------------------------------------------------------- key values


def _numeric_key(text: str) -> Any:
    if text in ("NaN", "Infinity", "-Infinity"):
        return Edge.BELOW if text == "-Infinity" else Edge.ABOVE
    return Decimal(text)


def _float_key(text: str) -> Any:
    number = float(text)
    if not math.isfinite(number):  # NaN sorts after Infinity in PostgreSQL
        return Edge.BELOW if number == -math.inf else Edge.ABOVE
    return number


def _moment_key(text: str) -> Any:
    if text == "-infinity" or text.endswith(" BC"):
        return Edge.BELOW
    if text == "infinity" or text[4:5] != "-":  # a year after 9999
        return Edge.ABOVE
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _date_key(text: str) -> Any:
    edge = _moment_key(text)
    return edge if isinstance(edge, Edge) else date.fromisoformat(text)


# ---------------------------------------------------------------- normalizing


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


def _array(value: Any) -> Any:
    if isinstance(value, str | bytes):
        return _json_doc(value)
    return _json_doc(json.dumps(value, default=str))


def _unrepresentable(text: str) -> tuple[str, str]:
    return ("no MariaDB equivalent", text)


_ISO_YEAR = re.compile(r"^\d{4}-")
_TIME = re.compile(r"^(-?)(\d+):(\d\d):(\d\d)(?:\.(\d{1,6}))?$")


def _as_text(value: Any) -> Any:
    """Temporal values are read as text on both sides; objects are accepted too, for other
    callers. None: a timedelta, already a time of day."""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode()
    return None if isinstance(value, timedelta) else value


def _moment(value: Any, date_only: bool) -> Any:
    text = _as_text(value)
    if text is None:
        return value
    if not _ISO_YEAR.match(text) or text.endswith("BC"):
        return _unrepresentable(text)  # infinity, BC, a year after 9999
    try:
        if date_only:
            return date.fromisoformat(text)
        moment = datetime.fromisoformat(text)
    except ValueError:
        return _unrepresentable(text)  # e.g. a year-0 date in the target
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _time_of_day(value: Any) -> Any:
    """``HH:MM:SS[.ffffff]`` (up to 24:00:00 in PostgreSQL; MariaDB's TIME goes beyond, and
    below zero) as a timedelta."""
    text = _as_text(value)
    if text is None:
        return value
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


def _boolean(value: Any) -> Any:
    return bool(value) if value in (0, 1) else ("not a boolean", value)


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


def _printed(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else str(value)


# ---------------------------------------------------------------- the comparisons

_DATETIME_TEXT = "YYYY-MM-DD HH24:MI:SS.US"
_TARGET_DATETIME = "%Y-%m-%d %H:%i:%s.%f"

INTEGER = Comparison("integer", _INTS, True, _pg_cast_text, _target_char, int, _itself)
NUMERIC = Comparison(
    "numeric",
    frozenset({"decimal"}),
    True,
    lambda c: sql.SQL("trim_scale({})::text").format(c),
    _target_numeric,
    _numeric_key,
    Decimal,
)
FLOAT = Comparison("float", frozenset({"double", "float"}), True, None, None, _float_key, float)
BOOLEAN = Comparison(
    "boolean",
    frozenset({"tinyint"}),
    True,
    lambda c: sql.SQL("CASE WHEN {c} THEN '1' WHEN NOT {c} THEN '0' END").format(c=c),
    _target_char,
    lambda text: 1 if text in ("t", "true") else 0,
    _boolean,
)
BYTEA = Comparison(
    "bytea",
    _BYTES,
    True,
    lambda c: sql.SQL("encode({}, 'hex')").format(c),
    _target_hex,
    lambda text: bytes.fromhex(text[2:]),
    bytes,
)
# Read as text on both sides (the MariaDB driver turns a year-0 DATE into None).
DATE = Comparison(
    "date",
    frozenset({"date"}),
    True,
    _pg_to_char("YYYY-MM-DD"),
    _target_function("date_format", "%Y-%m-%d"),
    _date_key,
    lambda value: _moment(value, date_only=True),
    pg_read=_pg_cast_text,
    target_read=_target_char,
)
TIMESTAMP = Comparison(
    "timestamp",
    _DATETIMES,
    True,
    _pg_to_char(_DATETIME_TEXT),
    _target_function("date_format", _TARGET_DATETIME),
    _moment_key,
    lambda value: _moment(value, date_only=False),
    pg_read=_pg_cast_text,
    target_read=_target_char,
)
TIMESTAMPTZ = Comparison(
    "timestamptz",
    _DATETIMES,
    True,
    _pg_to_char(_DATETIME_TEXT, utc=True),
    _target_function("date_format", _TARGET_DATETIME),
    _moment_key,
    lambda value: _moment(value, date_only=False),
    pg_read=_pg_cast_text,
    target_read=_target_char,
)
# A key value travels as its text, which MariaDB reads as a TIME, 24:00:00 too (the driver
# would send a timedelta of a day as "1 day, 0:00:00").
TIME = Comparison(
    "time",
    frozenset({"time"}),
    True,
    _pg_to_char("HH24:MI:SS.US"),
    _target_function("time_format", "%H:%i:%s.%f"),
    _itself,
    _time_of_day,
    pg_read=_pg_cast_text,
    target_read=_target_char,
)
ARRAY = Comparison(
    "array",
    frozenset({"json"}),
    False,
    _pg_array,
    _target_function("json_compact"),
    _itself,
    _array,
    pg_read=_pg_array,
)
# PostgreSQL's text of the value as the target holds it: text itself, and the kind of a column
# whose target holds PostgreSQL's text of any other type (a domain stored as text, a column
# widened by hand), read in PostgreSQL through the type's output function. Ordered as bytes
# (code points) in both databases: applier/checksums.py collates it so.
TEXT = Comparison("text", frozenset(), True, _itself, _itself, _itself, _text)
# Every other type (interval, timetz, json, uuid, enums, inet, ...): no storage of its own in
# MariaDB, compared as PostgreSQL's text (IntervalStyle postgres, as the extractor's session
# has it; char(n) with its padding).
PRINTED = Comparison(
    "printed", frozenset(), False, output_text, _target_char, _itself, _printed, pg_read=output_text
)
