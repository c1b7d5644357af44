"""Every row of docs/types.md through the real pipeline, with edge values, compared exactly.

Values MariaDB cannot hold must land in the dead-letter queue with the reason, never arrive
changed; the rows around them must still arrive. What wal2json 2.5 itself loses (NaN and
±Infinity printed as null) is pinned down as it is, so a change of behaviour shows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import psycopg2
import pytest

from devstack.system import wait_until
from harness.pipeline import Pipeline
from shared import wire
from tests.support.type_rows import EDGE_ROWS, OFFSET_ROWS, TYPES_TABLE, Rows

EXPECTED_COLUMN_TYPES = {
    "id": "int(11)",
    "i2": "smallint(6)",
    "i4": "int(11)",
    "i8": "bigint(20)",
    "n": "decimal(65,30)",
    "n_ps": "decimal(12,4)",
    "n_max": "decimal(65,30)",
    "n_neg": "decimal(5,0)",
    "n_frac": "decimal(5,5)",
    "r": "double",
    "d": "double",
    "t": "longtext",
    "vc": "varchar(5)",
    "c": "varchar(4)",
    "b": "tinyint(1)",
    "dt": "date",
    "tm": "time(6)",
    "tm3": "time(3)",
    "ts": "datetime(6)",
    "ts3": "datetime(3)",
    "tz": "datetime(6)",
    "ttz": "varchar(32)",
    "iv": "longtext",
    "j": "longtext",  # MariaDB's JSON: LONGTEXT with a JSON_VALID check
    "jb": "longtext",
    "u": "char(36)",
    "by": "longblob",
    "ia": "longtext",
    "ta": "longtext",
    "na": "longtext",
    "fa": "longtext",
    "ba": "longtext",
    "e": "longtext",
    "ip": "longtext",
    "ci": "longtext",
}
JSON_COLUMNS = {"j", "jb", "ia", "ta", "na", "fa", "ba"}


def insert(pipeline: Pipeline, table: str, rows: Rows) -> None:
    """Each row in its own transaction, values as PostgreSQL input text (or bytes)."""
    conn = pipeline.pg()
    try:
        with conn.cursor() as cur:
            for row in rows:
                if not row:
                    cur.execute(f"INSERT INTO {table} DEFAULT VALUES")
                    continue
                cols = list(row)
                values = [psycopg2.Binary(v) if isinstance(v, bytes) else v for v in row.values()]
                cur.execute(
                    f"INSERT INTO {table} ({', '.join(cols)}) VALUES"
                    f" ({', '.join(['%s'] * len(cols))})",
                    values,
                )
    finally:
        conn.close()


def dead_letters(pipeline: Pipeline) -> dict[tuple[str, Any], dict[str, Any]]:
    """The dead-letter queue, taken: (table, id of the row) -> AMQP headers."""
    out: dict[tuple[str, Any], dict[str, Any]] = {}
    with pipeline.channel() as ch:
        while True:
            method, props, body = ch.basic_get(pipeline.queue + ".dead", auto_ack=True)
            if method is None:
                return out
            for env in wire.decode_all(body):
                for change in env.changes:
                    at = change.columns.index(change.key[0])
                    row_id = change.values[at]
                    if change.types[at] == "bytea":
                        row_id = bytes.fromhex(row_id.removeprefix("\\x"))
                    out[(change.table, row_id)] = props.headers


@pytest.mark.decoders
def test_every_type_round_trips_exactly(pipeline: Pipeline) -> None:
    pipeline.sql(TYPES_TABLE)
    _, applier = pipeline.start_pipeline()
    insert(pipeline, "types", EDGE_ROWS)
    insert(pipeline, "types", OFFSET_ROWS)
    pipeline.wait_converged(["types"])

    maria = pipeline.maria()
    cur = maria.cursor()
    cur.execute(
        "SELECT column_name, column_type FROM information_schema.columns"
        " WHERE table_schema = DATABASE() AND table_name = 'types'"
    )
    assert dict(cur.fetchall()) == EXPECTED_COLUMN_TYPES
    cur.execute(
        "SELECT constraint_name FROM information_schema.check_constraints"
        " WHERE constraint_schema = DATABASE() AND table_name = 'types'"
    )
    assert {r[0] for r in cur.fetchall()} == JSON_COLUMNS
    # Spot checks of the stored form, beyond what the comparison normalises.
    cur.execute("SELECT tz FROM types WHERE id BETWEEN 100 AND 101 ORDER BY id")
    assert [str(r[0]) for r in cur.fetchall()] == ["2024-01-01 12:00:00", "2023-12-31 10:00:00"]
    cur.execute("SELECT CAST(tm AS CHAR), c, j, ttz, iv, fa FROM types WHERE id = 2")
    assert cur.fetchone() == (
        "24:00:00.000000",
        "abcd",
        EDGE_ROWS[1]["j"],
        "24:00:00-15:59",
        "178000000 years 11 mons 30 days 23:59:59.999999",
        '["NaN","Infinity","-Infinity",1e+300,-0,5e-324]',
    )
    cur.execute("SELECT c, j IS NULL, j FROM types WHERE id IN (1, 3) ORDER BY id")
    assert cur.fetchall() == [("    ", 0, "null"), ("é   ", 0, EDGE_ROWS[2]["j"])]
    all_null = " AND ".join(f"`{c}` IS NULL" for c in EXPECTED_COLUMN_TYPES if c != "id")
    cur.execute(f"SELECT COUNT(*) FROM types WHERE id = 4 AND {all_null}")
    assert cur.fetchone() == (1,)

    # The same values through updates: every column to NULL and back, and a key change.
    cols = ", ".join(c for c in EXPECTED_COLUMN_TYPES if c != "id")
    nulls = ", ".join("NULL" for c in EXPECTED_COLUMN_TYPES if c != "id")
    pipeline.sql(
        f"UPDATE types SET ({cols}) = (SELECT {cols} FROM types WHERE id = 2) WHERE id = 4",
        f"UPDATE types SET ({cols}) = ({nulls}) WHERE id = 2",
        "UPDATE types SET id = 30 WHERE id = 3",
    )
    pipeline.wait_converged(["types"])
    maria.close()
    assert pipeline.queue_depth(pipeline.queue + ".dead") == 0
    assert "dead_lettered" not in applier.output()


# Target values that a looser comparison would take for the source's: (id, column, value).
SUBTLY_WRONG: list[tuple[int, str, str]] = [
    (2, "tm", "00:00:00"),  # psycopg2 reads 24:00:00 as 00:00:00
    (3, "iv", "425 days 04:05:06.789"),  # psycopg2 reads 1 year 2 mons 3 days as 425 days
    (2, "ia", "[2147483647,-2147483648,null,false]"),  # 0 == False in Python
    (2, "ba", "[1,0,null]"),  # True == 1
    # The text "NULL" is not NULL.
    (2, "ta", '["q\\"x","back\\\\slash","a,b","{c}",null,null,"","  ","é🎉","tab\\tx"]'),
    # The document without the first of its two "a" members, which a dict would drop.
    (2, "j", str(EDGE_ROWS[1]["j"]).replace('"a": 1, ', "", 1)),
    (6, "r", "0.10000000149011612"),  # the float4 0.1, widened: equal as a float4
    (2, "b", "2"),  # bool(2) is True
    (3, "c", "é"),  # the padding of char(4)
    (3, "ttz", "06:30:00.123456+00"),  # the same instant, another value of timetz
    (100, "tz", "2024-01-01 12:00:00.000001"),
    (3, "n", "0.000000000000000000001000000001"),
    (2, "fa", '["NaN","Infinity","-Infinity","1e+300",-0,5e-324]'),  # a string, not a number
]


def test_the_comparison_sees_subtle_differences(pipeline: Pipeline) -> None:
    """The check the other tests rely on: each of these target changes must show."""
    pipeline.sql(TYPES_TABLE)
    pipeline.start_pipeline()
    insert(pipeline, "types", EDGE_ROWS)
    insert(pipeline, "types", OFFSET_ROWS)
    pipeline.wait_converged(["types"])
    maria = pipeline.maria()
    cur = maria.cursor()
    for row_id, column, wrong in SUBTLY_WRONG:
        cur.execute(f"SELECT CAST(`{column}` AS CHAR) FROM types WHERE id = ?", (row_id,))
        (right,) = cur.fetchone()
        cur.execute(f"UPDATE types SET `{column}` = ? WHERE id = ?", (wrong, row_id))
        diff = pipeline.differences(["types"])["types"]
        assert [src[0] for src, _ in diff.different] == [row_id], (column, wrong)
        cur.execute(f"UPDATE types SET `{column}` = ? WHERE id = ?", (right, row_id))
    assert pipeline.differences(["types"])["types"].equal
    maria.close()


@pytest.mark.decoders
def test_keys_of_many_types_match_on_update_and_delete(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE TABLE keyed (k text, ts timestamptz, num numeric(10,2), u uuid, raw bytea,"
        " day date, v text, PRIMARY KEY (k, ts, num, u, raw, day))",
        # Without a key: updates and deletes match the whole old row, every type included.
        "CREATE TABLE keyless (r real, d double precision, n numeric, tz timestamptz, j jsonb,"
        " js json, ia int[], ta text[], tm time, iv interval, b boolean, raw bytea, c char(3))",
        "ALTER TABLE keyless REPLICA IDENTITY FULL",
    )
    pipeline.start_pipeline()
    u = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
    base = {"ts": "2024-01-01 00:00:00+05:30", "num": "1.50", "u": u, "day": "2024-02-29"}
    insert(
        pipeline,
        "keyed",
        [
            # Three keys that a padding or case-insensitive collation would merge.
            {**base, "k": "a", "raw": b"\x00", "v": "1"},
            {**base, "k": "a ", "raw": b"\x00", "v": "2"},
            {**base, "k": "A", "raw": b"\x00\x00", "v": "3"},
            {**base, "k": "é🎉", "raw": b"", "v": "4", "ts": "0001-01-01 00:00:00+00"},
        ],
    )
    keyless_row = {
        "r": "0.1",
        "d": "1e-300",
        "n": "0.000000000000000000001",
        "tz": "2024-01-01 00:00:00-08",
        "j": '{"b": [1.50, "é"], "a": null}',
        "js": '{"b": 1, "b": 2}',
        "ia": "{1,NULL}",
        "ta": '{"x y",NULL}',
        "tm": "24:00:00",
        "iv": "1 day 02:03:04",
        "b": "true",
        "raw": b"\x00\xff",
        "c": "a",
    }
    insert(pipeline, "keyless", [keyless_row, keyless_row, {"r": "3.3"}, {}])
    pipeline.wait_converged(["keyed", "keyless"])
    pipeline.sql(
        "UPDATE keyed SET v = 'changed' WHERE k = 'a '",
        "UPDATE keyed SET ts = ts + interval '1 microsecond' WHERE k = 'A'",
        "DELETE FROM keyed WHERE k = 'a'",
        # One of two identical rows: the target must keep the other.
        "UPDATE keyless SET c = 'b' WHERE ctid IN (SELECT ctid FROM keyless WHERE r = '0.1' LIMIT 1)",
        "DELETE FROM keyless WHERE r = '3.3'",
        "DELETE FROM keyless WHERE r IS NULL",
    )
    pipeline.wait_converged(["keyed", "keyless"])
    assert pipeline.queue_depth(pipeline.queue + ".dead") == 0


# Values no MariaDB column of the mapping can hold: id -> (column, value, what the reason in
# the dead-letter queue says, and what the applier's log says besides its error lines).
REJECTED: dict[int, tuple[str, Any, tuple[str, ...], str]] = {
    10: ("dt", "infinity", ("Incorrect date value: 'infinity'", "`rejects`.`dt`"), ""),
    11: ("dt", "-infinity", ("Incorrect date value: '-infinity'", "`rejects`.`dt`"), ""),
    12: ("dt", "0044-03-15 BC", ("Incorrect date value: '0044-03-15 BC'",), ""),
    13: ("dt", "10000-01-01", ("Incorrect date value: '10000-01-01'",), ""),
    14: ("ts", "infinity", ("Incorrect datetime value: 'infinity'", "`rejects`.`ts`"), ""),
    15: (
        "ts",
        "0001-12-31 23:59:59 BC",
        ("Incorrect datetime value: '0001-12-31 23:59:59 BC'",),
        "",
    ),
    16: ("ts", "294276-12-31 23:59:59", ("Incorrect datetime value: '294276-12-31 23:59:59'",), ""),
    17: ("tz", "-infinity", ("timestamptz '-infinity' has no MariaDB DATETIME equivalent",), ""),
    # Year 1 in its own offset, but the year before in UTC (and the other way round).
    18: ("tz", "0001-01-01 00:30:00+01", ("timestamptz '0001-12-31 23:30:00+00 BC' has no",), ""),
    19: ("tz", "9999-12-31 23:30:00-01", ("Incorrect datetime value: '10000-01-01 00:30:00'",), ""),
    20: ("n", "1" + "0" * 40, ("does not fit DECIMAL(65,30)",), ""),
    21: ("n", "0." + "0" * 30 + "1", ("does not fit DECIMAL(65,30)",), ""),
    22: (
        "n_wide",
        "9" * 36,
        ("'999999999999999999999999999999999999' does not fit DECIMAL(65,30)",),
        "",
    ),
    23: (
        "j",
        '{"a":' * 32 + "1" + "}" * 32,
        ("CONSTRAINT `rejects.j` failed",),
        "json_refused_by_mariadb reason=nested depth=32 limit=31",
    ),
    24: (
        "jb",
        "[" * 40 + "]" * 40,
        ("CONSTRAINT `rejects.jb` failed",),
        "json_refused_by_mariadb reason=nested depth=40 limit=31",
    ),
    25: (
        "j",
        '["\\ud800"]',
        ("CONSTRAINT `rejects.j` failed",),
        "json_refused_by_mariadb reason=unpaired_surrogate_escape",
    ),
    26: ("ia", "[0:1]={1,2}", ("array with lower bounds other than 1 ([0:1])",), ""),
    27: ("k", "x" * 256, ("Data too long for column 'k'",), ""),
    28: ("raw", b"\x00" * 256, ("Data too long for column 'raw'",), ""),
    # wal2json prints a domain's NaN as text (a plain numeric's as null): the DECIMAL of its
    # base type refuses it.
    29: ("dn", "NaN", ("Incorrect decimal value: 'NaN'", "`rejects`.`dn`"), ""),
}


def test_values_mariadb_cannot_hold_are_dead_lettered_with_the_reason(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE DOMAIN price AS numeric(10,3)",
        "CREATE TABLE rejects (id int PRIMARY KEY, dt date, ts timestamp, tz timestamptz,"
        " n numeric, n_wide numeric(70,0), j json, jb jsonb, ia int[], dn price)",
        # Key columns are bounded in MariaDB: 255 characters, 255 bytes.
        "CREATE TABLE long_keys (id int, k text, PRIMARY KEY (k))",
        "CREATE TABLE long_raw (id int, raw bytea, PRIMARY KEY (raw))",
    )
    _, applier = pipeline.start_pipeline()
    where = {"k": "long_keys", "raw": "long_raw"}
    insert(pipeline, "rejects", [{"id": 1, "dt": "0001-01-01", "ts": "9999-12-31 23:59:59.999999"}])
    for row_id, (column, value, _, _) in REJECTED.items():
        # Each in its own transaction, a good row after it: only the culprit is parked.
        table = where.get(column, "rejects")
        insert(pipeline, table, [{"id": row_id, column: value}])
        if table == "rejects":
            insert(pipeline, table, [{"id": row_id + 100, column: None, "n": row_id}])
        else:
            insert(pipeline, table, [{"id": row_id + 100, column: value[:255]}])
    # One source transaction is one message: a good row beside a bad one is parked with it.
    conn = pipeline.pg()
    with conn.cursor() as cur:
        cur.execute("BEGIN")
        cur.execute("INSERT INTO rejects (id, n) VALUES (40, 1)")
        cur.execute("INSERT INTO rejects (id, dt) VALUES (41, 'infinity')")
        cur.execute("COMMIT")
    conn.close()
    insert(
        pipeline,
        "rejects",
        [
            {"id": 2, "tz": "0001-01-01 00:30:00+00", "n_wide": "9" * 35, "ia": "{1,2}"},
            {"id": 3, "j": '{"a":' * 30 + "{}" + "}" * 30, "jb": '["\\ud83c\\udf89"]'},
        ],
    )

    dead = pipeline.queue + ".dead"
    wait_until(lambda: pipeline.queue_depth(dead) >= len(REJECTED) + 1, "the dead letters", 120)
    letters = dead_letters(pipeline)
    expected = {
        (where.get(col, "rejects"), v if col in where else i)
        for i, (col, v, _, _) in REJECTED.items()
    }
    assert set(letters) == expected | {("rejects", 40), ("rejects", 41)}
    assert letters[("rejects", 40)] is letters[("rejects", 41)]
    log = applier.output()
    for row_id, (column, value, reasons, log_line) in REJECTED.items():
        headers = letters[(where[column], value) if column in where else ("rejects", row_id)]
        for reason in reasons:
            assert reason in headers["x-cdc-error"], (row_id, headers["x-cdc-error"])
            assert reason in log  # the error lines (apply_failed, dead_lettered) say it too
        assert headers["x-cdc-error-type"] == "RowRejected"
        assert log_line in log
    assert log.count("dead_lettered message_id=") == len(REJECTED) + 1

    # Nothing of the rejected rows arrived, changed or otherwise; everything else did.
    pipeline.sql(
        "DELETE FROM rejects WHERE id IN ("
        + ", ".join(str(i) for i, (col, _, _, _) in REJECTED.items() if col not in where)
        + ", 40, 41)",
        "DELETE FROM long_keys WHERE length(k) > 255",
        "DELETE FROM long_raw WHERE length(raw) > 255",
    )
    pipeline.wait_converged(["rejects", "long_keys", "long_raw"])
    assert pipeline.queue_depth(dead) == 0
    assert applier.alive()


def test_refused_values_arrive_once_the_target_column_can_hold_them(pipeline: Pipeline) -> None:
    """What MariaDB itself refuses is bound unchanged: after a wider target column, a replay
    of the dead letters carries it exactly (docs/types.md, "Remedies")."""
    pipeline.sql("CREATE TABLE later (id int PRIMARY KEY, dt date, j jsonb)")
    _, applier = pipeline.start_pipeline()
    deep = "[" * 40 + "]" * 40
    insert(pipeline, "later", [{"id": 1, "dt": "2024-02-29", "j": "{}"}])
    insert(pipeline, "later", [{"id": 2, "dt": "infinity"}])
    insert(pipeline, "later", [{"id": 3, "j": deep}])
    dead = pipeline.queue + ".dead"
    wait_until(lambda: pipeline.queue_depth(dead) == 2, "two dead letters")
    maria = pipeline.maria()
    maria.cursor().execute("ALTER TABLE later MODIFY dt varchar(20), MODIFY j longtext")
    maria.close()
    subprocess.run(
        [sys.executable, "-m", "applier", "dlq", "replay", "--all"],
        env=pipeline.env,
        capture_output=True,
        check=True,
    )
    pipeline.wait_converged(["later"])
    maria = pipeline.maria()
    cur = maria.cursor()
    cur.execute("SELECT id, dt, j FROM later ORDER BY id")
    assert cur.fetchall() == [(1, "2024-02-29", "{}"), (2, "infinity", None), (3, None, deep)]
    maria.close()
    assert pipeline.queue_depth(dead) == 0
    assert applier.alive()


@pytest.mark.decoders
def test_nan_and_infinity_of_numbers(pipeline: Pipeline) -> None:
    """wal2json 2.5 prints NaN and ±Infinity of numeric, real and double as JSON null: the
    stream cannot tell them from NULL, and the target gets NULL. With wal2json 2.6+ the
    extractor asks for numbers as strings, and pgoutput sends them as they are: the applier
    dead-letters them instead (MariaDB cannot hold them)."""
    pipeline.sql(
        "CREATE TABLE specials (id int PRIMARY KEY, r real, d double precision, n numeric)"
    )
    extractor, applier = pipeline.start_pipeline()
    specials = {1: "NaN", 2: "Infinity", 3: "-Infinity"}
    insert(pipeline, "specials", [{"id": i, "r": v, "d": v, "n": v} for i, v in specials.items()])
    insert(pipeline, "specials", [{"id": 4, "r": "1.5", "d": "-2.5e-300", "n": "3.25"}])
    maria = pipeline.maria()
    cur = maria.cursor()

    def arrived() -> list[Any]:
        try:
            cur.execute("SELECT id, r, d, n FROM specials ORDER BY id")
        except Exception:  # the table is not there yet
            return []
        return list(cur.fetchall())

    if pipeline.decoder == "wal2json" and "numeric_as_string=False" in extractor.output():
        # wal2json before 2.6: the values are lost before the pipeline sees them.
        wait_until(lambda: len(arrived()) == 4, "the four rows")
        rows = arrived()
        assert rows[:3] == [(i, None, None, None) for i in specials]
        assert rows[3][0] == 4
        # The comparison is not fooled: NaN and NULL differ.
        diff = pipeline.differences(["specials"])["specials"]
        assert sorted(src[0] for src, _ in diff.different) == [1, 2, 3]
        assert pipeline.queue_depth(pipeline.queue + ".dead") == 0
    else:
        # pgoutput sends them as they are, as wal2json 2.6+ does with numbers as strings.
        assert pipeline.decoder == "pgoutput" or "numeric_as_string=True" in extractor.output()
        dead = pipeline.queue + ".dead"
        wait_until(lambda: pipeline.queue_depth(dead) == 3, "three dead letters")
        letters = dead_letters(pipeline)
        for i, v in specials.items():
            assert f"'{v}'" in letters[("specials", i)]["x-cdc-error"]
        pipeline.sql("DELETE FROM specials WHERE id < 4")
        pipeline.wait_converged(["specials"])
        assert "dead_lettered" in applier.output()
    maria.close()


# ---------------------------------------------------------------- domains, arrays, enums

DOMAINS = """
CREATE SCHEMA "Other S";
CREATE DOMAIN price AS numeric(10,3);
CREATE DOMAIN bid AS bigint CHECK (VALUE > 0);
CREATE DOMAIN bid2 AS bid;
CREATE DOMAIN "Other S"."My Dom" AS varchar(12);
CREATE DOMAIN "Other S".stamp AS timestamptz(3);
CREATE DOMAIN "Quoted Dom" AS text;
CREATE DOMAIN intarr AS int[];
CREATE DOMAIN amounts AS numeric(6,2)[];
CREATE DOMAIN flag AS boolean;
CREATE DOMAIN raw AS bytea;
CREATE DOMAIN doc AS jsonb;
CREATE DOMAIN boxd AS box;
CREATE DOMAIN num AS numeric;
CREATE DOMAIN code AS char(3);
CREATE TABLE dom (
    id bid2 PRIMARY KEY, p price, o "Other S"."My Dom", ts "Other S".stamp, q "Quoted Dom",
    pa price[], ia intarr, am amounts, oa "Other S"."My Dom"[], f flag, r raw, d doc,
    bx boxd[], n num, c code
);
CREATE TABLE dom_keys (p price, o "Other S"."My Dom", c code, v text, PRIMARY KEY (p, o, c));
"""
DOMAIN_COLUMN_TYPES = {
    "id": "bigint(20)",
    "p": "decimal(10,3)",
    "o": "varchar(12)",
    "ts": "datetime(3)",
    "q": "longtext",
    "pa": "longtext",
    "ia": "longtext",
    "am": "longtext",
    "oa": "longtext",
    "f": "tinyint(1)",
    "r": "longblob",
    "d": "longtext",
    "bx": "longtext",
    "n": "decimal(65,30)",
    "c": "varchar(3)",
}
# What the stream and the copier both say each column's type is (the target's _cdc_columns).
DOMAIN_BASE_TYPES = {
    "id": "bigint",
    "p": "numeric(10,3)",
    "o": "character varying(12)",
    "ts": "timestamp(3) with time zone",
    "q": "text",
    "pa": "numeric(10,3)[]",
    "ia": "integer[]",
    "am": "numeric(6,2)[]",
    "oa": "character varying(12)[]",
    "f": "boolean",
    "r": "bytea",
    "d": "jsonb",
    "bx": "box[]",
    "n": "numeric",
    "c": "character(3)",
}
DOMAIN_ROWS: Rows = [
    {
        "id": 1,
        "p": "3.540",
        "o": "héllo wörld!",
        "ts": "2024-01-01 00:00:00.123+05",
        "q": "quoted",
        "pa": "{1.5,NULL,-9999999.999}",
        "ia": "{{1,2},{3,NULL}}",
        "am": "{1.50,-0.01}",
        "oa": '{"a,b",NULL,"\\"q\\"",""}',
        "f": "true",
        "r": b"\x00\xff",
        "d": '{"k": [1, "é"]}',
        "bx": "{(1,1),(0,0);NULL;(2.5,2),(1,-1)}",
        "n": "1.50",
        "c": "é",
    },
    {"id": 9223372036854775807, "p": "-9999999.999", "f": "false", "bx": "{}", "n": "-0.000001"},
    {"id": 3},
]


def target_types(pipeline: Pipeline, table: str) -> tuple[dict[str, str], dict[str, str]]:
    """The target table's column types, and the PostgreSQL type each was made from."""
    maria = pipeline.maria()
    try:
        cur = maria.cursor()
        cur.execute(
            "SELECT column_name, column_type FROM information_schema.columns"
            " WHERE table_schema = DATABASE() AND table_name = ?",
            (table,),
        )
        columns = dict(cur.fetchall())
        cur.execute("SELECT col, pg_type FROM _cdc_columns WHERE tbl = ?", (table,))
        return columns, dict(cur.fetchall())
    finally:
        maria.close()


