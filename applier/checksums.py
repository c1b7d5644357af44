"""The SQL that verify runs in each database: a value's canonical text (the same text in
PostgreSQL and in MariaDB for the same value, per type of docs/types.md), and ranges of a
primary key spelt for each. Floats have no common text (PostgreSQL prints 1e-05 where MariaDB
prints 0.00001): ``None``, compared by value instead."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from psycopg2 import sql

FLOATS = ("real", "double precision")
_TEXT_KEYS = {"character varying", "text"}

Key = tuple[Any, ...]


# ---------------------------------------------------------------- canonical text


def pg_canonical(name: str, pg_type: str) -> sql.Composable | None:
    c = sql.Identifier(name)
    if pg_type in FLOATS:
        return None
    if pg_type == "numeric":
        return sql.SQL("trim_scale({})::text").format(c)
    if pg_type == "boolean":
        return sql.SQL("CASE WHEN {c} THEN '1' WHEN NOT {c} THEN '0' END").format(c=c)
    if pg_type == "bytea":
        return sql.SQL("encode({}, 'hex')").format(c)
    if pg_type == "character":
        # concat keeps the padding, as the target does (a cast to text drops it), but turns
        # NULL into ''.
        return sql.SQL("CASE WHEN {c} IS NOT NULL THEN concat({c}) END").format(c=c)
    if pg_type == "date":
        return sql.SQL("to_char({}, 'YYYY-MM-DD')").format(c)
    if pg_type == "timestamp without time zone":
        return sql.SQL("to_char({}, 'YYYY-MM-DD HH24:MI:SS.US')").format(c)
    if pg_type == "timestamp with time zone":
        return sql.SQL("to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')").format(c)
    if pg_type == "time without time zone":
        return sql.SQL("to_char({}, 'HH24:MI:SS.US')").format(c)
    if pg_type == "ARRAY":
        return sql.SQL("to_json({})::text").format(c)
    return sql.SQL("{}::text").format(c)


def target_canonical(c: Any, pg_type: str) -> Any:
    if pg_type in FLOATS:
        return None
    text = sa.cast(c, sa.CHAR)
    if pg_type == "numeric":
        # DECIMAL(65,30) prints 30 decimals: drop trailing zeros as trim_scale does.
        return sa.case((text.like("%.%"), sa.func.regexp_replace(text, r"\.?0*$", "")), else_=text)
    if pg_type == "bytea":
        return sa.func.lower(sa.func.hex(c))
    if pg_type == "date":
        return sa.func.date_format(c, "%Y-%m-%d")
    if pg_type in ("timestamp without time zone", "timestamp with time zone"):
        return sa.func.date_format(c, "%Y-%m-%d %H:%i:%s.%f")
    if pg_type == "time without time zone":
        return sa.func.time_format(c, "%H:%i:%s.%f")
    if pg_type == "ARRAY":
        return sa.func.json_compact(c)
    if pg_type in ("smallint", "integer", "bigint", "oid", "boolean"):
        return text
    return c


# ---------------------------------------------------------------- key ranges


def pg_keys(key: Sequence[str], key_types: Sequence[str]) -> sql.Composable:
    """The key columns in an order MariaDB shares: text as bytes (its _bin collation)."""
    return sql.SQL(", ").join(
        sql.SQL('{} COLLATE "C"').format(sql.Identifier(k))
        if t in _TEXT_KEYS
        else sql.Identifier(k)
        for k, t in zip(key, key_types, strict=True)
    )


def pg_range(
    key: Sequence[str],
    key_types: Sequence[str],
    lo: Key | None,
    hi: Key | None,
    keyword: bool = True,
) -> tuple[sql.Composable, list[Any]]:
    """`` WHERE (key) > (lo) AND (key) <= (hi)`` (either side may be open)."""
    keys = pg_keys(key, key_types)
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
    t: sa.TableClause, key: Sequence[str], key_types: Sequence[str], lo: Key | None, hi: Key | None
) -> Any:
    """The same range in MariaDB, spelt out (a > x OR (a = x AND b > y)) so that its range
    optimizer uses the primary key; key values as the target holds them."""
    cols = [t.c[k] for k in key]
    conds = []
    if lo is not None:
        conds.append(
            _after(cols, [_for_target(v, ty) for v, ty in zip(lo, key_types, strict=True)])
        )
    if hi is not None:
        later = _after(cols, [_for_target(v, ty) for v, ty in zip(hi, key_types, strict=True)])
        conds.append(sa.not_(later))
    return sa.and_(sa.true(), *conds)


def _after(cols: list[Any], values: list[Any]) -> Any:
    """(cols) > (values), lexicographically."""
    options = []
    for i, col in enumerate(cols):
        equal = [cols[j] == values[j] for j in range(i)]
        options.append(sa.and_(*equal, col > values[i]))
    return sa.or_(*options)


def _as_target(values: Key, key_types: Sequence[str]) -> list[Any]:
    return [_for_target(v, t) for v, t in zip(values, key_types, strict=True)]


def _for_target(value: Any, pg_type: str) -> Any:
    if pg_type == "timestamp with time zone" and isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None)
    if pg_type == "uuid":
        return str(value)
    return value
