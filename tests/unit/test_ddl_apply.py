"""What the applier does with a schema change (applier/ddl.py): which columns are renamed,
dropped and added, decided by attnum against the target as it is, and the statements, quoted
by MariaDB's dialect (applier/ddl_sql.py)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from applier.ddl import ColumnSteps, NewColumn, SchemaChange, column_steps, parse
from applier.ddl_sql import DdlSql
from shared.envelope import Change
from shared.errors import DecodeError
from shared.naming import Naming, TargetRef

T = TargetRef(None, "t")


def change(*columns: tuple[int, str], missing: dict[str, str] | None = None) -> SchemaChange:
    names = [name for _, name in columns]
    c = Change(
        "ddl", "0/1", "public", "t", names, ["integer"] * len(names),
        [(missing or {}).get(n) for n in names], ["id"], None, 0,
        {"action": "alter", "relid": 5, "attnums": [n for n, _ in columns]},
    )  # fmt: skip
    return parse(c, Naming())


def present(*names: str) -> dict[str, str]:
    return {n.lower(): n for n in names}


def steps(
    ch: SchemaChange, old: dict[int, str] | None, there: dict[str, str], drop: bool = False
) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    s: ColumnSteps = column_steps(ch, old, there, drop)
    return s.drop, s.rename, [c.name for c in s.added]


def test_a_renamed_column_is_renamed_once() -> None:
    ch = change((1, "id"), (2, "label"))
    assert steps(ch, {1: "id", 2: "v"}, present("id", "v")) == ([], [("v", "label")], [])
    # Delivered again after the rename committed: nothing left to do.
    assert steps(ch, {1: "id", 2: "v"}, present("id", "label")) == ([], [], [])


def test_a_renamed_key_column() -> None:
    ch = change((1, "key_id"), (2, "v"))
    assert steps(ch, {1: "id", 2: "v"}, present("id", "v")) == ([], [("id", "key_id")], [])


def test_a_rename_onto_a_kept_column_makes_it_give_way() -> None:
    ch = change((1, "id"), (2, "c"))
    assert steps(ch, {1: "id", 2: "v"}, present("id", "v", "c")) == (["c"], [("v", "c")], [])


def test_a_dropped_column_is_kept_or_dropped() -> None:
    ch = change((1, "id"))
    assert steps(ch, {1: "id", 2: "c"}, present("id", "c")) == ([], [], [])
    assert steps(ch, {1: "id", 2: "c"}, present("id", "c"), drop=True) == (["c"], [], [])


@pytest.mark.parametrize("drop", [False, True])
def test_a_column_dropped_and_added_again_by_name_starts_anew(drop: bool) -> None:
    ch = change((1, "id"), (3, "c"))
    assert steps(ch, {1: "id", 2: "c"}, present("id", "C"), drop) == (["C"], [], ["c"])


def test_a_new_column_the_target_already_has_was_half_made() -> None:
    # A unit cut short after its ADD COLUMN: made again, then filled with the rest.
    ch = change((1, "id"), (2, "c"), missing={"c": "7"})
    s = column_steps(ch, {1: "id"}, present("id", "c"), False)
    assert s.drop == ["c"]
    assert s.added == [NewColumn(2, "c", "integer", "7")]


def test_a_rename_and_a_new_column_taking_the_old_name() -> None:
    ch = change((1, "id"), (2, "w"), (3, "v"))
    assert steps(ch, {1: "id", 2: "v"}, present("id", "v")) == ([], [("v", "w")], ["v"])


def test_without_attnums_columns_are_matched_by_name() -> None:
    ch = change((1, "id"), (2, "c"))
    s = column_steps(ch, None, present("id", "c"), True)
    assert (s.drop, s.rename, s.added, s.unmatched) == ([], [], [], None)
    s = column_steps(change((1, "id"), (2, "w")), None, present("id", "v"), True)
    # A column gone and one new: perhaps a rename; neither dropped nor guessed.
    assert (s.drop, s.rename, [c.name for c in s.added]) == ([], [], ["w"])
    assert s.unmatched == (["v"], ["w"])


def test_a_malformed_change_is_refused() -> None:
    c = Change("ddl", "0/1", "public", "t", ["a"], ["integer"], [None], [], None, 0,
               {"action": "alter", "relid": 5, "attnums": []})  # fmt: skip
    with pytest.raises(DecodeError):
        parse(c, Naming())
    c.ddl = {"action": "truncate", "relid": 5, "attnums": [1]}
    with pytest.raises(DecodeError):
        parse(c, Naming())


# ---------------------------------------------------------------- statements


@pytest.fixture(scope="module")
def sql() -> DdlSql:
    dialect: Dialect = sa.create_engine("mariadb+mariadbconnector://u:p@localhost/db").dialect
    return DdlSql(dialect)


AWKWARD = TargetRef("other db", "we`ird")


def test_names_are_quoted_by_the_dialect(sql: DdlSql) -> None:
    assert sql.drop_table(AWKWARD) == "DROP TABLE IF EXISTS `other db`.`we``ird`"
    assert sql.rename_table(T, AWKWARD) == "RENAME TABLE `t` TO `other db`.`we``ird`"
    assert sql.rename_column(T, "select", "a`b") == (
        "ALTER TABLE `t` RENAME COLUMN `select` TO `a``b`"
    )
    assert sql.drop_columns(T, ["x", "Ünï"]) == (
        "ALTER TABLE `t` DROP COLUMN IF EXISTS `x`, DROP COLUMN IF EXISTS `Ünï`"
    )


def test_a_name_with_an_odd_quote_keeps_the_connector_counting_right(sql: DdlSql) -> None:
    # The value is bound: the name's quote is balanced by a comment (upsert.driver_safe).
    assert sql.fill(TargetRef(None, "it's"), 'say "hi') == (
        "UPDATE `it's`/*'*/ SET `say \"hi`/*\"*/=?"
    )


def test_a_key_follows_the_source(sql: DdlSql) -> None:
    statement = sql.primary_key(T, ["a"], [("b", "text"), ("c", "integer")], [("a", "int(11)")])
    assert statement == (
        "ALTER TABLE `t` DROP PRIMARY KEY, MODIFY COLUMN `b` VARCHAR(255) NOT NULL, "
        "MODIFY COLUMN `c` INTEGER NOT NULL, MODIFY COLUMN `a` int(11) NULL, "
        "ADD PRIMARY KEY (`b`, `c`)"
    )
    assert sql.primary_key(T, ["a"], [], []) == "ALTER TABLE `t` DROP PRIMARY KEY"