@pytest.mark.decoders
def test_domains_arrive_as_their_base_types(pipeline: Pipeline) -> None:
    """A domain is its base type in the target, typmod and key included, whether its rows
    come from the initial copy or from the stream; its name may be quoted and qualified."""
    pipeline.sql(DOMAINS)
    insert(pipeline, "dom", DOMAIN_ROWS[:1])  # copied by the initial snapshot
    insert(pipeline, "dom_keys", [{"p": "1.5", "o": "a", "c": "x", "v": "copied"}])
    extractor, applier = pipeline.start_pipeline()
    insert(pipeline, "dom", DOMAIN_ROWS[1:])  # streamed
    insert(pipeline, "dom_keys", [{"p": "1.500", "o": "a ", "c": "x", "v": "streamed"}])
    pipeline.sql(
        "UPDATE dom SET (p, o, ts, q, pa, ia, am, oa, f, r, d, bx, n, c) ="
        " (SELECT p, o, ts, q, pa, ia, am, oa, f, r, d, bx, n, c FROM dom WHERE id = 1)"
        " WHERE id = 3",
        "UPDATE dom SET id = 4 WHERE id = 3",
        "UPDATE dom_keys SET v = 'updated' WHERE o = 'a'",
        "DELETE FROM dom_keys WHERE o = 'a '",
    )
    pipeline.wait_converged(["dom", "dom_keys"])
    columns, pg_types = target_types(pipeline, "dom")
    assert columns == DOMAIN_COLUMN_TYPES
    assert pg_types == DOMAIN_BASE_TYPES
    columns, _ = target_types(pipeline, "dom_keys")
    assert columns == {"p": "decimal(10,3)", "o": "varchar(12)", "c": "varchar(3)", "v": "longtext"}
    # The copy and the stream agreed on every type: no column was ever altered.
    assert "column_type_changed" not in applier.output()
    assert "type_resolved type=bid2 travels_as=bigint" in extractor.output()
    assert pipeline.queue_depth(pipeline.queue + ".dead") == 0


