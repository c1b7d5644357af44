"""The rows of every type that tests/e2e/test_types.py and tests/e2e/test_bulk.py send
through the pipeline: one table of every type in docs/types.md, and edge values."""

from __future__ import annotations

from typing import Any

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
