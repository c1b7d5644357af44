from __future__ import annotations

import re

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect

from applier.alter import AddPrimaryKey
from applier.upsert import Compiled, Statements
from shared.naming import TargetRef


@pytest.fixture(scope="module")
def dialect() -> Dialect:
    # Creating an engine makes no connection; only its dialect is used.
    return sa.create_engine("mariadb+mariadbconnector://u:p@localhost/db").dialect


@pytest.fixture
def statements(dialect: Dialect) -> Statements:
    return Statements(dialect)


def squash(sql: str) -> str:
    return " ".join(sql.split())


# ---------------------------------------------------------------- upsert


def test_upsert_updates_every_non_key_column(statements: Statements) -> None:
    c = statements.upsert(TargetRef(None, "t"), ("a", "b", "c"), ("a",))
    assert squash(c.sql) == (
        "INSERT INTO t (a, b, c) VALUES (?, ?, ?) "
        "ON DUPLICATE KEY UPDATE b = VALUES(b), c = VALUES(c)"
    )
    assert c.order == (0, 1, 2)


def test_upsert_with_a_composite_key(statements: Statements) -> None:
    c = statements.upsert(
        TargetRef(None, "order_lines"),
        ("order_id", "line_no", "qty", "price"),
        ("order_id", "line_no"),
    )
    sql = squash(c.sql)
    assert sql.startswith(
        "INSERT INTO order_lines (order_id, line_no, qty, price) VALUES (?, ?, ?, ?)"
    )
    assert sql.endswith("ON DUPLICATE KEY UPDATE qty = VALUES(qty), price = VALUES(price)")
    assert "order_id = VALUES" not in sql
    assert "line_no = VALUES" not in sql


def test_upsert_key_in_the_middle(statements: Statements) -> None:
    c = statements.upsert(TargetRef(None, "t"), ("c", "b", "a"), ("b",))
    assert squash(c.sql) == (
        "INSERT INTO t (c, b, a) VALUES (?, ?, ?) "
        "ON DUPLICATE KEY UPDATE c = VALUES(c), a = VALUES(a)"
    )
    assert c.params(["cv", "bv", "av"]) == ("cv", "bv", "av")


def test_upsert_uses_only_question_mark_placeholders(statements: Statements) -> None:
    c = statements.upsert(TargetRef(None, "t"), ("a", "b", "c", "d"), ("a",))
    assert c.sql.count("?") == 4
    assert len(c.order) == 4
    assert "%s" not in c.sql
    assert ":p" not in c.sql


def test_upsert_params_follow_the_placeholders(statements: Statements) -> None:
    columns = ("id", "name", "price", "note")
    c = statements.upsert(TargetRef(None, "t"), columns, ("id",))
    # the n-th ? in the SQL is the column named n-th in the column list
    listed = re.search(r"\((.*?)\) VALUES", c.sql)
    assert listed is not None
    assert tuple(n.strip() for n in listed.group(1).split(",")) == columns
    assert c.params([1, "x", "9.99", None]) == (1, "x", "9.99", None)
    assert c.params((1, "x", "9.99", None)) == (1, "x", "9.99", None)


def test_only_key_columns_still_makes_a_valid_upsert(statements: Statements) -> None:
    c = statements.upsert(TargetRef(None, "pairs"), ("a", "b"), ("a", "b"))
    # a no-op assignment: a replayed insert changes nothing and raises no duplicate-key error
    assert (
        squash(c.sql)
        == "INSERT INTO pairs (a, b) VALUES (?, ?) ON DUPLICATE KEY UPDATE a = VALUES(a)"
    )


def test_keyless_table_gets_a_plain_insert(statements: Statements) -> None:
    c = statements.upsert(TargetRef(None, "events"), ("at", "what"), ())
    assert squash(c.sql) == "INSERT INTO events (at, what) VALUES (?, ?)"
    assert "DUPLICATE" not in c.sql


# ---------------------------------------------------------------- Compiled.params


def test_params_reorders_by_order() -> None:
    c = Compiled("x", (2, 0, 1))
    assert c.params(["a", "b", "c"]) == ("c", "a", "b")


def test_params_can_repeat_and_drop_values() -> None:
    c = Compiled("x", (1, 1))
    assert c.params(["a", "b", "c"]) == ("b", "b")