BOXES = [
    "{}",
    "{NULL}",
    "{(1,1),(0,0)}",
    '{(1,1),(0,0);NULL;"(2.5,2),(-1,-1e-300)"}',
    "{{(1,1),(0,0);(2,2),(1,1)};{(3,3),(2,2);NULL}}",
]


def test_arrays_whose_elements_are_separated_otherwise(pipeline: Pipeline) -> None:
    """box[] separates its elements with ';' (box's text has commas of its own); every other
    built-in type with ','. A domain over box keeps box's delimiter. Elements keep every
    character, white space included."""
    pipeline.sql(
        "CREATE DOMAIN boxd AS box",
        "CREATE TABLE boxes (id int PRIMARY KEY, b box[], bd boxd[], p point[], l line[],"
        " s lseg[], c circle[], poly polygon[], pa path[], t text[])",
    )
    insert(pipeline, "boxes", [{"id": 0, "b": BOXES[3], "bd": BOXES[4]}])
    pipeline.start_pipeline()
    insert(
        pipeline,
        "boxes",
        [{"id": i + 1, "b": v, "bd": BOXES[-1 - i]} for i, v in enumerate(BOXES)]
        + [
            {
                "id": 10,
                "p": '{NULL,"(1,2)","(-1.5,1e-300)"}',
                "l": '{NULL,"{1,2,3}"}',
                "s": '{"[(1,2),(3,4)]"}',
                "c": '{"<(1,2),3>"}',
                "poly": '{"((0,0),(1,1),(1,0))"}',
                "pa": '{"[(0,0),(1,1)]","((0,0),(1,1),(2,0))"}',
                # White space other than ASCII's is no reason to quote an element.
                "t": ["\u00a0nbsp\u00a0", "\u3000ideographic\u2003", "\u200b", " ascii "],
            }
        ],
    )
    pipeline.wait_converged(["boxes"])
    maria = pipeline.maria()
    cur = maria.cursor()
    cur.execute("SELECT b, bd FROM boxes WHERE id = 0")
    assert cur.fetchone() == (
        '["(1,1),(0,0)",null,"(2.5,2),(-1,-1e-300)"]',
        '[["(1,1),(0,0)","(2,2),(1,1)"],["(3,3),(2,2)",null]]',
    )
    maria.close()


