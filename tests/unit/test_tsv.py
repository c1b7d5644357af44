"""The bulk path's file: LOAD DATA's tab-separated escaping, value by value.

``read_back`` is LOAD DATA's reading of a line as the MariaDB manual states it (FIELDS
TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'): a field ``\\N`` is NULL, a
backslash makes the next character literal except for 0 b n r t Z N. The same rows go
through a real server in tests/e2e/test_bulk.py.
"""

from __future__ import annotations

import datetime
import decimal

import pytest

from applier.tsv import Unloadable, encode

_UNESCAPE = {"0": "\0", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a"}


def read_back(data: bytes) -> list[list[str | None]]:
    text = data.decode("utf-8")
    assert text.endswith("\n")
    rows: list[list[str | None]] = []
    row: list[str | None] = []
    field: list[str] = []
    i = 0
    escaped_null = False
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            nxt = text[i + 1]
            if nxt == "N" and not field:
                escaped_null = True
            else:
                field.append(_UNESCAPE.get(nxt, nxt))
            i += 2
            continue
        if ch in "\t\n":
            row.append(None if escaped_null and not field else "".join(field))
            field, escaped_null = [], False
            if ch == "\n":
                rows.append(row)
                row = []
            i += 1
            continue
        field.append(ch)
        i += 1
    return rows


NASTY = [
    "",
    "\\N",
    "\\\\N",
    "N",
    "NULL",
    "\\",
    "a\tb",
    "line\nbreak",
    "crlf\r\n",
    "\t",
    "\n",
    "ends with backslash\\",
    "\\t not a tab",
    "nul\0inside",
    "Zoë e\u0301 東京 🍣 zero\u200bwidth rtl\u202e bom\ufeff",
    "'quote' \"double\" `back`",
    "  spaces  ",
]


def test_text_round_trips_exactly() -> None:
    rows: list[tuple[object, ...]] = [(i, v) for i, v in enumerate(NASTY)]
    data, binary = encode(rows, 2)
    assert binary == (False, False)
    assert read_back(data) == [[str(i), v] for i, v in enumerate(NASTY)]
    assert data.count(b"\n") == len(NASTY)  # newlines inside values are all escaped


def test_null_and_empty_string_differ() -> None:
    data, _ = encode([(None, ""), ("", None), ("\\N", None)], 2)
    assert data == b"\\N\t\n\t\\N\n\\\\N\t\\N\n"
    assert read_back(data) == [[None, ""], ["", None], ["\\N", None]]


def test_bytes_travel_as_hex() -> None:
    blob = bytes(range(256)) + b"\x00"
    data, binary = encode([(1, blob), (2, b""), (3, None), (4, bytearray(b"\t\n\\"))], 2)
    assert binary == (False, True)
    assert read_back(data) == [["1", blob.hex()], ["2", ""], ["3", None], ["4", "090a5c"]]


def test_numbers_booleans_and_times() -> None:
    big = 123456789012345678901234567890
    rows: list[tuple[object, ...]] = [
        (big, True, decimal.Decimal("-0.000000000000000000001"), 0.1, datetime.date(1, 1, 1)),
        (-(2**63), False, None, -0.0, datetime.datetime(2024, 2, 29, 1, 2, 3, 4)),
        (None, None, decimal.Decimal("1E+3"), None, datetime.time(23, 59, 59, 999999)),
    ]
    data, binary = encode(rows, 5)
    assert binary == (False,) * 5
    assert read_back(data) == [
        [str(big), "1", "-1E-21", "0.1", "0001-01-01"],
        [str(-(2**63)), "0", None, "-0.0", "2024-02-29 01:02:03.000004"],
        [None, None, "1E+3", None, "23:59:59.999999"],
    ]


def test_a_column_of_nulls_only() -> None:
    data, binary = encode([(None,), (None,)], 1)
    assert (data, binary) == (b"\\N\n\\N\n", (False,))


def test_values_without_a_file_form_are_refused() -> None:
    with pytest.raises(Unloadable):
        encode([({"a": 1},)], 1)
    with pytest.raises(Unloadable):
        encode([(b"x",), ("x",)], 1)  # bytes and text in one column: which one is it?
    with pytest.raises(Unloadable):
        encode([(1, 2)], 3)


def test_no_rows_no_file() -> None:
    assert encode([], 3) == (b"", (False, False, False))
