"""The DDL capture's messages as the extractor reads them (extractor/ddl.py), schema changes in
the envelope, the shapes the extractor remembers (extractor/shapes.py) and its state."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from extractor.assemble import Assembler
from extractor.ddl import SchemaChanges, parse_event
from extractor.decode import Begin, LogicalMessage
from extractor.shapes import Shape, ShapeWatch
from extractor.state import decode_state, encode_state
from extractor.wal2json import Wal2Json
from shared.errors import DecodeError
from shared.lsn import parse_lsn
from shared.tables import TableFilter, TableRef, parse_patterns
from shared.wire import decode

T = TableRef("public", "t")
U = TableRef("public", "u")
COMMIT = parse_lsn("0/2256660")

# Real output of sql/ddl-capture.sql through wal2json (PostgreSQL 15): a rename of column 2 in
# a transaction, the value rows hold after ADD COLUMN ... DEFAULT, a rewrite, a partition.
RENAMED = (
    '{"action":"M","lsn":"0/2256610","transactional":true,"prefix":"pg2maria.ddl","content":'
    '"{\\"v\\": 1, \\"tag\\": \\"ALTER TABLE\\", \\"event\\": \\"ddl\\", \\"tables\\": [{\\"key'
    '\\": [\\"id\\"], \\"oid\\": \\"16507\\", \\"kind\\": \\"r\\", \\"name\\": \\"t\\", \\"root'
    '\\": null, \\"schema\\": \\"public\\", \\"columns\\": [[1, \\"id\\", \\"integer\\", null], '
    '[2, \\"a2\\", \\"integer\\", null], [3, \\"b\\", \\"text\\", null]]}]}"}'
)


def event(event: str, tables: list[dict[str, Any]], **more: Any) -> str:
    return json.dumps({"v": 1, "event": event, "tag": "ALTER TABLE", "tables": tables, **more})


def table(name: str = "t", oid: int = 100, **more: Any) -> dict[str, Any]:
    return {
        "oid": str(oid),
        "schema": "public",
        "name": name,
        "kind": "r",
        "root": None,
        "columns": [[1, "id", "integer", None], [3, "c", "integer", "7"]],
        "key": ["id"],
        **more,
    }


def changes_for(
    content: str,
    *,
    capture: TableFilter | None = None,
    watch: ShapeWatch | None = None,
    copied: set[TableRef] | None = None,
    copies_missing: bool = True,
) -> Any:
    ddl = SchemaChanges(capture or TableFilter(), watch or ShapeWatch(), copies_missing)
    return ddl.handle(content, "0/2256610", copied if copied is not None else {T})


def test_a_real_message_decodes_with_its_lsn() -> None:
    record = Wal2Json().decoder(None).decode(RENAMED.encode(), 0)
    assert isinstance(record, LogicalMessage)
    assert record.lsn == "0/2256610" and record.prefix == "pg2maria.ddl"
    ev = parse_event(record.content)
    assert ev.event == "ddl" and ev.tag == "ALTER TABLE"
    (rel,) = ev.tables
    assert rel.oid == 16507 and rel.ref == T and rel.key == ("id",)
    assert [(c.attnum, c.name, c.type) for c in rel.columns] == [
        (1, "id", "integer"),
        (2, "a2", "integer"),
        (3, "b", "text"),
    ]


@pytest.mark.parametrize(
    "content",
    ['{"v": 2, "event": "ddl", "tables": []}', "not json", '{"v": 1, "tables": [{}]}'],
)
def test_an_unreadable_message_is_said_and_skipped(
    content: str, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(DecodeError):
        parse_event(content)
    with caplog.at_level(logging.ERROR):
        out = changes_for(content)
    assert not out.changes and not out.copy
    assert "ddl_message_unreadable" in caplog.text


def test_an_alter_becomes_one_change_just_before_the_next_record() -> None:
    out = changes_for(event("ddl", [table()]))
    (change,) = out.changes
    assert change == {
        "op": "ddl",
        # One less than where the message's record ends: the next record starts there.
        "lsn": "0/225660F",
        "schema": "public",
        "table": "t",
        "columns": ["id", "c"],
        "types": ["integer", "integer"],
        "values": [None, "7"],
        "key": ["id"],
        "ddl": {"action": "alter", "relid": 100, "attnums": [1, 3], "recopy": False},
    }
    assert not out.copy and not out.created


def test_excluded_columns_are_left_out_of_a_schema_change() -> None:
    capture = TableFilter(exclude_columns=parse_patterns("public.t.c", "x", 3))
    (change,) = changes_for(event("ddl", [table()]), capture=capture).changes
    assert change["columns"] == ["id"] and change["ddl"]["attnums"] == [1]


def test_a_table_not_captured_says_nothing() -> None:
    capture = TableFilter(include=parse_patterns("public.other", "x"))
    out = changes_for(event("ddl", [table()]), capture=capture)
    assert not out.changes and not out.copy


def test_a_created_table_is_complete_from_there() -> None:
    content = json.dumps({"v": 1, "event": "ddl", "tag": "CREATE TABLE", "tables": [table()]})
    out = changes_for(content, copied=set())
    assert out.changes[0]["ddl"]["action"] == "create"
    assert out.created == [T] and not out.copy


def test_a_rewrite_copies_the_table_and_marks_its_change() -> None:
    ddl = SchemaChanges(TableFilter(), ShapeWatch(), True)
    copied = {T}
    rewrite = ddl.handle(event("rewrite", [table()], reason=4), "0/100", copied)
    assert rewrite.copy == [T] and not rewrite.changes
    out = ddl.handle(event("ddl", [table()]), "0/200", copied)
    assert out.changes[0]["ddl"]["recopy"] is True
    # Another transaction's command on it is not a rewrite.
    ddl.committed()
    again = ddl.handle(event("ddl", [table()]), "0/300", copied)
    assert again.changes[0]["ddl"]["recopy"] is False


def test_a_rewrite_of_a_new_access_method_changes_no_value() -> None:
    assert not changes_for(event("rewrite", [table()], reason=8)).copy


def test_a_rewritten_partition_copies_its_root() -> None:
    part = table("t_1", 101, root=["public", "t"])
    assert changes_for(event("rewrite", [part], reason=4)).copy == [T]


def test_partitions_with_rows_attached_or_detached_copy_the_root() -> None:
    assert not changes_for(event("ddl", [table(attached=[["300", False]])])).copy
    assert changes_for(event("ddl", [table(attached=[["300", True]])])).copy == [T]
    assert changes_for(event("ddl", [table(detached=[["301", True]])])).copy == [T]


def test_a_dropped_partition_copies_its_root_unless_the_root_goes_too() -> None:
    part = {"oid": "101", "schema": "public", "name": "t_1", "root": ["public", "t"]}
    root = {"oid": "100", "schema": "public", "name": "t", "root": None}
    assert changes_for(event("drop", [part])).copy == [T]
    out = changes_for(event("drop", [root, part]))
    assert not out.copy
    assert [(c["table"], c["ddl"]["action"]) for c in out.changes] == [("t", "drop")]


def test_a_dropped_table_is_forgotten() -> None:
    watch = ShapeWatch({T: Shape(["id"], ["integer"], 100)})
    copied = {T}
    changes_for(event("drop", [{"oid": "100", "schema": "public", "name": "t"}]), watch=watch,
                copied=copied)  # fmt: skip
    assert copied == set() and watch.named(100) is None


def test_a_rename_inside_the_capture_is_no_copy() -> None:
    watch = ShapeWatch({T: Shape(["id", "c"], ["integer", "integer"], 100)})
    copied = {T}
    out = changes_for(event("ddl", [table("u")]), watch=watch, copied=copied)
    assert not out.copy
    assert out.changes[0]["table"] == "u"
    assert copied == {U} and watch.named(100) == U


def test_a_table_renamed_into_the_capture_is_copied() -> None:
    out = changes_for(event("ddl", [table("u")]), copied={T})
    assert out.copy == [U]
    # With source.snapshot=never only changes are carried.
    assert not changes_for(event("ddl", [table("u")]), copied={T}, copies_missing=False).copy


def test_a_table_renamed_out_of_the_capture_is_dropped_for_the_target() -> None:
    watch = ShapeWatch({T: Shape(["id", "c"], ["integer", "integer"], 100)})
    capture = TableFilter(include=parse_patterns("public.t", "x"))
    copied = {T}
    out = changes_for(event("ddl", [table("u")]), capture=capture, watch=watch, copied=copied)
    assert [(c["table"], c["ddl"]["action"]) for c in out.changes] == [("t", "drop")]
    assert copied == set()


# ---------------------------------------------------------------- the envelope


def test_a_schema_change_travels_alone_and_decodes() -> None:
    asm = Assembler("s", 1000, 1 << 20, None)
    asm.begin(Begin(7, COMMIT, "2026-01-01 00:00:00+00"))
    row = {"op": "insert", "lsn": "0/2256500", "schema": "public", "table": "t",
           "columns": ["id"], "types": ["integer"], "values": [1], "key": ["id"]}  # fmt: skip
    assert asm.add(row, 10) is None
    (ddl_change,) = changes_for(event("ddl", [table()])).changes
    before, alone = asm.alone(ddl_change)
    after = dict(row, lsn="0/2256610", values=[2])
    assert asm.add(after, 10) is None
    last = asm.commit()
    assert last is not None
    envs = [decode(m.body) for m in (before, alone, last)]
    assert [len(e.changes) for e in envs] == [1, 1, 1]
    assert envs[0].schema_change is None and envs[2].schema_change is None
    ddl = envs[1].schema_change
    assert ddl is not None and ddl.ddl is not None
    assert ddl.ddl["attnums"] == [1, 3] and ddl.values == [None, "7"]
    # In order, each continuing from the one before.
    assert envs[0].end < envs[1].sort_key <= envs[1].end < envs[2].sort_key
    assert envs[1].after == envs[0].end and envs[2].after == envs[1].end


def test_a_ddl_change_without_its_object_is_refused() -> None:
    body = json.dumps({"v": 2, "slot": "s", "xid": 1, "commit_lsn": "0/10", "commit_time": "",
        "copy": False, "chunk": 0, "last": True, "after": None, "resumed": False,
        "changes": [{"op": "ddl", "lsn": ["0/9"], "schema": "public", "table": "t"}]})  # fmt: skip
    with pytest.raises(DecodeError, match="ddl object"):
        decode(body.encode())


# ---------------------------------------------------------------- shapes and state


def insert(columns: list[str], types: list[str], op: str = "insert") -> dict[str, Any]:
    return {"op": op, "lsn": "0/1", "schema": "public", "table": "t", "columns": columns,
            "types": types, "values": [None] * len(columns), "key": ["id"]}  # fmt: skip


def test_a_table_is_compared_with_what_was_seen_of_it() -> None:
    watch = ShapeWatch()
    assert watch.check(insert(["id", "c"], ["integer", "integer"])) is None  # first sight
    assert watch.check(insert(["id", "c"], ["integer", "integer"])) is None
    # An update without an unchanged TOASTed column, a delete's key: nothing new.
    assert watch.check(insert(["id"], ["integer"], "update")) is None
    delete = {**insert([], [], "delete"), "old_key": {"columns": ["id"], "types": ["integer"]}}
    assert watch.check(delete) is None
    # A type that changed, a new column, a column gone from an insert: copy it.
    assert watch.check(insert(["id", "c"], ["integer", "bigint"], "update")) == T
    assert watch.check(insert(["id", "c"], ["integer", "bigint"])) is None  # said once
    assert watch.check(insert(["id"], ["integer"])) == T


def test_what_the_capture_reports_is_what_is_expected() -> None:
    watch = ShapeWatch({T: Shape(["id"], ["integer"], 100)})
    watch.reported(T, Shape(["id", "c"], ["integer", "text"], 100))
    assert watch.check(insert(["id", "c"], ["integer", "text"])) is None
    assert watch.durable[T].columns == ["id", "c"]


def test_a_shape_a_pending_copy_must_fix_is_not_stored_before_that_copy() -> None:
    watch = ShapeWatch({T: Shape(["id"], ["integer"], 100)})
    assert watch.check(insert(["id", "c"], ["integer", "text"])) == T
    watch.reported(T, Shape(["id", "c"], ["integer", "text"], 100))
    # A crash now must find the change again: the stored shape is still the old one.
    assert watch.durable[T].columns == ["id"]
    watch.copied({T: Shape(["id", "c"], ["integer", "text"], 100)})
    assert watch.durable[T].columns == ["id", "c"]


def test_state_keeps_copied_tables_and_shapes() -> None:
    watch = ShapeWatch({T: Shape(["id", "c"], ["integer", "text"], 100)})
    stored = decode_state(encode_state({T, U}, watch.to_json()))
    assert stored.copied == {T, U}
    assert stored.shapes == {T: Shape(["id", "c"], ["integer", "text"], 100)}
    # The first version held the copied tables only.
    old = decode_state(json.dumps({"v": 1, "copied": [["public", "t"]]}).encode())
    assert old.copied == {T} and old.shapes == {}


def test_a_copy_that_cannot_agree_with_the_stream_is_not_made_for_ever(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch = ShapeWatch({T: Shape(["id"], ["integer"], 100)})
    stream = insert(["id", "c"], ["integer", "posint"])
    assert watch.check(stream) == T
    # The copy reads c as its base type, the stream keeps showing the domain.
    watch.copying(T, Shape(["id", "c"], ["integer", "integer"], 100))
    with caplog.at_level(logging.ERROR):
        assert watch.check(stream) is None
    assert "copy_and_stream_disagree table=public.t" in caplog.text
    # Rows of a partition list the root's columns in their own order: no change.
    assert watch.check(insert(["c", "id"], ["posint", "integer"])) is None


def test_an_unlogged_table_is_named(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR):
        changes_for(event("ddl", [table(persistence="u")]))
    assert "table_unlogged table=public.t" in caplog.text


def test_a_schema_change_names_types_as_row_changes_do() -> None:
    def base_types(change: dict[str, Any]) -> None:
        change["types"] = ["bigint" if t == "integer" else t for t in change["types"]]

    watch = ShapeWatch()
    ddl = SchemaChanges(TableFilter(), watch, True, base_types)
    (change,) = ddl.handle(event("ddl", [table()]), "0/10", {T}).changes
    assert change["types"] == ["bigint", "bigint"]
    assert watch.check(insert(["id", "c"], ["bigint", "bigint"])) is None