COLON_TYPE = """
CREATE TYPE colon;
CREATE FUNCTION colon_in(cstring) RETURNS colon AS 'textin' LANGUAGE internal IMMUTABLE STRICT;
CREATE FUNCTION colon_out(colon) RETURNS cstring AS 'textout' LANGUAGE internal IMMUTABLE STRICT;
CREATE TYPE colon (INPUT = colon_in, OUTPUT = colon_out, LIKE = text, DELIMITER = ':');
CREATE TABLE colons (id int PRIMARY KEY, c colon[], v colon);
"""


def test_arrays_of_a_type_with_its_own_delimiter_are_kept_as_text(pipeline: Pipeline) -> None:
    """An extension's type may separate array elements with any character (PostGIS's
    geometry uses ':'): such an array is stored as PostgreSQL's text of the whole array, which
    no reader can split wrongly."""
    pipeline.sql(COLON_TYPE)
    insert(pipeline, "colons", [{"id": 1, "c": '{a,b:c:NULL:"x:y"}', "v": "a,b:c"}])
    pipeline.start_pipeline()
    insert(pipeline, "colons", [{"id": 2, "c": "{}"}, {"id": 3, "c": "{{a:b}:{c:NULL}}"}])
    wait_until(lambda: len(target_text(pipeline, "colons")) == 3, "the three rows")
    assert target_text(pipeline, "colons") == source_text(pipeline, "colons")
    columns, pg_types = target_types(pipeline, "colons")
    assert columns["c"] == "longtext" and pg_types["c"] == "_colon"


