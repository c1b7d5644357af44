from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from extractor.decode import Begin, Commit, LogicalMessage, RowChange, decode_record
from shared.errors import DecodeError
from shared.lsn import parse_lsn


def changes(records: list[bytes]) -> list[dict[str, Any]]:
    out = []
    for r in records:
        rec = decode_record(r)
        if isinstance(rec, RowChange):
            out.append(rec.change)
    return out


def test_numbers_keep_their_exact_text(wal2json_records: dict[str, list[bytes]]) -> None:
    first, second, _ = changes(wal2json_records["types"])
    values = dict(zip(first["columns"], first["values"], strict=True))
    # 40 integer digits and 30 decimals: a float would keep about 17 of them.
    assert values["un"] == "1234567890123456789012345678901234567890.123456789012345678901234567890"
    assert values["n"] == "12345678.1234"
    assert values["f8"] == "1e+300"
    assert values["f4"] == "1.1"
    assert values["i8"] == 9223372036854775807
    assert isinstance(values["i8"], int)
    assert Decimal(values["un"]) == Decimal(
        "1234567890123456789012345678901234567890.123456789012345678901234567890"
    )
    values2 = dict(zip(second["columns"], second["values"], strict=True))
    assert values2["un"] == "0.000000000000000000001"
    assert values2["f8"] == "-1.5e-300"
    # wal2json 2.5 prints numeric NaN as null: the loss is upstream of us (docs/types.md).
    assert values2["n"] is None


def test_text_values_come_through_unchanged(wal2json_records: dict[str, list[bytes]]) -> None:
    first = changes(wal2json_records["types"])[0]
    values = dict(zip(first["columns"], first["values"], strict=True))
    assert values["txt"] == 'tab\there "q" \\ 🎉'
    assert values["vc"] == "it's"
    assert values["c"] == "ab "
    assert values["by"] == "00ff10"
    assert values["tz"] == "2024-02-29 01:34:56.123456+00"  # the session runs in UTC
    assert values["jb"] == '{"b": [1, "é", null]}'
    assert first["types"][first["columns"].index("n")] == "numeric(12,4)"
    assert first["key"] == ["id"]


def test_begin_carries_commit_lsn_and_time(wal2json_records: dict[str, list[bytes]]) -> None:
    begin = decode_record(wal2json_records["keys"][0])
    assert isinstance(begin, Begin)
    assert begin.xid > 0
    # nextlsn: the end of the commit record, where the slot resumes after this transaction
    assert begin.commit_lsn == parse_lsn(json.loads(wal2json_records["keys"][0])["nextlsn"])
    assert begin.commit_time.endswith("+00")
    assert isinstance(decode_record(wal2json_records["keys"][3]), Commit)


def test_update_and_delete_carry_the_old_key(wal2json_records: dict[str, list[bytes]]) -> None:
    ops = changes(wal2json_records["keys"])
    kinds = [c["op"] for c in ops]
    assert kinds == [
        "insert",
        "insert",
        "update",
        "update",
        "delete",
        "insert",
        "truncate",
        "insert",
    ]
    moved = ops[3]
    assert moved["key"] == ["order_id", "line_no"]
    assert moved["old_key"] == {
        "columns": ["order_id", "line_no"],
        "types": ["integer", "integer"],
        "values": [1, 2],
    }
    assert dict(zip(moved["columns"], moved["values"], strict=True))["line_no"] == 3
    deleted = ops[4]
    assert "columns" not in deleted or deleted["columns"] == []
    assert deleted["old_key"]["values"] == [1, 1]
    assert ops[6] == {"op": "truncate", "lsn": ops[6]["lsn"], "schema": "public", "table": "lines"}


def test_unchanged_toast_column_is_absent(wal2json_records: dict[str, list[bytes]]) -> None:
    insert, update = changes(wal2json_records["toast"])
    assert insert["columns"] == ["id", "title", "body"]
    assert update["columns"] == ["id", "title"]


def test_tables_without_key(wal2json_records: dict[str, list[bytes]]) -> None:
    ops = changes(wal2json_records["nokey"])
    assert ops[0]["key"] == [] and ops[0]["table"] == "events"
    full_update = ops[4]
    assert full_update["op"] == "update"
    assert full_update["old_key"]["values"] == [1, None]


def test_logical_message(wal2json_records: dict[str, list[bytes]]) -> None:
    msg = decode_record(wal2json_records["message"][1])
    assert isinstance(msg, LogicalMessage)
    assert msg.transactional and msg.prefix == "cdc" and msg.content == "marker"


@pytest.mark.parametrize(
    "payload",
    [b"not json", b'{"action": "X"}', b'{"action": "I", "schema": "s"}', b"[1]", b"\xff\xfe"],
)
def test_garbage_is_a_decode_error(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_record(payload)
