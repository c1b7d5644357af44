from __future__ import annotations

import random

import pytest
import sqlalchemy as sa

from applier.plan import Group, build_plan
from applier.upsert import Statements
from shared.envelope import Change, OldKey
from shared.naming import Naming, TargetRef
from shared.tables import TableRef


@pytest.fixture(scope="module")
def statements() -> Statements:
    return Statements(sa.create_engine("mariadb+mariadbconnector://u:p@localhost/db").dialect)


def insert(table: str, **values: object) -> Change:
    return Change(
        op="insert",
        lsn="0/1",
        schema="public",
        table=table,
        columns=list(values),
        types=["integer" if isinstance(v, int) else "text" for v in values.values()],
        values=list(values.values()),
        key=["id"] if "id" in values else [],
        old_key=None,
    )


def update(table: str, old: dict[str, object], **values: object) -> Change:
    change = insert(table, **values)
    change.op = "update"
    change.old_key = OldKey(list(old), ["integer"] * len(old), list(old.values()))
    return change


def delete(table: str, key: list[str], **old: object) -> Change:
    return Change(
        op="delete",
        lsn="0/1",
        schema="public",
        table=table,
        columns=[],
        types=[],
        values=[],
        key=key,
        old_key=OldKey(list(old), ["integer"] * len(old), list(old.values())),
    )


def truncate(table: str, schema: str = "public") -> Change:
    return Change("truncate", "0/1", schema, table, [], [], [], [], None)


def shape(groups: list[Group]) -> list[tuple[str, str, list[tuple[object, ...]]]]:
    return [(str(g.table), g.op, g.rows) for g in groups]


def tables(*names: str) -> set[TargetRef]:
    return {TargetRef(None, n) for n in names}


# ---------------------------------------------------------------- grouping


def test_consecutive_same_shape_changes_merge(statements: Statements) -> None:
    plan = build_plan(
        [insert("t", id=1, v="a"), insert("t", id=2, v="b"), update("t", {"id": 3}, id=3, v="c")],
        statements,
        tables("t"),
    )
    assert shape(plan.groups) == [("t", "upsert", [(1, "a"), (2, "b"), (3, "c")])]
    assert plan.groups[0].statement is statements.upsert(TargetRef(None, "t"), ("id", "v"), ("id",))


def test_shape_change_splits_groups(statements: Statements) -> None:
    plan = build_plan(
        [
            insert("t", id=1, v="a"),
            insert("t", id=2),  # fewer columns: another statement
            insert("t", id=3, v="c"),
        ],
        statements,
        tables("t"),
    )
    assert shape(plan.groups) == [
        ("t", "upsert", [(1, "a")]),
        ("t", "upsert", [(2,)]),
        ("t", "upsert", [(3, "c")]),
    ]


def test_deletes_between_upserts_keep_their_place(statements: Statements) -> None:
    plan = build_plan(
        [
            insert("t", id=1, v="a"),
            delete("t", ["id"], id=1),
            delete("t", ["id"], id=2),
            insert("t", id=1, v="b"),
        ],
        statements,
        tables("t"),
    )
    assert shape(plan.groups) == [
        ("t", "upsert", [(1, "a")]),
        ("t", "delete", [(1,), (2,)]),
        ("t", "upsert", [(1, "b")]),
    ]


def test_groups_per_table_keep_per_table_order(statements: Statements) -> None:
    plan = build_plan(
        [
            insert("a", id=1),
            insert("b", id=10),
            delete("a", ["id"], id=1),
            insert("b", id=11),
            insert("a", id=2),
        ],
        statements,
        tables("a", "b"),
    )
    assert shape(plan.groups) == [
        ("a", "upsert", [(1,)]),
        ("a", "delete", [(1,)]),
        ("a", "upsert", [(2,)]),
        ("b", "upsert", [(10,), (11,)]),
    ]


def test_other_schemas_get_prefixed_table_names(statements: Statements) -> None:
    change = insert("orders", id=1)
    change.schema = "sales"
    plan = build_plan([change, insert("orders", id=2)], statements, set())
    assert shape(plan.groups) == [
        ("sales__orders", "upsert", [(1,)]),
        ("orders", "upsert", [(2,)]),
    ]
    assert "sales__orders" in plan.groups[0].statement.sql


# ---------------------------------------------------------------- updates


def test_update_without_key_change_is_one_upsert(statements: Statements) -> None:
    plan = build_plan([update("t", {"id": 5}, id=5, v="new")], statements, tables("t"))
    assert shape(plan.groups) == [("t", "upsert", [(5, "new")])]


