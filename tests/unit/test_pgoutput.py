"""The pgoutput decoder on golden messages from a real server (tests/fixtures/capture_pgoutput.py).

Each scenario was captured with a pgoutput slot and a wal2json slot made at the same point, so
both decoders read the same WAL: the pgoutput decoder must yield what the wal2json decoder
yields (the same Begin, Commit and message records, the same change objects, LSNs included),
except where wal2json loses something (NaN, Infinity) and the documented differences below.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from extractor.decode import Begin, Commit, LogicalMessage, RowChange
from extractor.pgoutput import PgOutput, PgOutputDecoder, _timestamp
from extractor.wal2json import decode_record
from shared.errors import DecodeError
from shared.lsn import parse_lsn
from shared.tables import TableFilter

HERE = Path(__file__).resolve().parent.parent / "fixtures" / "pgoutput"
SCENARIOS = sorted(p.name.removesuffix(".catalog.json") for p in HERE.glob("*.catalog.json"))


def messages(name: str) -> list[tuple[bytes, int]]:
    lines = (HERE / f"{name}.jsonl").read_text().splitlines()
    return [(bytes.fromhex(j["data"]), parse_lsn(j["lsn"])) for j in map(json.loads, lines)]


def decoder(name: str) -> PgOutputDecoder:
    """A decoder whose catalog answers what the real one answered at capture time."""
    catalog = json.loads((HERE / f"{name}.catalog.json").read_text())
    types = {(o, m): n for o, m, n in catalog["types"]}
    return PgOutputDecoder(
        lambda pairs: [types[p] for p in pairs], lambda relid: catalog["keys"][str(relid)]
    )


def flat(record: Any) -> list[Any]:
    if record is None:
        return []
    return record if isinstance(record, list) else [record]


def pgoutput_records(name: str) -> list[Any]:
    d = decoder(name)
    return [r for data, lsn in messages(name) for r in flat(d.decode(data, lsn))]


def normal(records: list[Any]) -> list[Any]:
    """Records as comparable tuples; the commit end from wherever the decoder gave it."""
    out: list[Any] = []
    end = 0
    for r in records:
        if isinstance(r, Begin):
            out.append(("begin", r.xid, r.commit_lsn, r.commit_time))
            end = r.commit_end
        elif isinstance(r, Commit):
            out.append(("commit", r.end or end))
        elif isinstance(r, RowChange):
            out.append(r.change)
        elif isinstance(r, LogicalMessage):
            out.append(("message", r.transactional, r.prefix, r.content, r.lsn))
    return out


def wal2json_expected(name: str) -> list[Any]:
    lines = (HERE / f"{name}.wal2json.jsonl").read_bytes().splitlines()
    out = normal([decode_record(line) for line in lines])
    # wal2json prints a bare name where format_type quotes it ("Mood", "char"); the decoders
    # meet again after basetypes.py, which looks both spellings up as the same type.
    quoted = {"Mood": '"Mood"', "char": '"char"'}
    # A TRUNCATE of a partitioned root: pgoutput lists its partitions, not the root itself
    # (partitions.py then copies the root again: the same end state).
    return [
        {**c, "types": [quoted.get(t, t) for t in c["types"]]} if "types" in c else c
        for c in out
        if not (isinstance(c, dict) and c["op"] == "truncate" and c["table"] == "m")
    ]


def lost_by_wal2json(got: list[Any]) -> list[Any]:
    """The pgoutput records with NaN and +-Infinity as wal2json 2.5 prints them: null."""
    special = {"NaN", "Infinity", "-Infinity"}
    return [
        {**c, "values": [None if v in special else v for v in c["values"]]}
        if isinstance(c, dict) and "values" in c
        else c
        for c in got
    ]


@pytest.mark.parametrize("name", SCENARIOS)
def test_pgoutput_yields_what_wal2json_yields(name: str) -> None:
    got = normal(pgoutput_records(name))
    assert lost_by_wal2json(got) == wal2json_expected(name)


def test_nan_and_infinity_arrive_as_themselves() -> None:
    inserts = [r.change for r in pgoutput_records("special") if isinstance(r, RowChange)]
    first = dict(zip(inserts[0]["columns"], inserts[0]["values"], strict=True))
    assert (first["n"], first["f4"], first["f8"]) == ("NaN", "Infinity", "-Infinity")
    assert (first["d"], first["ts"], first["tz"]) == ("infinity", "-infinity", "infinity")
    updated = dict(zip(inserts[2]["columns"], inserts[2]["values"], strict=True))
    assert updated["n"] == "-Infinity"
    numbers = [r.change for r in pgoutput_records("types") if isinstance(r, RowChange)]
    assert dict(zip(numbers[1]["columns"], numbers[1]["values"], strict=True))["n"] == "NaN"


def test_values_travel_as_wal2json_sends_them() -> None:
    first = next(r.change for r in pgoutput_records("types") if isinstance(r, RowChange))
    values = dict(zip(first["columns"], first["values"], strict=True))
    assert values["i8"] == 9223372036854775807 and isinstance(values["i2"], int)
    assert values["b"] is True
    assert values["by"] == "00ff10"  # bare hex, as wal2json
    assert values["un"] == (
        "1234567890123456789012345678901234567890.123456789012345678901234567890"
    )
    assert values["tz"] == "2024-02-29 01:34:56.123456+00"  # the session runs in UTC
    assert values["c"] == "ab "
    assert first["types"][first["columns"].index("vc")] == "character varying(20)"


def test_unchanged_toast_is_left_out_of_the_update() -> None:
    update = [r.change for r in pgoutput_records("toast") if isinstance(r, RowChange)][1]
    assert update["op"] == "update"
    assert update["columns"] == ["id", "title"]
    assert update["old_key"] == {"columns": ["id"], "types": ["integer"], "values": [1]}


def test_old_key_or_old_row() -> None:
    changes = [r.change for r in pgoutput_records("identity") if isinstance(r, RowChange)]
    by_table = {t: [c for c in changes if c["table"] == t] for t in ("fulldoc", "byindex")}
    _, full_update, full_delete = by_table["fulldoc"]
    # REPLICA IDENTITY FULL: the old row ('O'), every column; the key is the primary key.
    assert full_update["old_key"]["columns"] == ["id", "title", "body"]
    assert full_update["old_key"]["values"][1] == "first"
    assert full_delete["old_key"]["values"][1] == "renamed"
    assert full_update["key"] == ["id"]
    _, same_code, new_code, delete = by_table["byindex"]
    # USING INDEX: the identity is code; the key (the target's) stays the primary key.
    assert same_code["key"] == ["id"]
    assert same_code["old_key"] == {"columns": ["code"], "types": ["text"], "values": ["a"]}
    assert new_code["old_key"] == {"columns": ["code"], "types": ["text"], "values": ["a"]}
    assert delete["old_key"] == {"columns": ["code"], "types": ["text"], "values": ["b"]}
    assert delete["columns"] == []


def test_a_truncate_of_several_tables_is_one_change_each() -> None:
    d = decoder("partitions")
    found = []
    for data, lsn in messages("partitions"):
        got = d.decode(data, lsn)
        if data[:1] == b"T":
            assert isinstance(got, list)
            found.append([(c.change["table"], c.change["lsn"]) for c in got])
    lsn = found[1][0][1]
    assert found == [[("m1", found[0][0][1])], [("m1", lsn), ("m2", lsn), ("other", lsn)]]


def test_relation_and_type_messages_are_the_decoders_own() -> None:
    d = decoder("domains")
    kinds: dict[bytes, Any] = {}
    for data, lsn in messages("domains"):
        kinds.setdefault(data[:1], d.decode(data, lsn))
    assert kinds[b"R"] is None and kinds[b"Y"] is None


def test_begin_commit_and_message() -> None:
    records = pgoutput_records("message")
    begin, message, commit = records
    assert isinstance(begin, Begin) and begin.commit_end == 0 and begin.xid > 0
    assert isinstance(commit, Commit) and commit.end > begin.commit_lsn
    assert message == LogicalMessage(True, "cdc", "marker", message.lsn)


def test_commit_time_is_printed_as_postgresql_prints_it_in_utc() -> None:
    assert _timestamp(0) == "2000-01-01 00:00:00+00"
    assert _timestamp(1_500_000) == "2000-01-01 00:00:01.5+00"
    assert _timestamp(-1) == "1999-12-31 23:59:59.999999+00"


def test_a_change_of_an_undescribed_relation_is_refused() -> None:
    insert = next(data for data, _ in messages("keys") if data[:1] == b"I")
    with pytest.raises(DecodeError, match="before describing it"):
        decoder("keys").decode(insert, 0)


@pytest.mark.parametrize("payload", [b"B\x00", b"Z", b"I\x00\x00", b""])
def test_unreadable_messages_are_decode_errors(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        decoder("keys").decode(payload, 0)


def test_start_options() -> None:
    plugin = PgOutput("cdc_main", lambda: None)
    assert plugin.start_options(TableFilter(), partitioned=True) == {
        "proto_version": "1",
        "publication_names": "cdc_main",
        "messages": "true",
    }
    assert plugin.fallback_options({}, "anything") is None


def test_an_origin_message_is_the_decoders_own() -> None:
    origin = b"O" + (0x1234).to_bytes(8, "big") + b"upstream\0"
    assert decoder("keys").decode(origin, 0) is None


def _relation_message(relid: int, columns: list[tuple[str, int]]) -> bytes:
    out = b"R" + relid.to_bytes(4, "big") + b"public\0t\0d" + len(columns).to_bytes(2, "big")
    for i, (name, oid) in enumerate(columns):
        out += bytes([i == 0]) + name.encode() + b"\0" + oid.to_bytes(4, "big") + b"\xff" * 4
    return out


def _insert_message(relid: int, values: list[bytes | None]) -> bytes:
    out = b"I" + relid.to_bytes(4, "big") + b"N" + len(values).to_bytes(2, "big")
    for v in values:
        out += b"n" if v is None else b"t" + len(v).to_bytes(4, "big") + v
    return out


def test_values_keep_every_byte_whatever_the_bytes_around_them() -> None:
    # A relation OID and lengths whose bytes are not ASCII, UTF-8 text beside ASCII text,
    # the characters LOAD DATA escapes, NULL against the empty string, a numeric beyond 64 bits.
    relid = 0x80FF80FF
    columns = [("id", 20), ("t", 25), ("u", 25), ("b", 17), ("n", 1700), ("f", 16), ("e", 25)]
    d = PgOutputDecoder(lambda pairs: ["x"] * len(pairs), lambda relid: ["id"])
    assert d.decode(_relation_message(relid, columns), 0) is None
    long_text = "a\tb\nc\\d\r" * 30  # 240 bytes: a length byte above 0x7F
    values: list[bytes | None] = [
        b"-9223372036854775808",
        long_text.encode(),
        "é€😀 \u0000x".replace("\u0000", "").encode(),
        b"\\x00ff5c",
        b"123456789012345678901234567890.000000000000000000000000000001",
        b"f",
        b"",
    ]
    record = d.decode(_insert_message(relid, values), 0x1_0000_0080)
    assert isinstance(record, RowChange)
    assert record.change["lsn"] == "1/80"
    assert record.change["values"] == [
        -9223372036854775808,
        long_text,
        "é€😀 x",
        "00ff5c",
        "123456789012345678901234567890.000000000000000000000000000001",
        False,
        "",
    ]
    values[6] = None
    record = d.decode(_insert_message(relid, values), 0)
    assert isinstance(record, RowChange)
    assert record.change["values"][6] is None


def test_a_tuple_of_another_width_than_its_relation_is_refused() -> None:
    d = PgOutputDecoder(lambda pairs: ["x"] * len(pairs), lambda relid: ["id"])
    d.decode(_relation_message(7, [("id", 20), ("t", 25)]), 0)
    with pytest.raises(DecodeError, match="columns"):
        d.decode(_insert_message(7, [b"1"]), 0)
    with pytest.raises(DecodeError, match="ends early"):
        d.decode(_insert_message(7, [b"1", b"abc"])[:-1], 0)