def source_text(pipeline: Pipeline, table: str) -> dict[Any, tuple[Any, ...]]:
    """Every row as PostgreSQL's text of each value, read as the extractor's session reads."""
    conn = pipeline.pg()
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SET TimeZone = 'UTC'; SET DateStyle = ISO; SET IntervalStyle = postgres;"
                " SET extra_float_digits = 3; SET bytea_output = hex"
            )
            cur.execute(
                "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0"
                " AND NOT attisdropped ORDER BY attnum",
                (table,),
            )
            names = [r[0] for r in cur.fetchall()]
            cur.execute(f"SELECT {', '.join(f'{n}::text' for n in names)} FROM {table}")
            return {int(r[0]): tuple(r[1:]) for r in cur.fetchall()}
    finally:
        conn.close()


def target_text(pipeline: Pipeline, table: str) -> dict[Any, tuple[Any, ...]]:
    maria = pipeline.maria()
    try:
        cur = maria.cursor()
        try:
            cur.execute(f"SELECT * FROM `{table}`")
        except Exception:  # not created yet
            return {}
        return {
            int(r[0]): tuple(None if v is None else str(v) for v in r[1:]) for r in cur.fetchall()
        }
    finally:
        maria.close()


@pytest.mark.decoders
def test_enums_travel_as_their_labels(pipeline: Pipeline) -> None:
    """Enums are text in the target (docs/types.md says why): a label added at the source while
    the pipeline runs arrives like any other, and labels that differ only in case or trailing
    spaces stay apart, as keys too."""
    pipeline.sql(
        "CREATE TYPE mood AS ENUM ('sad', 'ok', 'Ok', 'ok ', 'très \"happy\"')",
        "CREATE TYPE \"Shout\" AS ENUM ('A')",
        'CREATE TABLE moods (m mood PRIMARY KEY, s "Shout", ms mood[], note text)',
    )
    insert(pipeline, "moods", [{"m": "sad", "s": "A", "ms": "{sad,NULL}", "note": "copied"}])
    _, applier = pipeline.start_pipeline()
    insert(
        pipeline,
        "moods",
        [
            {"m": "ok", "ms": '{ok,"ok ",Ok,"très \\"happy\\""}'},
            {"m": "Ok", "s": "A"},
            {"m": "ok ", "ms": "{}"},
        ],
    )
    pipeline.wait_converged(["moods"])
    pipeline.sql("ALTER TYPE mood ADD VALUE 'new one' BEFORE 'sad'")
    pipeline.sql("ALTER TYPE \"Shout\" ADD VALUE 'B'")
    pipeline.sql(
        "UPDATE moods SET m = 'new one', s = 'B', ms = '{\"new one\"}' WHERE m = 'sad'",
        "INSERT INTO moods (m, s) VALUES ('très \"happy\"', 'B')",
        "DELETE FROM moods WHERE m = 'ok '",
    )
    pipeline.wait_converged(["moods"])
    columns, pg_types = target_types(pipeline, "moods")
    assert columns == {"m": "varchar(255)", "s": "longtext", "ms": "longtext", "note": "longtext"}
    assert pg_types == {"m": "mood", "s": '"Shout"', "ms": "mood[]", "note": "text"}
    assert "column_type_changed" not in applier.output()


