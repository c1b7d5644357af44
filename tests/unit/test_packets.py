"""A group's rows cut into packets below max_allowed_packet; a row that never fits."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from applier.packets import describe, located, packets, row_bytes
from applier.plan import Group
from applier.upsert import Statements
from shared.errors import RowRejected, RowTooLarge, SchemaMismatch, TargetUnavailable
from shared.naming import TargetRef

T = TargetRef(None, "docs")
LIMIT = 100_000


@pytest.fixture(scope="module")
def statements() -> Statements:
    return Statements(sa.create_engine("mariadb+mariadbconnector://u:p@localhost/db").dialect)


def group(statements: Statements, rows: list[tuple[object, ...]]) -> Group:
    stmt = statements.upsert(T, ("id", "body", "n"), ("id",))
    return Group(T, "upsert", stmt, rows, key=("id",))


def test_a_group_that_fits_is_one_packet_as_it_is(statements: Statements) -> None:
    g = group(statements, [(i, "x" * 100, 5) for i in range(100)])
    assert [p for p in packets(g, LIMIT)] == [g.rows]
    assert next(packets(g, LIMIT)) is g.rows  # not copied


def test_rows_together_too_large_are_cut_in_order(statements: Statements) -> None:
    rows: list[tuple[object, ...]] = [(i, "é" * 10_000, None) for i in range(30)]
    cut = list(packets(group(statements, rows), LIMIT))
    assert len(cut) > 1
    assert [r for p in cut for r in p] == rows
    for p in cut:
        assert sum(map(row_bytes, p)) <= LIMIT - 64


def test_a_row_that_can_never_fit_is_refused_by_its_key(statements: Statements) -> None:
    rows: list[tuple[object, ...]] = [(1, "a", 1), (7, "x" * LIMIT, 2), (8, "b", 3)]
    with pytest.raises(RowTooLarge) as e:
        list(packets(group(statements, rows), LIMIT))
    text = str(e.value)
    assert "a row of table docs (id=7) takes" in text
    assert f"max_allowed_packet ({LIMIT})" in text
    assert "applier dlq replay" in text


def test_text_counts_in_utf8_bytes() -> None:
    assert row_bytes(("abc",)) < row_bytes(("é" * 3,)) < row_bytes(("🎉" * 3,))
    assert row_bytes((b"\x00" * 50, None, 12345678901)) == row_bytes((b"\x01" * 50, 1, True))


def test_a_column_of_mixed_kinds_is_still_counted(statements: Statements) -> None:
    rows: list[tuple[object, ...]] = [(1, "x" * 60_000, 1), (2, b"y" * 60_000, 2)]
    assert len(list(packets(group(statements, rows), LIMIT))) == 2


def test_an_unknown_limit_sends_everything_at_once(statements: Statements) -> None:
    g = group(statements, [(1, "x" * LIMIT, 1)])
    assert list(packets(g, 0)) == [g.rows]


def test_the_key_of_a_moved_or_keyless_row(statements: Statements) -> None:
    moved = statements.update(T, ("id", "body"), ("id",), False)
    assert describe(Group(T, "update", moved, key=("id",)), (8, "x" * 100, 7)) == "id=8"
    long_key = Group(T, "upsert", statements.upsert(T, ("id", "body"), ("id",)), key=("id",))
    assert describe(long_key, ("k" * 100, "b")).endswith("...")
    keyless = statements.update(T, ("a",), ("a", "b"), True)
    assert describe(Group(T, "update", keyless), (1, 2, 3)) == "no primary key"


class DbError(Exception):
    def __init__(self, errno: int, msg: str) -> None:
        super().__init__(msg)
        self.errno = errno


def test_a_refused_row_is_named_by_table_and_key(statements: Statements) -> None:
    rows: list[tuple[object, ...]] = [(1, "a", 1), (2, "far too long", 2), (3, "c", 3)]
    error = DbError(1406, "Data too long for column 'body' at row 2")
    fault = located(error, group(statements, rows), rows, "maria")
    assert type(fault) is RowRejected
    assert str(fault) == "table docs (id=2): MariaDB 1406: Data too long for column 'body' at row 2"


def test_a_schema_error_of_one_row_names_it_others_only_the_table(
    statements: Statements,
) -> None:
    one: list[tuple[object, ...]] = [(5, "a", 1)]
    fault = located(DbError(1054, "Unknown column 'n'"), group(statements, one), one, "maria")
    assert type(fault) is SchemaMismatch
    assert str(fault).startswith("table docs (id=5): MariaDB 1054")
    two: list[tuple[object, ...]] = [(5, "a", 1), (6, "b", 2)]
    fault = located(DbError(1054, "Unknown column 'n'"), group(statements, two), two, "maria")
    assert str(fault).startswith("table docs: MariaDB 1054")


def test_an_outage_is_left_as_it_is(statements: Statements) -> None:
    rows: list[tuple[object, ...]] = [(1, "a", 1)]
    fault = located(DbError(2013, "Lost connection"), group(statements, rows), rows, "maria")
    assert type(fault) is TargetUnavailable
    assert "docs" not in str(fault)
