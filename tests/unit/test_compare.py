"""The comparison the end-to-end tests rely on: equal where the values are, not elsewhere."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from applier.compare import _norm, compare_rows


@pytest.mark.parametrize(
    ("pg_type", "source", "target"),
    [
        # Source values as read_source gets them (text for these types), target as MariaDB's.
        ("time without time zone", "24:00:00", "24:00:00.000000"),
        ("time without time zone", "12:34:56.789", "12:34:56.789000"),
        ("time without time zone", "12:34:56.789", timedelta(hours=12, minutes=34, seconds=56.789)),
        ("date", "0001-01-01", "0001-01-01"),
        ("date", "2024-02-29", date(2024, 2, 29)),
        ("timestamp without time zone", "2024-01-01 12:00:00.5", "2024-01-01 12:00:00.500000"),
        ("timestamp with time zone", "2024-06-01 06:30:00+00", "2024-06-01 06:30:00.000000"),
        ("timestamp with time zone", "2024-06-01 12:00:00+05:30", datetime(2024, 6, 1, 6, 30)),
        ("interval", "1 year 2 mons", "1 year 2 mons"),
        ("time with time zone", "12:00:00+05:30", "12:00:00+05:30"),
        ("integer[]", "[1,null,-3]", "[1,null,-3]"),
        ("numeric[]", "[1.50]", "[1.5]"),  # a JSON number by its value
        ("double precision[]", '["NaN",1e+300]', '["NaN", 1E300]'),
        ("json", '{"a": 1, "a": 2}', '{"a": 1, "a": 2}'),
        ("real", 0.1, 0.1),
        ("real", -0.0, 0.0),  # -0 = 0 in PostgreSQL and MariaDB alike
        ("numeric", Decimal("1.5"), Decimal("1.500000000000000000000000000000")),
        ("boolean", True, 1),
        ("character", "a   ", "a   "),
        ('"Mood"', 'très "happy"', 'très "happy"'),
        ("inet", "192.168.0.1/24", "192.168.0.1/24"),
    ],
)
def test_equal_values_compare_equal(pg_type: str, source: Any, target: Any) -> None:
    assert _norm(source, pg_type) == _norm(target, pg_type)


@pytest.mark.parametrize(
    ("pg_type", "source", "target"),
    [
        ("time without time zone", "24:00:00", "00:00:00.000000"),
        ("time without time zone", "00:30:00", "-00:30:00.000000"),
        ("date", "infinity", "9999-12-31"),
        ("date", "0001-01-01 BC", "0001-01-01"),
        ("date", "0001-01-01", "0000-01-01"),  # the driver would read the target as None
        ("timestamp without time zone", "-infinity", "0001-01-01 00:00:00.000000"),
        ("timestamp without time zone", "10000-01-01 00:00:00", "9999-12-31 23:59:59.999999"),
        ("timestamp with time zone", "2024-06-01 06:30:00+00", "2024-06-01 12:00:00.000000"),
        ("interval", "1 year 2 mons 3 days", "425 days"),
        ("interval", "1 day", "24:00:00"),
        ("time with time zone", "12:00:00+05:30", "06:30:00+00"),
        ("integer[]", "[0]", "[false]"),
        ("boolean[]", "[true]", "[1]"),
        ("text[]", '["1"]', "[1]"),
        ("text[]", '["NULL"]', "[null]"),
        ("integer[]", "[[1,2]]", "[1,2]"),
        ("jsonb[]", '[{"a":1}]', '[[["a",1]]]'),
        ("jsonb[]", '[{"a":1,"b":2}]', '[{"b":2,"a":1}]'),
        ("json", '{"a": 1, "a": 2}', '{"a": 2}'),
        ("json", '{"a": 1}', '{"a":1}'),
        ("real", 0.1, 0.10000000149011612),  # the same float4, not the same DOUBLE
        ("boolean", False, 2),
        ("character", "a   ", "a"),
        ("bytea", b"\x00", b""),
    ],
)
def test_different_values_compare_different(pg_type: str, source: Any, target: Any) -> None:
    assert _norm(source, pg_type) != _norm(target, pg_type)


def test_nan_is_not_null() -> None:
    assert _norm(float("nan"), "double precision") != _norm(None, "double precision")
    assert _norm(Decimal("NaN"), "numeric") != _norm(None, "numeric")


def test_normalised_rows_are_hashable() -> None:
    # Tables without a key are compared as multisets of rows.
    row = tuple(
        _norm(v, t)
        for v, t in [
            ('[{"a":[1,true,null]}]', "jsonb[]"),
            ('{"x": [1]}', "jsonb"),
            ("infinity", "date"),
            ("24:00:00", "time without time zone"),
        ]
    )
    assert hash(row) == hash(row)


@pytest.mark.parametrize(
    ("source", "target", "equal"),
    [
        # A column the target holds as PostgreSQL's text of the value (applier/verify_columns.py):
        # compared as that text, exactly.
        ("10", "10", True),
        ("t", "t", True),
        ("2024-01-01 08:00:00+00", "2024-01-01 08:00:00+00", True),
        ("1.50", "1.5", False),
        ("t", "true", False),
        ("a  ", "a", False),
        ("\\x00ff", b"\\x00ff", True),
    ],
)
def test_values_stored_as_text_compare_as_text(source: Any, target: Any, equal: bool) -> None:
    assert (_norm(source, "text") == _norm(target, "text")) is equal


def test_an_array_column_holding_other_text_than_json_differs_instead_of_failing() -> None:
    assert _norm("{1,2}", "integer[]") != _norm("[1,2]", "integer[]")


def test_a_key_held_twice_in_the_target_is_extra() -> None:
    diff = compare_rows([(1, "a"), (2, "b")], [(1, "a"), (2, "b"), (2, "b")], [0])
    assert diff.extra == [(2, "b")] and not diff.missing and not diff.different