def test_params_identity_order() -> None:
    c = Compiled("x", (0, 1))
    assert c.params(["a", None]) == ("a", None)
    assert Compiled("x", ()).params([]) == ()


# ---------------------------------------------------------------- update in place


def test_update_in_place_sets_what_came_and_matches_the_old_key(statements: Statements) -> None:
    c = statements.update(
        TargetRef("db", "order_lines"),
        ("order_id", "line_no", "qty"),
        ("order_id", "line_no"),
        False,
    )
    assert squash(c.sql) == (
        "UPDATE db.order_lines SET order_id=?, line_no=?, qty=?"
        " WHERE db.order_lines.order_id = ? AND db.order_lines.line_no = ?"
    )
    assert "LIMIT" not in c.sql
    # the new values first, then the old key
    assert c.params([1, 3, 7, 1, 2]) == (1, 3, 7, 1, 2)


def test_keyless_update_matches_the_whole_old_row_null_safe_once(statements: Statements) -> None:
    # The old row may hold columns the new one leaves out (an unchanged TOASTed value).
    c = statements.update(TargetRef(None, "events"), ("at",), ("at", "what", "body"), True)
    assert squash(c.sql) == (
        "UPDATE events SET at=? WHERE events.at <=> ? AND events.what <=> ?"
        " AND events.body <=> ? LIMIT 1"
    )
    assert c.params([2, 1, None, "long"]) == (2, 1, None, "long")


# ---------------------------------------------------------------- delete and truncate


def test_delete_by_key(statements: Statements) -> None:
    c = statements.delete(TargetRef(None, "order_lines"), ("order_id", "line_no"), False)
    assert (
        squash(c.sql)
        == "DELETE FROM order_lines WHERE order_lines.order_id = ? AND order_lines.line_no = ?"
    )
    assert "<=>" not in c.sql
    assert "LIMIT" not in c.sql
    assert c.params([1, 2]) == (1, 2)


def test_keyless_delete_matches_the_whole_row_null_safe_once(statements: Statements) -> None:
    c = statements.delete(TargetRef(None, "events"), ("at", "what", "n"), True)
    assert squash(c.sql) == (
        "DELETE FROM events WHERE events.at <=> ? AND events.what <=> ? AND events.n <=> ? LIMIT 1"
    )
    assert c.params(["t", None, 3]) == ("t", None, 3)


def test_truncate_is_a_delete(statements: Statements) -> None:
    c = statements.truncate(TargetRef(None, "orders"))
    assert squash(c.sql) == "DELETE FROM orders"
    assert "TRUNCATE" not in c.sql.upper()
    assert c.order == ()


# ---------------------------------------------------------------- awkward identifiers


AWKWARD = [
    ("we`ird", "`we``ird`"),
    ("two``ticks", "`two````ticks`"),
    # An odd number of ' or " is balanced by a comment, for MariaDB Connector/Python's parser.
    ('dq"name', '`dq"name`/*"*/'),
    ("it's", "`it's`/*'*/"),
    ("x'y\"z", "`x'y\"z`/*'\"*/"),
    ("even''quotes", "`even''quotes`"),
    ("sp ace", "`sp ace`"),
    ("select", "`select`"),
    ("order", "`order`"),
    ("naïve", "`naïve`"),
    ("🎉party", "`🎉party`"),
    ("Upper", "`Upper`"),
]


@pytest.mark.parametrize(("name", "quoted"), AWKWARD)
def test_awkward_table_name_is_quoted(statements: Statements, name: str, quoted: str) -> None:
    for c in (
        statements.upsert(TargetRef(None, name), ("id", "v"), ("id",)),
        statements.upsert(TargetRef(None, name), ("id",), ()),
        statements.delete(TargetRef(None, name), ("id",), False),
        statements.delete(TargetRef(None, name), ("id",), True),
        statements.update(TargetRef(None, name), ("id", "v"), ("id",), False),
        statements.update(TargetRef(None, name), ("id", "v"), ("id", "v"), True),
        statements.truncate(TargetRef(None, name)),
    ):
        assert quoted in c.sql
        assert name not in c.sql.replace(quoted, "")


