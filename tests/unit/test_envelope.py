from __future__ import annotations

import json
from typing import Any

import pytest

from shared import wire
from shared.envelope import Change, OldKey, message_id
from shared.errors import DecodeError, UnsupportedVersion
from shared.lsn import parse_lsn
from shared.position import END, Position
from shared.runs import runs_of
from shared.wire import decode, encode

COMMIT_LSN = parse_lsn("16/B374D848")
AFTER = Position.end_of(parse_lsn("16/B374C000"))

INSERT = {
    "op": "insert",
    "lsn": "16/B374D000",
    "schema": "public",
    "table": "ck",
    "columns": ["a", "b", "v", "n"],
    "types": ["integer", "text", "text", "numeric(12,4)"],
    "values": [5, "z é 🎉", None, "12345678.1234"],
    "key": ["a", "b"],
}
UPDATE = {
    "op": "update",
    "lsn": "16/B374D100",
    "schema": "sales",
    "table": "lines",
    "columns": ["order_id", "line_no", "qty"],
    "types": ["integer", "integer", "integer"],
    "values": [1, 3, 7],
    "key": ["order_id", "line_no"],
    "old_key": {
        "columns": ["order_id", "line_no"],
        "types": ["integer", "integer"],
        "values": [1, 2],
    },
}
DELETE = {
    "op": "delete",
    "lsn": "16/B374D200",
    "schema": "public",
    "table": "ck",
    "key": ["a", "b"],
    "old_key": {"columns": ["a", "b"], "types": ["integer", "text"], "values": [5, "z"]},
}
TRUNCATE = {"op": "truncate", "lsn": "16/B374D300", "schema": "public", "table": "ck"}


def body(changes: list[dict[str, Any]] | None = None, **fields: Any) -> bytes:
    args: dict[str, Any] = {
        "slot": "cdc",
        "xid": 731,
        "commit_lsn": COMMIT_LSN,
        "commit_time": "2026-11-22 06:57:26.636428+00",
        "copy": False,
        "after": AFTER,
        "resumed": False,
        "chunk": 2,
        "last": True,
        "changes": [INSERT, UPDATE, DELETE, TRUNCATE] if changes is None else changes,
    }
    args.update(fields)
    return encode(**args)


def doc(**replace: Any) -> dict[str, Any]:
    d: dict[str, Any] = json.loads(body())
    d.update(replace)
    return d


def raw(d: object) -> bytes:
    return json.dumps(d).encode()


# ---------------------------------------------------------------- round trip


def test_round_trip_of_the_envelope_fields() -> None:
    env = decode(body())
    assert env.slot == "cdc"
    assert env.xid == 731
    assert env.commit_lsn == COMMIT_LSN
    assert env.commit_time == "2026-11-22 06:57:26.636428+00"
    assert env.after == AFTER
    assert env.resumed is False
    assert env.copy is False
    assert env.chunk == 2
    assert env.last is True
    assert env.sort_key == Position(COMMIT_LSN, False, (parse_lsn("16/B374D000"), 0))
    assert env.end == Position(COMMIT_LSN, False, END)
    assert len(env.changes) == 4


def test_resumed_and_not_last() -> None:
    env = decode(body(resumed=True, last=False, chunk=0))
    assert env.resumed is True
    assert env.last is False
    assert env.chunk == 0
    # Not the last chunk: it ends at its last change.
    assert env.end == Position(COMMIT_LSN, False, (parse_lsn("16/B374D300"), 0))


def test_wire_form() -> None:
    d = json.loads(body())
    assert d["v"] == wire.VERSION == 2
    assert d["commit_lsn"] == "16/B374D848"
    assert d["after"] == "16/B374C000"
    assert "n" not in d["changes"][0]  # 0 is left out
    # non-ASCII text stays as UTF-8, not \u escapes
    assert "z é 🎉".encode() in body()


def test_insert_round_trip() -> None:
    change = decode(body([INSERT])).changes[0]
    assert change == Change(
        op="insert",
        lsn="16/B374D000",
        schema="public",
        table="ck",
        columns=["a", "b", "v", "n"],
        types=["integer", "text", "text", "numeric(12,4)"],
        values=[5, "z é 🎉", None, "12345678.1234"],
        key=["a", "b"],
        old_key=None,
    )