def test_update_that_changes_the_key_moves_the_row_in_place(statements: Statements) -> None:
    # An UPDATE ... WHERE old key, not a delete and an insert: the columns the change leaves
    # out (unchanged TOASTed values) keep their values.
    plan = build_plan([update("t", {"id": 5}, id=6, v="moved")], statements, tables("t"))
    assert shape(plan.groups) == [("t", "update", [(6, "moved", 5)])]
    stmt = plan.groups[0].statement
    assert stmt is statements.update(TargetRef(None, "t"), ("id", "v"), ("id",), False)
    assert stmt.sql == "UPDATE t SET id=?, v=? WHERE t.id = ?"


def test_composite_key_change_matches_the_old_key_only(statements: Statements) -> None:
    moved = Change(
        op="update",
        lsn="0/1",
        schema="public",
        table="lines",
        columns=["order_id", "line_no", "qty"],
        types=["integer", "integer", "integer"],
        values=[1, 3, 7],
        key=["order_id", "line_no"],
        # REPLICA IDENTITY FULL: the old row holds every column, in table order
        old_key=OldKey(["qty", "line_no", "order_id"], ["integer"] * 3, [7, 2, 1]),
    )
    plan = build_plan([moved], statements, tables("lines"))
    assert shape(plan.groups) == [("lines", "update", [(1, 3, 7, 1, 2)])]
    assert plan.groups[0].statement is statements.update(
        TargetRef(None, "lines"), ("order_id", "line_no", "qty"), ("order_id", "line_no"), False
    )


def test_full_identity_update_without_key_change_is_one_upsert(statements: Statements) -> None:
    change = update("t", {"id": 5, "v": 1}, id=5, v="new")
    plan = build_plan([change], statements, tables("t"))
    assert shape(plan.groups) == [("t", "upsert", [(5, "new")])]


def test_keyless_update_changes_the_whole_old_row_in_place(statements: Statements) -> None:
    # REPLICA IDENTITY FULL: the old row holds the TOASTed value the new one leaves out.
    change = update("events", {"at": 1, "what": None, "body": "long"}, at=1, what="x")
    assert change.key == []
    plan = build_plan([change], statements, tables("events"))
    assert shape(plan.groups) == [("events", "update", [(1, "x", 1, None, "long")])]
    sql = plan.groups[0].statement.sql
    assert sql == (
        "UPDATE events SET at=?, what=? WHERE events.at <=> ? AND events.what <=> ?"
        " AND events.body <=> ? LIMIT 1"
    )


def test_update_found_by_another_unique_index_is_made_in_place(statements: Statements) -> None:
    # REPLICA IDENTITY USING INDEX on (code): the identity lacks the primary key, so whether
    # the key changed is unknown; the row is found by the identity.
    change = update("u", {"code": "a"}, id=20, code="a", v=2)
    change.types = ["integer", "text", "integer"]
    change.old_key.types = ["text"]  # type: ignore[union-attr]
    plan = build_plan([change], statements, tables("u"))
    assert shape(plan.groups) == [("u", "update", [(20, "a", 2, "a")])]
    assert plan.groups[0].statement.sql == "UPDATE u SET id=?, code=?, v=? WHERE u.code = ?"


def test_moves_keep_their_order_with_other_changes(statements: Statements) -> None:
    # 1 -> 2, 2 -> 3, then a delete of 3 and an insert of 1: each in its place, runs of the
    # same statement merged.
    plan = build_plan(
        [
            update("t", {"id": 1}, id=2, v="a"),
            update("t", {"id": 2}, id=3, v="a"),
            update("t", {"id": 3}, id=3, v="b"),
            delete("t", ["id"], id=3),
            insert("t", id=1, v="c"),
        ],
        statements,
        tables("t"),
    )
    assert shape(plan.groups) == [
        ("t", "update", [(2, "a", 1), (3, "a", 2)]),
        ("t", "upsert", [(3, "b")]),
        ("t", "delete", [(3,)]),
        ("t", "upsert", [(1, "c")]),
    ]


def test_keyless_delete_matches_the_whole_row(statements: Statements) -> None:
    plan = build_plan([delete("events", [], at=1, what=2)], statements, tables("events"))
    assert shape(plan.groups) == [("events", "delete", [(1, 2)])]
    assert plan.groups[0].statement is statements.delete(
        TargetRef(None, "events"), ("at", "what"), True
    )


# ---------------------------------------------------------------- truncate


def test_truncate_of_an_existing_table(statements: Statements) -> None:
    plan = build_plan(
        [insert("t", id=1), truncate("t"), insert("t", id=2)], statements, tables("t")
    )
    assert shape(plan.groups) == [
        ("t", "upsert", [(1,)]),
        ("t", "truncate", []),
        ("t", "upsert", [(2,)]),
    ]
    assert plan.groups[1].statement is statements.truncate(TargetRef(None, "t"))


def test_truncate_of_a_missing_table_is_skipped(statements: Statements) -> None:
    plan = build_plan([truncate("gone")], statements, tables("t"))
    assert plan.groups == []
    assert plan.counts == {(TargetRef(None, "gone"), "truncate"): 1}


