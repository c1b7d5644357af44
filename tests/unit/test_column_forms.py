"""The column forms of the value conversions (shared/types/values.py): value for value what the
conversion of each value gives, whatever the column holds."""

from __future__ import annotations

from typing import Any

import pytest

from shared.errors import RowRejected
from shared.types.values import (
    bytea,
    column_form,
    number_text,
    number_texts,
    timestamptz,
    timestamptzs,
)

TIMESTAMPS: list[list[Any]] = [
    [],
    ["2026-01-01 00:00:00.123456+00", "1999-12-31 23:59:59+00"],
    ["2026-01-01 00:00:00+02", "2026-01-01 00:00:00+00"],  # not all in UTC
    ["2026-01-01 00:00:00+00", None],  # a NULL
    ["infinity", "-infinity"],
    ["+00", "+00+00", "x+00"],  # only the last +00 of a value goes
    ["a\n+00", "b+00"],  # a newline inside a value (no timestamp holds one)
    ["0001-01-01 00:00:00+00 BC"],  # refused as value by value
]
NUMBERS: list[list[Any]] = [
    [],
    [1, "2.50", None, "NaN", "123456789012345678901234567890.000000000000000000001", 10**30],
    ["1", "-0.0", ""],
]


def each(conv: Any, column: list[Any]) -> Any:
    try:
        return [conv(v) for v in column]
    except RowRejected as e:
        return (RowRejected, str(e))


def whole(form: Any, column: list[Any]) -> Any:
    try:
        return list(form(column))
    except RowRejected as e:
        return (RowRejected, str(e))


@pytest.mark.parametrize(
    ("conv", "form", "column"),
    [(timestamptz, timestamptzs, c) for c in TIMESTAMPS]
    + [(number_text, number_texts, c) for c in NUMBERS + TIMESTAMPS],
)
def test_a_column_form_gives_what_each_value_gives(conv: Any, form: Any, column: list[Any]) -> None:
    assert whole(form, column) == each(conv, column)
    assert column_form(conv) is form


def test_a_conversion_without_a_form_of_its_own_maps_each_value() -> None:
    assert column_form(bytea)(["00ff", None, "\\x5c"]) == [b"\x00\xff", None, b"\\"]