def test_update_with_old_key_round_trip() -> None:
    change = decode(body([UPDATE])).changes[0]
    assert change.op == "update"
    assert (change.schema, change.table) == ("sales", "lines")
    assert change.columns == ["order_id", "line_no", "qty"]
    assert change.values == [1, 3, 7]
    assert change.key == ["order_id", "line_no"]
    assert change.old_key == OldKey(["order_id", "line_no"], ["integer", "integer"], [1, 2])


def test_update_without_old_key() -> None:
    plain = {k: v for k, v in UPDATE.items() if k != "old_key"}
    assert decode(body([plain])).changes[0].old_key is None


def test_delete_round_trip() -> None:
    change = decode(body([DELETE])).changes[0]
    assert change.op == "delete"
    assert change.columns == change.types == change.values == []
    assert change.key == ["a", "b"]
    assert change.old_key == OldKey(["a", "b"], ["integer", "text"], [5, "z"])


def test_truncate_round_trip() -> None:
    change = decode(body([TRUNCATE])).changes[0]
    assert change == Change(
        op="truncate",
        lsn="16/B374D300",
        schema="public",
        table="ck",
        columns=[],
        types=[],
        values=[],
        key=[],
        old_key=None,
    )


def test_all_four_ops_keep_their_order() -> None:
    ops = [c.op for c in decode(body()).changes]
    assert ops == ["insert", "update", "delete", "truncate"]


def test_empty_change_list() -> None:
    assert decode(body([])).changes == []


def test_numbers_keep_their_text() -> None:
    numeric = dict(INSERT, values=[9223372036854775807, "x", "y", "0.000000000000000000001"])
    values = decode(body([numeric])).changes[0].values
    assert values[0] == 9223372036854775807
    assert values[3] == "0.000000000000000000001"


# ---------------------------------------------------------------- message ids


def test_message_id_is_lsn_and_chunk() -> None:
    assert message_id(COMMIT_LSN, 0) == "16/B374D848.0"
    assert message_id(COMMIT_LSN, 12) == "16/B374D848.12"
    assert message_id(0, 0) == "0/0.0"


def test_message_id_is_stable() -> None:
    first = decode(body(chunk=3))
    again = decode(body(chunk=3))
    assert first.message_id == again.message_id == message_id(COMMIT_LSN, 3)
    assert decode(body(chunk=4)).message_id != first.message_id
    assert body(chunk=3) == body(chunk=3)


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize("payload", [b"", b"not json", b"{", b"\xff\xfe", b"{'v': 1}"])
def test_not_json(payload: bytes) -> None:
    with pytest.raises(DecodeError, match="not JSON"):
        decode(payload)


@pytest.mark.parametrize("payload", [b"[1, 2]", b'"text"', b"1", b"null"])
def test_not_an_object(payload: bytes) -> None:
    with pytest.raises(DecodeError, match="not a JSON object"):
        decode(payload)


@pytest.mark.parametrize("version", [1, 4, 0, "2", None])
def test_unsupported_version(version: object) -> None:
    with pytest.raises(UnsupportedVersion):
        decode(raw(doc(v=version)))


def test_missing_version() -> None:
    d = doc()
    del d["v"]
    with pytest.raises(UnsupportedVersion):
        decode(raw(d))


def test_unsupported_version_is_a_decode_error() -> None:
    with pytest.raises(DecodeError):
        decode(raw(doc(v=1)))


@pytest.mark.parametrize(
    "field",
    ["slot", "xid", "commit_lsn", "commit_time", "copy", "after", "resumed", "chunk", "last"],
)
def test_missing_envelope_field(field: str) -> None:
    d = doc()
    del d[field]
    with pytest.raises(DecodeError, match="malformed envelope"):
        decode(raw(d))


def test_missing_changes() -> None:
    d = doc()
    del d["changes"]
    with pytest.raises(DecodeError):
        decode(raw(d))