def test_truncate_of_another_schema(statements: Statements) -> None:
    plan = build_plan([truncate("orders", schema="sales")], statements, tables("sales__orders"))
    assert shape(plan.groups) == [("sales__orders", "truncate", [])]


# ---------------------------------------------------------------- counts and values


def test_counts_per_table_and_op(statements: Statements) -> None:
    plan = build_plan(
        [
            insert("a", id=1),
            insert("a", id=2),
            update("a", {"id": 2}, id=3),
            update("a", {"id": 3}, id=3),
            delete("a", ["id"], id=1),
            insert("b", id=1),
            truncate("b"),
        ],
        statements,
        tables("a", "b"),
    )
    a, b = TargetRef(None, "a"), TargetRef(None, "b")
    assert plan.counts == {
        (a, "insert"): 2,
        (a, "update"): 2,
        (a, "delete"): 1,
        (b, "insert"): 1,
        (b, "truncate"): 1,
    }


def test_empty_batch(statements: Statements) -> None:
    plan = build_plan([], statements, set())
    assert plan.groups == []
    assert plan.counts == {}


def test_values_are_converted_for_binding(statements: Statements) -> None:
    change = Change(
        op="insert",
        lsn="0/1",
        schema="public",
        table="blobs",
        columns=["id", "data", "at", "ok"],
        types=["bytea", "bytea", "timestamp with time zone", "boolean"],
        values=["00ff", "", "2024-02-29 07:04:56.123456+05:30", "t"],
        key=["id"],
        old_key=None,
    )
    gone = Change(
        op="delete",
        lsn="0/2",
        schema="public",
        table="blobs",
        columns=[],
        types=[],
        values=[],
        key=["id"],
        old_key=OldKey(["id"], ["bytea"], ["\\x0a0b"]),
    )
    plan = build_plan([change, gone], statements, tables("blobs"))
    assert shape(plan.groups) == [
        ("blobs", "upsert", [(b"\x00\xff", b"", "2024-02-29 01:34:56.123456", True)]),
        ("blobs", "delete", [(b"\n\x0b",)]),
    ]


def test_mapped_schema_and_renamed_table(statements: Statements) -> None:
    naming = Naming({TableRef("public", "orders"): "orders_copy"}, {"sales": "sales_db"})
    plan = build_plan(
        [insert("orders", id=1), truncate("items", schema="sales")],
        statements,
        {TargetRef("sales_db", "items")},
        naming,
    )
    assert [str(g.table) for g in plan.groups] == ["orders_copy", "sales_db.items"]
    assert "INSERT INTO orders_copy" in plan.groups[0].statement.sql
    assert plan.groups[1].statement.sql == "DELETE FROM sales_db.items"


def test_runs_of_one_shape_match_the_change_by_change_plan(statements: Statements) -> None:
    # build_plan looks a run's statement and converters up once; interleaved tables, plain
    # updates, shape changes and deletes in between must give what one change at a time gives.
    rng = random.Random(7)
    changes: list[Change] = []
    for i in range(2000):
        table = rng.choice(["a", "b"])
        kind = rng.random()
        if kind < 0.6:
            changes.append(insert(table, id=i, v=f"r{i}", ok="t"))
        elif kind < 0.75:
            plain = insert(table, id=i, v=f"u{i}", ok="f")
            plain.op = "update"
            changes.append(plain)
        elif kind < 0.85:
            changes.append(insert(table, id=i))
        else:
            changes.append(delete(table, ["id"], id=i))
    for c in changes:
        if "ok" in c.columns:
            c.types[c.columns.index("ok")] = "boolean"
    plan = build_plan(changes, statements, tables("a", "b"))

    expected: dict[str, list[tuple[str, list[tuple[object, ...]]]]] = {"a": [], "b": []}
    for c in changes:
        groups = expected[c.table]
        if c.op == "delete":
            assert c.old_key is not None
            sql, row = (
                statements.delete(TargetRef(None, c.table), ("id",), False).sql,
                (c.old_key.values[0],),
            )
        else:
            values = [
                (v == "t") if col == "ok" else v for col, v in zip(c.columns, c.values, strict=True)
            ]
            sql = statements.upsert(TargetRef(None, c.table), tuple(c.columns), ("id",)).sql
            row = tuple(values)
        if groups and groups[-1][0] == sql:
            groups[-1][1].append(row)
        else:
            groups.append((sql, [row]))
    assert [(str(g.table), g.statement.sql, g.rows) for g in plan.groups] == [
        (t, sql, rows) for t in dict.fromkeys(c.table for c in changes) for sql, rows in expected[t]
    ]
    a, b = TargetRef(None, "a"), TargetRef(None, "b")
    assert sum(plan.counts.values()) == len(changes)
    assert plan.counts[(a, "update")] == sum(c.table == "a" and c.op == "update" for c in changes)
    assert plan.counts[(b, "insert")] == sum(c.table == "b" and c.op == "insert" for c in changes)