ODD_TYPES = """
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE EXTENSION IF NOT EXISTS citext;
CREATE TYPE pair AS (a int, b text);
CREATE TABLE odd (
    id int PRIMARY KEY, comp pair, r4 int4range, r8 int8range, rn numrange, rts tsrange,
    rtz tstzrange, rd daterange, mr int4multirange, hs hstore, ci citext, mo money, bt bit(4),
    vb varbit, ip inet, cr cidr, mac macaddr, mac8 macaddr8, tv tsvector, tq tsquery, x xml,
    pt point, ln line, ls lseg, bx box, pth path, pg polygon, cc circle, iv interval,
    rc regclass, rt regtype, rp regproc, lsn pg_lsn, nm name, ch "char", xi xid,
    tsn txid_snapshot, ov oidvector, jp jsonpath
)
"""
ODD_ROWS: Rows = [
    {
        "id": 1,
        "comp": '(1,"x y")',
        "r4": "[1,5)",
        "r8": "(,9223372036854775807)",
        "rn": "[1.50,2.5]",
        "rts": "[2024-01-01 00:00:00,infinity)",
        "rtz": "[2024-01-01 00:00:00+05:30,2024-01-02 00:00:00+00)",
        "rd": "[2024-02-29,2024-03-01]",
        "mr": "{[1,3),[5,7)}",
        "hs": '"a"=>"1", "b c"=>NULL, "é"=>"\\"q\\""',
        "ci": "MiXeD Case é",
        "mo": "-1234.56",
        "bt": "1010",
        "vb": "10101010101",
        "ip": "2001:db8::1/64",
        "cr": "10.0.0.0/8",
        "mac": "08:00:2b:01:02:03",
        "mac8": "08:00:2b:01:02:03:04:05",
        "tv": "a fat cat sat on a mat é",
        "tq": "fat & (rat | cat)",
        "x": '<a b="1">é &amp; <c/></a>',
        "pt": "(1.5,-2e-300)",
        "ln": "{1,-1,0.1}",
        "ls": "[(0,0),(1,1)]",
        "bx": "(1,1),(0,0)",
        "pth": "[(0,0),(1,1),(2,0)]",
        "pg": "((0,0),(1,1),(1,0))",
        "cc": "<(1,2),3.5>",
        "iv": "1 year 2 mons -3 days 04:05:06.789",
        "rc": "odd",
        "rt": "double precision",
        "rp": "now",
        "lsn": "16/B374D848",
        "nm": "a name",
        "ch": "x",
        "xi": "4294967295",
        "tsn": "10:20:10,14,15",
        "ov": "1 2 4294967295",
        "jp": '$."a"[*] ? (@ > 1.5)',
    },
    {"id": 2},
    {"id": 3, "comp": "(,)", "r4": "empty", "mr": "{}", "hs": "", "mo": "0", "bt": "0000"},
]


