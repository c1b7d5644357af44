from __future__ import annotations

import json
from typing import Any

import pytest

from shared import envelope
from shared.envelope import Change, OldKey, decode, encode, message_id
from shared.errors import DecodeError, UnsupportedVersion
from shared.lsn import parse_lsn

COMMIT_LSN = parse_lsn("16/B374D848")
PREV_LSN = parse_lsn("16/B374C000")

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
        "prev_lsn": PREV_LSN,
        "resumed": False,
        "chunk": 2,
        "first": 8,
        "last": True,
        "changes": [INSERT, UPDATE, DELETE, TRUNCATE] if changes is None else changes,
    }
    args.update(fields)
    if args["chunk"] == 0 and "first" not in fields:
        args["first"] = 0
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
    assert env.prev_lsn == PREV_LSN
    assert env.resumed is False
    assert env.chunk == 2
    assert env.first == 8
    assert env.last is True
    assert env.position == (COMMIT_LSN, 8)
    assert env.end == 12
    assert len(env.changes) == 4


def test_resumed_and_not_last() -> None:
    env = decode(body(resumed=True, last=False, chunk=0, first=0))
    assert env.resumed is True
    assert env.last is False
    assert env.chunk == 0


def test_wire_form() -> None:
    d = json.loads(body())
    assert d["v"] == envelope.VERSION == 1
    assert d["commit_lsn"] == "16/B374D848"
    assert d["prev_lsn"] == "16/B374C000"
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


@pytest.mark.parametrize("version", [2, 0, "1", None])
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
        decode(raw(doc(v=2)))


@pytest.mark.parametrize(
    "field", ["slot", "xid", "commit_lsn", "commit_time", "prev_lsn", "resumed", "chunk", "last"]
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
    change = {k: v for k, v in INSERT.items() if k != field}
    with pytest.raises(DecodeError):
        decode(body([change]))


@pytest.mark.parametrize(
    "replace",
    [
        {"commit_lsn": "not an lsn"},
        {"prev_lsn": 17},
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
    with pytest.raises(DecodeError):
        decode(body([dict(DELETE, old_key={"columns": ["a"], "types": ["integer"]})]))


@pytest.mark.parametrize("op", ["upsert", "INSERT", "", None])
def test_unknown_op(op: object) -> None:
    with pytest.raises(DecodeError, match="unknown operation"):
        decode(body([dict(INSERT, op=op)]))


def test_delete_without_old_key() -> None:
    delete = {k: v for k, v in DELETE.items() if k != "old_key"}
    with pytest.raises(DecodeError, match="delete without old_key"):
        decode(body([delete]))
