from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from extractor.decode import Begin, Commit, Decoder, LogicalMessage, OutputPlugin, RowChange
from extractor.encoding import SourceCodec, build_codec
from extractor.wal2json import NUMERIC_AS_STRING, Wal2Json, decode_record
from shared.errors import DecodeError, SetupError
from shared.lsn import parse_lsn
from shared.tables import TableFilter
from tests.support.fixtures import FIXTURES


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
    doc = json.loads(wal2json_records["keys"][0])
    # lsn: where the commit record begins, the transaction's place in the stream
    assert begin.commit_lsn == parse_lsn(doc["lsn"])
    # nextlsn: where it ends, where the slot resumes after this transaction
    assert begin.commit_end == parse_lsn(doc["nextlsn"])
    assert begin.commit_lsn < begin.commit_end
    assert begin.commit_time.endswith("+00")
    commit = decode_record(wal2json_records["keys"][3])
    assert isinstance(commit, Commit)
    assert commit.end == begin.commit_end


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


# ---------------------------------------------------------------- wal2json as the output plugin


def test_wal2json_decoder_reads_records_as_decode_record_does(
    wal2json_records: dict[str, list[bytes]],
) -> None:
    plugin: OutputPlugin = Wal2Json()
    decoder: Decoder = plugin.decoder(None)
    for record in wal2json_records["keys"] + wal2json_records["message"]:
        assert decoder.decode(record, 0) == decode_record(record)


def test_wal2json_start_options_ask_for_numbers_as_strings_and_fall_back_once() -> None:
    plugin = Wal2Json()
    options = plugin.start_options(TableFilter(), False)
    assert options["format-version"] == "2" and options[NUMERIC_AS_STRING] == "1"
    assert plugin.started(options) == "numeric_as_string=True"
    refusal = f'option "{NUMERIC_AS_STRING}" has invalid value'
    older = plugin.fallback_options(options, refusal)
    assert older is not None and NUMERIC_AS_STRING not in older
    assert older == {k: v for k, v in options.items() if k != NUMERIC_AS_STRING}
    assert plugin.started(older) == "numeric_as_string=False"
    # Any other refusal is not the plugin's age: it stands, as does a second one.
    assert plugin.fallback_options(options, 'option "include-pk" has invalid value') is None
    assert plugin.fallback_options(older, refusal) is None


# ---------------------------------------------------------------- type names wal2json leaves unescaped


def test_type_names_wal2json_writes_unescaped_are_repaired(
    wal2json_records: dict[str, list[bytes]],
) -> None:
    """wal2json 2.5 writes a type name that starts with a quote as it is: a qualified or
    otherwise longer one is not JSON (golden output of a real server)."""
    records = wal2json_records["domains"]
    with pytest.raises(json.JSONDecodeError):
        json.loads(records[1])
    insert, update = changes(records)
    assert insert["types"] == [
        "bid",
        "price",
        '"Other S"."My Dom"',
        '"Other S".stamp',
        '"Quoted ""Dom"" x"',
        "Mood",  # a lone quoted name is JSON, read without its quotes (basetypes.py)
        "price[]",
        "intarr",
        '"Other S"."My Dom"[]',
        "char",  # the one-byte "char", likewise
        "box[]",
    ]
    values = dict(zip(insert["columns"], insert["values"], strict=True))
    assert values["o"] == "héllo" and values["p"] == "3.540" and values["id"] == "1"
    assert update["old_key"] == {"columns": ["id"], "types": ["bid"], "values": ["1"]}


def test_only_type_names_are_repaired() -> None:
    """What looks like an unescaped type name inside a value is a JSON string's content."""
    record = (
        b'{"action":"I","lsn":"0/1","schema":"s","table":"t","columns":['
        b'{"name":"a","type":"My ""Q"" t"(3),"value":"\\",\\"type\\":\\"x\\".y"},'
        b'{"name":"type","type":"text","value":"\\"type\\":\\"b\\".c"}],'
        b'"pk":[{"name":"a","type":"s"."t"}]}'
    )
    change = changes([record])[0]
    assert change["types"] == ['"My ""Q"" t"(3)', "text"]
    assert change["values"] == ['","type":"x".y', '"type":"b".c']