def test_less_common_types_arrive_as_postgresql_prints_them(pipeline: Pipeline) -> None:
    """Types without a MariaDB counterpart are stored as PostgreSQL's text of the value, exactly,
    from the copy and from the stream alike."""
    pipeline.sql(ODD_TYPES)
    insert(pipeline, "odd", ODD_ROWS[:1])
    pipeline.start_pipeline()
    insert(pipeline, "odd", ODD_ROWS[1:])
    columns = ", ".join(list(ODD_ROWS[0])[1:])
    pipeline.sql(f"INSERT INTO odd SELECT 4, {columns} FROM odd WHERE id = 1")  # streamed
    wait_until(lambda: len(target_text(pipeline, "odd")) == 4, "the four rows")
    assert target_text(pipeline, "odd") == source_text(pipeline, "odd")
    types, _ = target_types(pipeline, "odd")
    assert {c for c, t in types.items() if t != "longtext"} == {"id"}


ODD_ARRAYS = """
CREATE EXTENSION IF NOT EXISTS hstore;
CREATE TYPE pair AS (a int, b text);
CREATE TYPE mood AS ENUM ('ok', 'not ok');
CREATE TABLE odd_arrays (
    id int PRIMARY KEY, comp pair[], r4 int4range[], mo money[], hs hstore[], ip inet[],
    iv interval[], js json[], by bytea[], tz tstzrange[], mood mood[], bt bit(3)[]
)
"""
ODD_ARRAY_ROWS: Rows = [
    {
        "id": 1,
        "comp": '{"(1,\\"x, y\\")",NULL,"(2,)"}',
        "r4": '{"[1,5)",empty,NULL}',
        "mo": '{"$1,234.56",-0.01}',
        "hs": '{"\\"a\\"=>\\"1\\", \\"b\\"=>NULL",""}',
        "ip": "{10.0.0.1/8,::1}",
        "iv": '{"1 year -2 days",00:00:01.5}',
        "js": '{"{\\"a\\": [1, 2]}",null,"\\"s\\""}',
        "by": '{"\\\\x00ff",NULL,"\\\\x"}',
        "tz": '{"[2024-01-01 00:00:00+05,infinity)"}',
        "mood": '{ok,"not ok",NULL}',
        "bt": "{101,000}",
    },
    {"id": 2, "comp": "{}", "r4": "{}"},
]


