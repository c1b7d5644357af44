"""The SQL verify runs: key ranges for both databases, canonical text and order per kind, and
the kind each column is compared as, given how the target stores it."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pytest
from psycopg2 import sql

from applier import checksums
from applier.verify_columns import (
    TEXT,
    Column,
    SourceTable,
    Storage,
    columns,
    compile_for_target,
    kind_of,
    target_table,
)
from shared.tables import TableRef
from shared.types import Edge


def _flatten(c: object) -> list[object]:
    if isinstance(c, sql.Composed):
        return [p for s in c.seq for p in _flatten(s)]
    return [c]


def _strings(c: sql.Composable) -> str:
    return "".join(getattr(p, "string", "?") for p in _flatten(c))


INT = Column("a", "integer", "integer")
TXT = Column("b", "text", TEXT, target_collation="utf8mb4_nopad_bin")


def test_composite_range_in_mariadb_is_spelt_out_for_the_index() -> None:
    t = target_table("pairs", ["a", "b", "v"])
    cond = checksums.target_range(t, [INT, TXT], ("1", "x"), ("3", "y"))
    text, params = compile_for_target(cond)
    assert text == (
        "(pairs.a > ? OR pairs.a = ? AND pairs.b > ?)"
        " AND NOT (pairs.a > ? OR pairs.a = ? AND pairs.b > ?)"
    )
    assert params == (1, 1, "x", 3, 3, "y")


def test_open_ranges() -> None:
    t = target_table("t", ["a"])
    text, params = compile_for_target(checksums.target_range(t, [INT], None, None))
    assert text == "true = 1" and params == ()
    _, upper = checksums.pg_range([INT], None, ("5",))
    assert upper == ["5"]
    where, none = checksums.pg_range([INT], None, None)
    assert none == [] and where == sql.SQL("")


@pytest.mark.parametrize(
    ("column", "collated"),
    [
        (Column("k", "text", TEXT), True),
        (Column("k", "text", TEXT, c_ordered=True), False),  # the index serves that order
        (Column("k", "integer", TEXT), True),  # a domain stored as text: its text's bytes
        (Column("k", "integer", "integer"), False),
        (Column("k", "uuid", TEXT, c_ordered=True), True),  # read as its text
    ],
)
def test_text_keys_are_ordered_as_bytes_in_postgresql(column: Column, collated: bool) -> None:
    assert (' COLLATE "C"' in _strings(checksums.pg_order(column))) is collated


def test_a_value_stored_as_text_is_read_through_the_output_function() -> None:
    # boolean's cast to text says "true"; the extractor sends (and the target holds) "t".
    assert "concat(" in _strings(checksums.pg_value(Column("k", "boolean", TEXT)))
    assert "concat(" not in _strings(checksums.pg_value(Column("k", "text", TEXT)))
    assert "concat(" not in _strings(checksums.pg_value(Column("k", "boolean", "boolean")))


def test_text_keys_of_another_collation_are_read_in_utf8mb4_nopad_bin() -> None:
    t = target_table("t", ["k"])
    padded = Column("k", "text", TEXT, target_collation="utf8mb4_bin")
    text, _ = compile_for_target(checksums.target_range(t, [padded], ("a",), None))
    assert "COLLATE utf8mb4_nopad_bin" in text
    binary = Column("k", "text", TEXT, target_collation="utf8mb4_nopad_bin")
    text, _ = compile_for_target(checksums.target_range(t, [binary], ("a",), None))
    assert "COLLATE" not in text


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [
        ("bigint", "-9223372036854775808", -9223372036854775808),
        ("numeric", "12345678901234567890.123456789", Decimal("12345678901234567890.123456789")),
        ("numeric", "NaN", Edge.ABOVE),
        ("double precision", "0.1", 0.1),
        ("double precision", "-Infinity", Edge.BELOW),
        ("real", "NaN", Edge.ABOVE),
        ("boolean", "t", 1),
        ("boolean", "f", 0),
        ("date", "0001-01-01", date(1, 1, 1)),
        ("date", "infinity", Edge.ABOVE),
        ("date", "0044-03-15 BC", Edge.BELOW),
        ("date", "10000-01-01", Edge.ABOVE),
        ("timestamp with time zone", "2024-01-01 08:00:00.5+00", datetime(2024, 1, 1, 8, 0, 0, 500000)),
        ("timestamp with time zone", "-infinity", Edge.BELOW),
        ("timestamp without time zone", "294276-12-31 23:59:59", Edge.ABOVE),
        ("time without time zone", "24:00:00", "24:00:00"),
        ("bytea", "\\x00ff", b"\x00\xff"),
        ("bytea", "\\x", b""),
        (TEXT, "t", "t"),
    ],
)  # fmt: skip
def test_key_values_reach_mariadb_as_its_column_holds_them(
    kind: str, text: str, value: Any
) -> None:
    assert checksums.target_value(text, Column("k", kind, kind)) == value


def test_a_key_value_the_target_cannot_hold_is_before_or_after_every_other() -> None:
    t = target_table("t", ["a", "d"])
    day = Column("d", "date", "date")
    after_all = checksums.target_range(t, [INT, day], ("1", "infinity"), None)
    text, params = compile_for_target(after_all)
    assert text == "t.a > ? OR false = 1" and params == (1,)
    before_all = checksums.target_range(t, [INT, day], None, ("1", "-infinity"))
    text, params = compile_for_target(before_all)
    assert text == "NOT (t.a > ? OR t.a = ?)" and params == (1, 1)


def test_floats_have_no_canonical_text() -> None:
    t = target_table("t", ["r"])
    assert checksums.pg_canonical(Column("r", "real", "real")) is None
    assert (
        checksums.target_canonical(t, Column("r", "double precision", "double precision")) is None
    )


def test_canonical_numeric_in_mariadb_trims_trailing_zeros() -> None:
    t = target_table("t", ["n"])
    text, params = compile_for_target(
        checksums.target_canonical(t, Column("n", "numeric", "numeric"))
    )
    assert "regexp_replace" in text
    assert r"\.?0*$" in params


@pytest.mark.parametrize(
    ("pg_type", "storage", "kind"),
    [
        ("integer", Storage("int", None), "integer"),
        ("integer", Storage("bigint", None), "integer"),
        ("integer", Storage("varchar", "utf8mb4_nopad_bin"), TEXT),  # a domain stored as text
        ("timestamp with time zone", Storage("datetime", None), "timestamp with time zone"),
        ("timestamp with time zone", Storage("longtext", "utf8mb4_nopad_bin"), TEXT),
        ("date", Storage("varchar", "utf8mb4_nopad_bin"), TEXT),  # widened by hand for infinity
        ("bytea", Storage("varbinary", None), "bytea"),
        ("bytea", Storage("longtext", "utf8mb4_nopad_bin"), TEXT),
        ("integer[]", Storage("json", "utf8mb4_bin"), "integer[]"),
        ("text[]", Storage("longtext", "utf8mb4_nopad_bin"), TEXT),  # PostgreSQL's array text
        ("jsonb", Storage("json", "utf8mb4_bin"), TEXT),
        ("uuid", Storage("char", "utf8mb4_nopad_bin"), TEXT),
        ("interval", Storage("longtext", "utf8mb4_nopad_bin"), TEXT),
        ("text", Storage("date", None), None),  # no exact comparison
        ("numeric", Storage("double", None), None),
    ],
)
def test_each_column_is_compared_by_how_the_target_stores_it(
    pg_type: str, storage: Storage, kind: str | None
) -> None:
    assert kind_of(pg_type, storage) == kind


def test_a_column_verify_cannot_compare_is_named() -> None:
    source = SourceTable(
        TableRef("public", "t"), 1, "r", None, ["id", "v"], ["integer", "text"], [False, True],
        ["id"],
    )  # fmt: skip
    cols, problems = columns(
        source, {"id": Storage("int", None), "v": Storage("date", None)}, ["id", "v"]
    )
    assert [c.kind for c in cols] == ["integer", "text"]
    assert problems == [
        "column v is date in the target, which verify cannot compare with text exactly"
    ]
