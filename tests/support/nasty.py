"""Rows that stress LOAD DATA's escaped format (tabs, newlines, backslashes, \\N, NUL bytes,
extreme numbers), for the bulk path's tests on one MariaDB and on Galera."""

from __future__ import annotations

import json
from typing import Any

import psycopg2

from harness.pipeline import Pipeline
from tests.support.metrics import scrape, value
from tests.support.type_rows import ODD_TEXT

NASTY_TEXT = [
    "",
    "\\N",
    "\\\\N",
    "N",
    "NULL",
    "\\",
    "a\tb",
    "\t",
    "\n",
    "line\nbreak",
    "crlf\r\n",
    "ends with backslash\\",
    "\\t not a tab \\n not a newline \\0 not a nul",
    "'quote' \"double\" `back` ; -- /* */",
    "Zoë e\u0301 東京 🍣🎉 zero\u200bwidth rtl\u202e bom\ufeff \x1a",
    ODD_TEXT,
]

NASTY_TABLES = """
CREATE TABLE nasty (
    id int PRIMARY KEY, t text, v varchar(60), b bytea, n numeric, n2 numeric(30,10),
    big bigint, f double precision, ok boolean, j jsonb, d date, tz timestamptz
);
CREATE TABLE pairs (a text, b int, v text, PRIMARY KEY (a, b));
"""


def nasty_rows(first: int, count: int) -> list[tuple[Any, ...]]:
    rows = []
    for i in range(first, first + count):
        text = NASTY_TEXT[i % len(NASTY_TEXT)]
        rows.append(
            (
                i,
                None if i % 7 == 0 else text * (1 + i % 3),
                text[:60] if i % 5 else None,
                bytes([i % 256, 0, 9, 10, 13, 92, 78]) * (i % 4) if i % 11 else None,
                f"{'-' if i % 2 else ''}{'9' * 30}.{str(i) * 3}" if i % 6 else None,
                f"{i}.0000000001",
                -(2**63) if i % 9 == 0 else 2**63 - 1 - i,
                [1e308, -0.0, 5e-324, 0.1, 1.0 / 3][i % 5],
                None if i % 4 == 0 else bool(i % 2),
                json.dumps({"t": text, "n": [i, None, True], "\\N": "\t"}),
                "2024-02-29" if i % 2 else "0001-01-01",
                f"2024-01-01 00:00:00.{i % 1000000:06d}+05:30",
            )
        )
    return rows


def copy_in(pipeline: Pipeline, statements: list[tuple[str, list[tuple[Any, ...]]]]) -> None:
    """All the statements' rows in one source transaction."""
    conn = pipeline.pg()
    conn.autocommit = False
    try:
        with conn.cursor() as cur:
            for sql, rows in statements:
                cur.executemany(
                    sql,
                    [
                        tuple(psycopg2.Binary(v) if isinstance(v, bytes) else v for v in r)
                        for r in rows
                    ],
                )
        conn.commit()
    finally:
        conn.close()


def bulk_rows(port: int, table: str) -> float:
    return value(scrape(port), "cdc_applier_bulk_rows_total", table=table) or 0.0