def test_arrays_of_less_common_types_hold_each_element_as_postgresql_prints_it(
    pipeline: Pipeline,
) -> None:
    """Each element is a JSON string of PostgreSQL's text of it (a composite is its text, not an
    object), NULL is null; from the copy and from the stream alike."""
    pipeline.sql(ODD_ARRAYS)
    insert(pipeline, "odd_arrays", ODD_ARRAY_ROWS[:1])
    pipeline.start_pipeline()
    insert(pipeline, "odd_arrays", ODD_ARRAY_ROWS[1:])
    columns = ", ".join(list(ODD_ARRAY_ROWS[0])[1:])
    pipeline.sql(f"INSERT INTO odd_arrays SELECT 3, {columns} FROM odd_arrays WHERE id = 1")
    wait_until(lambda: len(target_text(pipeline, "odd_arrays")) == 3, "the three rows")
    conn = pipeline.pg()
    with conn.cursor() as cur:
        cur.execute("SET TimeZone = 'UTC'; SET IntervalStyle = postgres; SET bytea_output = hex")
        # Each element through its type's output function, as in the array's text.
        elements = ", ".join(
            f"(SELECT json_agg(CASE WHEN NOT {c}[i] IS NULL THEN format('%s', {c}[i]) END)"
            f" FROM generate_subscripts({c}, 1) i)::text"
            for c in columns.split(", ")
        )
        cur.execute(f"SELECT id, {elements} FROM odd_arrays")
        source = {
            r[0]: tuple(None if v is None else json.loads(v) for v in r[1:]) for r in cur.fetchall()
        }
    conn.close()
    target = {
        i: tuple(None if v is None else json.loads(v) or None for v in row)
        for i, row in target_text(pipeline, "odd_arrays").items()
    }
    assert target == source


def test_a_target_made_before_domains_were_resolved_follows_the_base_types(
    pipeline: Pipeline,
) -> None:
    """An earlier version stored a domain as text (its name told the applier nothing): with the
    first change after the upgrade the column is altered to the base type's, values kept."""
    pipeline.sql(
        "CREATE DOMAIN price AS numeric(10,3)",
        "CREATE DOMAIN bid AS bigint",
        "CREATE TABLE up (id bid PRIMARY KEY, p price, t text)",
    )
    insert(pipeline, "up", [{"id": 1, "p": "3.54", "t": "a"}, {"id": 2, "p": "-0.001"}])
    _, applier = pipeline.start_pipeline()
    pipeline.wait_converged(["up"])
    applier.stop()
    # What the earlier version made of it.
    maria = pipeline.maria()
    cur = maria.cursor()
    cur.execute("ALTER TABLE up MODIFY id varchar(255), MODIFY p longtext")
    cur.execute("UPDATE _cdc_columns SET pg_type = 'bid' WHERE tbl = 'up' AND col = 'id'")
    cur.execute("UPDATE _cdc_columns SET pg_type = 'price' WHERE tbl = 'up' AND col = 'p'")
    maria.close()
    applier = pipeline.start("applier")
    pipeline.sql("UPDATE up SET t = 'b' WHERE id = 1", "INSERT INTO up VALUES (3, 9999999.999)")
    pipeline.wait_converged(["up"])
    columns, pg_types = target_types(pipeline, "up")
    assert columns == {"id": "bigint(20)", "p": "decimal(10,3)", "t": "longtext"}
    assert pg_types == {"id": "bigint", "p": "numeric(10,3)", "t": "text"}
    log = applier.output()
    assert "column_type_changed table=up column=id from=bid to=bigint" in log
    assert "column_type_changed table=up column=p from=price to=numeric(10,3)" in log