# ---------------------------------------------------------------- encodings

LATIN1 = {bytes([b]): bytes([b]).decode("latin-1") for b in range(0x80, 0x100)}


def raw_records(name: str) -> list[bytes]:
    return [line for line in (FIXTURES / f"{name}.raw").read_bytes().splitlines() if line]


def test_a_latin1_database_is_read_in_its_encoding() -> None:
    """Golden output of a LATIN1 database: names, values and messages in LATIN1 bytes."""
    codec = build_codec("LATIN1", "db", LATIN1)
    assert codec is not None
    records = raw_records("latin1")
    with pytest.raises(DecodeError):
        decode_record(records[1])  # taken for UTF-8, it is not even readable
    change = changes_in(records, codec)[0]
    assert change["table"] == "données"
    assert change["columns"] == ["clé", "vc", "c", "j", "ta"]
    # "Ã©" stays two characters: read as UTF-8 its bytes would be "é".
    assert change["values"] == ["é", "Ã©ÿ", "ß   ", '{"é": "÷"}', '{"à b",NULL}']
    assert change["key"] == ["clé"]
    message = decode_record(records[4], codec)
    assert isinstance(message, LogicalMessage) and message.content == "marqué"


def changes_in(records: list[bytes], codec: SourceCodec) -> list[dict[str, Any]]:
    out = []
    for r in records:
        rec = decode_record(r, codec)
        if isinstance(rec, RowChange):
            out.append(rec.change)
    return out


def test_utf8_needs_no_codec() -> None:
    assert build_codec("UTF8", "db", {}) is None


@pytest.mark.parametrize(
    ("encoding", "words"),
    [
        ("SQL_ASCII", "has encoding SQL_ASCII: its bytes above 0x7F have no declared encoding"),
        ("EUC_TW", "has encoding EUC_TW, which the extractor cannot convert"),
        ("MULE_INTERNAL", "Python has no codec for it"),
    ],
)
def test_encodings_without_an_exact_conversion_are_refused(encoding: str, words: str) -> None:
    with pytest.raises(SetupError, match=words):
        build_codec(encoding, "shop", {})


# A few characters of EUC_JP as PostgreSQL converts them (measured on PostgreSQL 15).
EUC_JP = {
    b"\xa1\xc1": "\uff5e",  # FULLWIDTH TILDE; Python's euc_jp reads U+301C WAVE DASH
    b"\xa4\xa2": "\u3042",  # HIRAGANA A: the same in both
    b"\x8f\xf4\xfb": "\u9ad9",  # Python's euc_jp cannot read it
    b"\xb0\xa2": "\u5516",  # the same in both
    b"\xa2\xa1": None,  # as if PostgreSQL could not convert it; Python reads U+25C6
}


def test_where_python_reads_otherwise_postgresql_wins() -> None:
    codec = build_codec("EUC_JP", "db", EUC_JP)
    assert codec is not None
    assert codec.to_utf8(b"a\xa1\xc1\xa4\xa2\x8f\xf4\xfbz").decode() == "a\uff5e\u3042\u9ad9z"


def test_what_postgresql_cannot_convert_is_refused_where_a_character_starts() -> None:
    codec = build_codec("EUC_JP", "db", EUC_JP)
    assert codec is not None
    with pytest.raises(DecodeError, match="byte sequence 0xa2a1"):
        codec.to_utf8(b'{"v":"\xa4\xa2\xa2\xa1"}')
    # The same bytes as the tail of one character and the head of the next are no such thing.
    assert codec.to_utf8(b"\xb0\xa2\xa1\xb0").decode() == "\u5516\uff3e"


def test_a_reading_that_would_change_ascii_is_refused() -> None:
    """Python's euc_jp reads 0x8FA2B7 as '~': correcting that would change every ASCII '~'."""
    with pytest.raises(SetupError, match="exactly as PostgreSQL does"):
        build_codec("EUC_JP", "db", {b"\x8f\xa2\xb7": "\uff5e"})