@pytest.mark.parametrize("field", ["op", "lsn", "schema", "table"])
def test_missing_change_field(field: str) -> None:
    run = runs_of([INSERT])[0]
    del run[field]
    with pytest.raises(DecodeError):
        decode(raw(doc(changes=[run])))


@pytest.mark.parametrize(
    "replace",
    [
        {"commit_lsn": "not an lsn"},
        {"after": 17},
        {"after": "garbage"},
        {"after": "0/1:0/2"},
        {"copy": "yes"},
        {"xid": "seven"},
        {"chunk": -1},
        {"changes": None},
        {"changes": [17]},
        {"changes": [["op", "insert"]]},
    ],
)
def test_malformed_values(replace: dict[str, Any]) -> None:
    with pytest.raises(DecodeError):
        decode(raw(doc(**replace)))


@pytest.mark.parametrize(
    "replace",
    [
        {"columns": ["a", "b", "v"]},
        {"types": ["integer"]},
        {"values": [5, "z", None, "1", "extra"]},
    ],
)
def test_mismatched_lengths(replace: dict[str, Any]) -> None:
    with pytest.raises(DecodeError, match="differ in length"):
        decode(body([dict(INSERT, **replace)]))


def test_mismatched_old_key_lengths() -> None:
    old_key = {"columns": ["a", "b"], "types": ["integer"], "values": [5, "z"]}
    with pytest.raises(DecodeError, match="old_key"):
        decode(body([dict(DELETE, old_key=old_key)]))


def test_old_key_missing_part() -> None:
    run = runs_of([DELETE])[0]
    del run["old_values"]
    with pytest.raises(DecodeError):
        decode(raw(doc(changes=[run])))


@pytest.mark.parametrize("op", ["upsert", "INSERT", "", None])
def test_unknown_op(op: object) -> None:
    with pytest.raises(DecodeError, match="unknown operation"):
        decode(body([dict(INSERT, op=op)]))


def test_delete_without_old_key() -> None:
    delete = {k: v for k, v in DELETE.items() if k != "old_key"}
    with pytest.raises(DecodeError, match="delete without old_key"):
        decode(body([delete]))


def test_a_new_slots_first_message_continues_from_nothing() -> None:
    assert decode(body(after=None)).after is None


def test_copy_message_ids_differ_from_transaction_ids() -> None:
    assert message_id(COMMIT_LSN, 0, copy=True) == "16/B374D848c.0"
    env = decode(body(copy=True))
    assert env.copy is True
    assert env.end == Position.end_of(COMMIT_LSN, copy=True)


def test_ordinal_of_changes_of_one_record() -> None:
    second = dict(INSERT, n=1)
    env = decode(body([INSERT, second], last=False))
    assert [c.ident for c in env.changes] == [(parse_lsn("16/B374D000"), i) for i in (0, 1)]
    assert env.end == Position(COMMIT_LSN, False, (parse_lsn("16/B374D000"), 1))


@pytest.mark.parametrize("n", [-1, "1", 1.5, None])
def test_bad_ordinal(n: object) -> None:
    run = dict(runs_of([INSERT])[0], n=[n])
    with pytest.raises(DecodeError, match="whole number"):
        decode(raw(doc(changes=[run])))


def test_a_chunk_that_is_not_the_last_must_carry_changes() -> None:
    with pytest.raises(DecodeError, match="without changes"):
        decode(body([], last=False))


def test_changes_out_of_order_are_refused() -> None:
    with pytest.raises(DecodeError, match="not in order"):
        decode(body([DELETE, INSERT], last=False))


def test_a_copys_truncate_carries_the_tables_shape() -> None:
    shaped = dict(TRUNCATE, columns=["a", "b"], types=["integer", "text"], key=["a"])
    change = decode(body([shaped])).changes[0]
    assert (change.columns, change.types, change.key, change.values) == (
        ["a", "b"],
        ["integer", "text"],
        ["a"],
        [],
    )


