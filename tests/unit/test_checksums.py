"""The SQL verify runs: key ranges for both databases, canonical text per type."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from psycopg2 import sql

from applier import checksums
from applier.compare import compile_for_target, target_table


def _flatten(c: object) -> list[object]:
    if isinstance(c, sql.Composed):
        return [p for s in c.seq for p in _flatten(s)]
    return [c]


def test_composite_range_in_mariadb_is_spelt_out_for_the_index() -> None:
    t = target_table("pairs", ["a", "b", "v"])
    cond = checksums.target_range(t, ["a", "b"], ["integer", "text"], (1, "x"), (3, "y"))
    text, params = compile_for_target(cond)
    assert text == (
        "(pairs.a > ? OR pairs.a = ? AND pairs.b > ?)"
        " AND NOT (pairs.a > ? OR pairs.a = ? AND pairs.b > ?)"
    )
    assert params == (1, 1, "x", 3, 3, "y")


def test_open_ranges() -> None:
    t = target_table("t", ["id"])
    text, params = compile_for_target(checksums.target_range(t, ["id"], ["bigint"], None, None))
    assert text == "true = 1" and params == ()
    _, upper = checksums.pg_range(["id"], ["bigint"], None, (5,))
    assert upper == [5]
    where, none = checksums.pg_range(["id"], ["bigint"], None, None)
    assert none == [] and where == sql.SQL("")


def test_text_keys_are_ordered_as_bytes_in_postgresql() -> None:
    keys = checksums.pg_keys(["k", "n"], ["text", "integer"])
    parts = _flatten(keys)
    assert any(getattr(p, "string", "") == ' COLLATE "C"' for p in parts)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            datetime(2024, 1, 1, 5, 30, tzinfo=timezone(timedelta(hours=5, minutes=30))),
            datetime(2024, 1, 1, 0, 0),
        ),
        (datetime(2024, 1, 1, 0, 0, tzinfo=UTC), datetime(2024, 1, 1, 0, 0)),
    ],
)
def test_timestamptz_keys_are_compared_in_utc_in_mariadb(
    value: datetime, expected: datetime
) -> None:
    t = target_table("t", ["at"])
    _, params = compile_for_target(
        checksums.target_range(t, ["at"], ["timestamp with time zone"], (value,), None)
    )
    assert params == (expected,)


def test_floats_have_no_canonical_text() -> None:
    t = target_table("t", ["r"])
    assert checksums.pg_canonical("r", "real") is None
    assert checksums.target_canonical(t.c.r, "double precision") is None


def test_canonical_numeric_in_mariadb_trims_trailing_zeros() -> None:
    t = target_table("t", ["n"])
    text, params = compile_for_target(checksums.target_canonical(t.c.n, "numeric"))
    assert "regexp_replace" in text
    assert r"\.?0*$" in params