@pytest.mark.parametrize(("name", "quoted"), AWKWARD)
def test_awkward_column_name_is_quoted(statements: Statements, name: str, quoted: str) -> None:
    upsert = statements.upsert(TargetRef(None, "t"), ("id", name), ("id",))
    assert squash(upsert.sql) == (
        f"INSERT INTO t (id, {quoted}) VALUES (?, ?) "
        f"ON DUPLICATE KEY UPDATE {quoted} = VALUES({quoted})"
    )
    keyed = statements.upsert(TargetRef(None, "t"), (name, "v"), (name,))
    assert f"INSERT INTO t ({quoted}, v)" in keyed.sql
    delete = statements.delete(TargetRef(None, "t"), (name,), False)
    assert squash(delete.sql) == f"DELETE FROM t WHERE t.{quoted} = ?"
    whole = statements.delete(TargetRef(None, "t"), (name, "v"), True)
    assert squash(whole.sql) == f"DELETE FROM t WHERE t.{quoted} <=> ? AND t.v <=> ? LIMIT 1"
    moved = statements.update(TargetRef(None, "t"), (name, "v"), (name,), False)
    assert squash(moved.sql) == f"UPDATE t SET {quoted}=?, v=? WHERE t.{quoted} = ?"
    for c in (upsert, keyed, delete, whole, moved):
        assert name not in c.sql.replace(quoted, "")


def connector_placeholders(sql: str) -> int:
    """Count ? the way MariaDB Connector/Python 1.1 does: a flag per quote character, each
    flipped on every occurrence, and a ? counts only when no flag is set."""
    flags = {"'": False, '"': False, "`": False}
    count = 0
    for ch in sql:
        if ch in flags:
            flags[ch] = not flags[ch]
        elif ch == "?" and not any(flags.values()):
            count += 1
    return count


@pytest.mark.parametrize(("name", "quoted"), AWKWARD)
def test_the_driver_sees_every_placeholder(statements: Statements, name: str, quoted: str) -> None:
    for c in (
        statements.upsert(TargetRef(None, name), ("id", name, "v"), ("id",)),
        statements.upsert(TargetRef(None, "t"), (name, "v", "w"), (name,)),
        statements.delete(TargetRef(None, name), (name, "v"), False),
        statements.delete(TargetRef(None, name), (name, "v"), True),
        statements.update(TargetRef(None, name), (name, "v"), (name,), False),
        statements.update(TargetRef(None, name), ("v", name), (name, "v"), True),
    ):
        assert connector_placeholders(c.sql) == len(c.order), c.sql


def test_placeholder_count_with_awkward_names(statements: Statements) -> None:
    names = tuple(n for n, _ in AWKWARD)
    c = statements.upsert(TargetRef(None, "t"), ("id", *names), ("id",))
    assert len(c.order) == len(names) + 1
    assert c.order == tuple(range(len(names) + 1))


# ---------------------------------------------------------------- caching


def test_statements_are_cached_per_shape(statements: Statements) -> None:
    a = statements.upsert(TargetRef(None, "t"), ("a", "b"), ("a",))
    assert statements.upsert(TargetRef(None, "t"), ("a", "b"), ("a",)) is a
    assert statements.upsert(TargetRef(None, "t"), ("a", "b"), ("b",)) is not a
    assert statements.upsert(TargetRef(None, "t"), ("b", "a"), ("a",)) is not a
    assert statements.upsert(TargetRef(None, "u"), ("a", "b"), ("a",)) is not a
    d = statements.delete(TargetRef(None, "t"), ("a",), False)
    assert statements.delete(TargetRef(None, "t"), ("a",), False) is d
    assert statements.delete(TargetRef(None, "t"), ("a",), True) is not d
    u = statements.update(TargetRef(None, "t"), ("a", "b"), ("a",), False)
    assert statements.update(TargetRef(None, "t"), ("a", "b"), ("a",), False) is u
    assert statements.update(TargetRef(None, "t"), ("a", "b"), ("a",), True) is not u
    t = statements.truncate(TargetRef(None, "t"))
    assert statements.truncate(TargetRef(None, "t")) is t


# ---------------------------------------------------------------- DDL


def test_a_primary_key_added_with_its_key_types(dialect: Dialect) -> None:
    ddl = AddPrimaryKey(
        TargetRef("db", "we`ird"), [("id", mysql.INTEGER()), ("code", mysql.VARCHAR(255))]
    )
    assert str(ddl.compile(dialect=dialect)) == (
        "ALTER TABLE db.`we``ird` MODIFY COLUMN id INTEGER NOT NULL,"
        " MODIFY COLUMN code VARCHAR(255) NOT NULL, ADD PRIMARY KEY (id, code)"
    )
