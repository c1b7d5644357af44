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

from devstack.system import wait_until
from harness.pipeline import Pipeline

Rows = list[dict[str, Any]]

TYPES_TABLE = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'très "happy"', 'with space');
CREATE TABLE types (
    id int PRIMARY KEY,
    i2 smallint, i4 integer, i8 bigint,
    n numeric, n_ps numeric(12,4), n_max numeric(65,30), n_neg numeric(3,-2),
    n_frac numeric(2,5),
    r real, d double precision,
    t text, vc varchar(5), c char(4), b boolean,
    dt date, tm time, tm3 time(3), ts timestamp, ts3 timestamp(3), tz timestamptz, ttz timetz,
    iv interval, j json, jb jsonb, u uuid, by bytea,
    ia int[], ta text[], na numeric[], fa double precision[], ba boolean[],
    e mood, ip inet, ci cidr
)
"""

# What the applier creates: the mapping table of docs/types.md, as MariaDB reports it.
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

ODD_TEXT = (
    "tab\there, new\nline, crlf\r\n, 'single' \"double\" back\\slash \\\\two, % _ {} [] , NULL"
    " Zoë e\u0301 東京 🍣🎉 zero\u200bwidth rtl\u202e bom\ufeff end  "
)

EDGE_ROWS: Rows = [
    {  # lower limits
        "id": 1,
        "i2": -32768,
        "i4": -2147483648,
        "i8": -9223372036854775808,
        "n": "-12345678901234567890.12345678901234567890",  # 40 significant digits
        "n_ps": "-99999999.9999",
        "n_max": "-" + "9" * 35 + "." + "9" * 30,
        "n_neg": "-99900",
        "n_frac": "-0.00099",
        "r": "-3.4028235e38",
        "d": "-1e300",
        "t": "",
        "vc": "",
        "c": "",
        "b": "false",
        "dt": "0001-01-01",
        "tm": "00:00:00",
        "tm3": "00:00:00",
        "ts": "0001-01-01 00:00:00",
        "ts3": "0001-01-01 00:00:00.001",
        "tz": "0001-01-01 00:00:00+00",
        "ttz": "00:00:00+15:59",
        "iv": "-178000000 years",
        "j": "null",  # JSON null, not SQL NULL
        "jb": "[" * 31 + "]" * 31,  # as deep as MariaDB's JSON holds
        "u": "00000000-0000-0000-0000-000000000000",
        "by": b"",
        "ia": "{}",
        "ta": "{}",
        "na": "{}",
        "fa": "{}",
        "ba": "{}",
        "e": "sad",
        "ip": "0.0.0.0/0",
        "ci": "0.0.0.0/0",
    },
    {  # upper limits
        "id": 2,
        "i2": 32767,
        "i4": 2147483647,
        "i8": 9223372036854775807,
        "n": "1234567890123456789012345678901234.567890123456789012345678901234",
        "n_ps": "99999999.9999",
        "n_max": "9" * 35 + "." + "9" * 30,
        "n_neg": "99900",
        "n_frac": "0.00099",
        "r": "3.4028235e38",
        "d": "1.7976931348623157e308",
        "t": ODD_TEXT * 50,
        "vc": "éé🎉🍣x",  # five characters, 14 bytes
        "c": "abcd",
        "b": "true",
        "dt": "9999-12-31",
        "tm": "24:00:00",
        "tm3": "23:59:59.999",
        "ts": "9999-12-31 23:59:59.999999",
        "ts3": "9999-12-31 23:59:59.999",
        "tz": "9999-12-31 23:59:59.999999+00",
        "ttz": "24:00:00-15:59",
        "iv": "178000000 years 11 mons 30 days 23:59:59.999999",
        "j": '{"a": 1, "a": 2, "k": "\\u00e9 \\"q\\" \\\\ \\ud83c\\udf89", "n": 1.50,'
        ' "e": 1e400, "big": 123456789012345678901234567890,'
        ' "nested": {"x": [1, [2, [3, {"y": null}]]], "t": true}}',
        "jb": '{"é": ["🎉", null, true, false, 1.50, -0.000000000000000000001,'
        ' {"deep": [[[1]]]}], "": "", "esc": "\\u00e9\\n\\t\\u0001"}',
        "u": "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF",
        "by": bytes(range(256)) * 4 + b"\x00",
        "ia": "{2147483647,-2147483648,NULL,0}",
        "ta": '{"q\\"x","back\\\\slash","a,b","{c}","NULL",NULL,"","  ","é🎉","tab\tx"}',
        "na": "{1.50,NaN,-0.000000000000000000001,123456789012345678901234567890.5}",
        "fa": "{NaN,Infinity,-Infinity,1e300,-0,5e-324}",
        "ba": "{t,f,NULL}",
        "e": 'très "happy"',
        "ip": "2001:db8::1/64",
        "ci": "2001:db8::/32",
    },
    {  # tiny and in between
        "id": 3,
        "i2": 0,
        "i4": -1,
        "i8": 1,
        "n": "0.000000000000000000001",  # 1e-21
        "n_ps": "0.0001",
        "n_max": "0.000000000000000000000000000001",
        "n_neg": "0",
        "n_frac": "0.00001",
        "r": "1e-45",  # the smallest float4 (subnormal)
        "d": "5e-324",  # the smallest float8 (subnormal)
        "t": ODD_TEXT,
        "vc": "a b  ",  # trailing spaces are kept
        "c": "é",  # padded to 'é   '
        "b": None,
        "dt": "2024-02-29",
        "tm": "12:34:56.789012",
        "tm3": "12:34:56.789",
        "ts": "2024-02-29 12:34:56.789012",
        "ts3": "2024-02-29 12:34:56.789",
        "tz": "2024-06-01 12:00:00.000001+05:30",
        "ttz": "12:00:00.123456+05:30",
        "iv": "1 year 2 mons 3 days 04:05:06.789",
        "j": '  {"spaces" :  [ 1 , 2 ] }  ',
        "jb": '"just a string"',
        "u": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "by": b"\x00",
        "ia": "{{1,2},{3,4}}",
        "ta": '{{a,"b c"},{NULL,""}}',
        "na": "{0}",
        "fa": "{0.1,1.7976931348623157e308}",
        "ba": "{{t},{f}}",
        "e": "with space",
        "ip": "192.168.0.1/24",
        "ci": "10.0.0.0/8",
    },
    {"id": 4},  # NULL in every column
    {  # more floats and intervals
        "id": 5,
        "r": "1.17549435e-38",  # the smallest normal float4
        "d": "2.2250738585072014e-308",  # the smallest normal float8
        "n": "-0.000000000000000000000000000001",
        "iv": "-1 days +23:59:59.999999",
        "ttz": "23:59:59.999999+00",
        "tm": "23:59:59.999999",
        "ip": "::ffff:1.2.3.4",
        "ci": "::/0",
    },
    {"id": 6, "r": "0.1", "d": "0.1", "iv": "1 mon -1 days", "n": "1e-30"},
    {"id": 7, "r": "-0", "d": "-0", "iv": "00:00:00", "n": "-0"},
]

# timestamptz with various offsets: PostgreSQL stores the instant; the target holds it in UTC.
OFFSET_ROWS: Rows = [
    {"id": 100 + i, "tz": tz}
    for i, tz in enumerate(
        [
            "2024-01-01 00:00:00-12",
            "2024-01-01 00:00:00+14",
            "2024-01-01 00:00:00+05:45",
            "2024-01-01 00:00:00-03:30",
            "1900-01-01 00:00:00+00:19:32",  # Amsterdam's mean time, an offset with seconds
            "2024-03-31 02:30:00 Europe/Amsterdam",  # in the spring-forward gap
            "2024-10-27 02:30:00 Europe/Amsterdam",  # in the autumn overlap
            "2000-02-29 23:59:59.999999-00:01",
            "0001-01-01 23:00:00+14",  # still year 1 in UTC
        ]
    )
]


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
            for change in json.loads(body)["changes"]:
                row_id = change["values"][change["columns"].index(change["key"][0])]
                if change["types"][change["columns"].index(change["key"][0])] == "bytea":
                    row_id = bytes.fromhex(row_id.removeprefix("\\x"))
                out[(change["table"], row_id)] = props.headers


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
}


def test_values_mariadb_cannot_hold_are_dead_lettered_with_the_reason(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE TABLE rejects (id int PRIMARY KEY, dt date, ts timestamp, tz timestamptz,"
        " n numeric, n_wide numeric(70,0), j json, jb jsonb, ia int[])",
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


def test_nan_and_infinity_of_numbers(pipeline: Pipeline) -> None:
    """wal2json 2.5 prints NaN and ±Infinity of numeric, real and double as JSON null: the
    stream cannot tell them from NULL, and the target gets NULL. With wal2json 2.6+ the
    extractor asks for numbers as strings, and the applier dead-letters them instead."""
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

    if "numeric_as_string=False" in extractor.output():
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
        assert "numeric_as_string=True" in extractor.output()
        dead = pipeline.queue + ".dead"
        wait_until(lambda: pipeline.queue_depth(dead) == 3, "three dead letters")
        letters = dead_letters(pipeline)
        for i, v in specials.items():
            assert f"'{v}'" in letters[("specials", i)]["x-cdc-error"]
        pipeline.sql("DELETE FROM specials WHERE id < 4")
        pipeline.wait_converged(["specials"])
        assert "dead_lettered" in applier.output()
    maria.close()