def test_trimmed_drops_what_the_checkpoint_covers() -> None:
    lsn = parse_lsn("16/B374D000")
    changes = [dict(INSERT, lsn="16/B374D000", n=i) for i in range(4)]
    env = decode(body(changes, last=False))
    assert env.trimmed(Position(COMMIT_LSN, False, (lsn, 3))) is None
    rest = env.trimmed(Position(COMMIT_LSN, False, (lsn, 1)))
    assert rest is not None
    assert [c.n for c in rest.changes] == [2, 3]
    assert rest.after == Position(COMMIT_LSN, False, (lsn, 1))
    assert env.trimmed(Position.end_of(COMMIT_LSN - 1)) is env
    assert env.trimmed(Position.end_of(COMMIT_LSN)) is None
    # The same commit LSN, but a copy: it comes before the transaction, which is all new.
    assert env.trimmed(Position(COMMIT_LSN, True, (lsn, 3))) is env
    assert env.trimmed(Position.before(COMMIT_LSN)) is env
    assert env.trimmed(Position.before(COMMIT_LSN + 1)) is None


@pytest.mark.parametrize(
    "text",
    ["0/0", "16/B374D848", "16/B374D848c", "16/B374D848:16/B374D000.3", "1/2c:0/0.15000"],
)
def test_position_text_round_trip(text: str) -> None:
    assert str(Position.parse(text)) == text


@pytest.mark.parametrize("text", ["", "x", "0/1:", "0/1:0/2", "0/1:0/2.x", "0/1c:zz.1"])
def test_bad_position_text(text: str) -> None:
    with pytest.raises(DecodeError):
        Position.parse(text)


def test_positions_sort_in_stream_order() -> None:
    a = Position(5, False, (1, 0))
    b = Position(5, False, (1, 1))
    c = Position(5, False, (2, 0))
    end = Position.end_of(5)
    # A copy at 5 holds what committed before 5, and comes before a commit at 5.
    copy_start = Position(5, True, (0, 0))
    later = Position(6, False, (0, 0))
    assert Position.before(5) < copy_start < Position.end_of(5, copy=True) < a < b < c < end
    assert end < later < Position.before(7)


def test_changes_of_one_shape_travel_as_one_run() -> None:
    rows = [dict(INSERT, values=[i, "z", None, "1.5"], lsn="16/B374D000", n=i) for i in range(3)]
    wire = json.loads(body([*rows, UPDATE, DELETE, dict(DELETE, lsn="16/B374D201")]))["changes"]
    assert [r["op"] for r in wire] == ["insert", "update", "delete"]
    assert wire[0]["values"] == [[i, "z", None, "1.5"] for i in range(3)]
    assert wire[0]["n"] == [0, 1, 2] and "columns" in wire[0]
    assert wire[2]["old_values"] == [[5, "z"], [5, "z"]]
    changes = decode(body([*rows, UPDATE, DELETE])).changes
    assert [c.values for c in changes[:3]] == [[i, "z", None, "1.5"] for i in range(3)]
    assert [c.n for c in changes[:3]] == [0, 1, 2]
    assert changes[0].columns is changes[2].columns  # one list, shared by the run
    assert changes[4].old_key == OldKey(["a", "b"], ["integer", "text"], [5, "z"])


def test_a_run_keeps_no_ordinals_when_all_are_zero() -> None:
    wire = json.loads(body([INSERT, dict(INSERT, lsn="16/B374D001")]))["changes"]
    assert "n" not in wire[0] and wire[0]["lsn"] == ["16/B374D000", "16/B374D001"]


def test_schema_changes_of_one_record_keep_their_ordinals() -> None:
    # One ALTER of an inheritance parent is a change of each table, all in one WAL record:
    # told apart only by n (a lost n made the applier wait for a change it had applied).
    ddl = {"op": "ddl", "lsn": "16/B374D400", "schema": "public", "columns": [], "types": []}
    changes = [
        dict(ddl, table="parent", n=0, ddl={"kind": "add_column"}),
        dict(ddl, table="child", n=1, ddl={"kind": "add_column"}),
    ]
    env = decode(body(changes))
    assert [(c.table, c.ident) for c in env.changes] == [
        ("parent", (parse_lsn("16/B374D400"), 0)),
        ("child", (parse_lsn("16/B374D400"), 1)),
    ]
