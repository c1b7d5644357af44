"""wal2json and pgoutput side by side on the same WAL: PostgreSQL's decoding (and sending) and
our decoder's, per row.

    python -m bench.decoders [--rows N]     (also the "decoders" part of python -m bench)

Two slots are made at the same point, one per plugin (pgoutput with a publication of the
table, as the extractor starts it); the bulk benchmark's rows are inserted in 1,000-row
transactions; then for each plugin: PostgreSQL decodes all of it
(``pg_logical_slot_get_binary_changes``: rows/s, the plugin's own cost and the transfer), and
the extractor's decoder (extractor/wal2json.py, extractor/pgoutput.py) turns the bytes into
change objects in this process (microseconds per row, the best of three passes, with the
records' allocations as they are in the extractor).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.parts import BULK_ROW, BULK_TABLE
from devstack.stack import Stack, default_dir
from extractor.decode import Decoder
from extractor.pgoutput import PROTO_VERSION, PgOutputDecoder, catalog_lookups
from extractor.wal2json import Wal2JsonDecoder, wal2json_options
from harness.pipeline import Pipeline, new_pipeline
from shared.tables import TableFilter

PUBLICATION = "bench_decoders"


def compare(p: Pipeline, rows: int, add: Callable[[str, str, str, str], None]) -> dict[str, float]:
    """Both decoders on ``rows`` inserted rows; adds the figures (``add(decoder, part,
    figure, value)``: a column each in the report); returns µs per row of ours."""
    conn = p.pg()
    slots = {"wal2json": f"{p.name}_w", "pgoutput": f"{p.name}_p"}
    with conn.cursor() as cur:
        cur.execute(BULK_TABLE.replace("TABLE bulk", "TABLE bench_decoders"))
        cur.execute(f"CREATE PUBLICATION {PUBLICATION} FOR TABLE bench_decoders")
        for plugin, slot in slots.items():
            cur.execute("SELECT pg_create_logical_replication_slot(%s, %s)", (slot, plugin))
        for lo in range(1, rows + 1, 1000):
            cur.execute(
                f"INSERT INTO bench_decoders SELECT {BULK_ROW} FROM generate_series(%s, %s) g",
                (lo, min(lo + 999, rows)),
            )
    options = {
        "wal2json": wal2json_options(TableFilter()),
        "pgoutput": {
            "proto_version": PROTO_VERSION,
            "publication_names": PUBLICATION,
            "messages": "true",
        },
    }
    ours: dict[str, float] = {}
    try:
        for plugin, slot in slots.items():
            flat = [x for kv in options[plugin].items() for x in kv]
            started = time.monotonic()
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT lsn, data FROM pg_logical_slot_get_binary_changes(%s, NULL, NULL"
                    + ", %s" * len(flat)
                    + ")",
                    [slot, *flat],
                )
                messages = [(_lsn(lsn), bytes(data)) for lsn, data in cur.fetchall()]
            took = time.monotonic() - started
            add(plugin, "decoders", "PostgreSQL decoding and sending rows/s", f"{rows / took:,.0f}")
            decoder: Decoder = (
                Wal2JsonDecoder(None) if plugin == "wal2json" else _pgoutput_decoder(p.pg)
            )
            ours[plugin] = _decode_micros(decoder, messages, rows)
            add(plugin, "decoders", "our decoder µs/row", f"{ours[plugin]:.2f}")
            size = sum(len(d) for _, d in messages) / rows
            add(plugin, "decoders", "bytes/row from PostgreSQL", f"{size:.0f}")
    finally:
        with conn.cursor() as cur:
            for slot in slots.values():
                cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            cur.execute(f"DROP PUBLICATION {PUBLICATION}")
            cur.execute("DROP TABLE bench_decoders")
        conn.close()
    return ours


def _lsn(text: str) -> int:
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


def _pgoutput_decoder(connect: Callable[[], Any]) -> PgOutputDecoder:
    types, keys = catalog_lookups(connect)
    return PgOutputDecoder(types, keys)


def _decode_micros(decoder: Decoder, messages: list[tuple[int, bytes]], rows: int) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        for lsn, data in messages:
            decoder.decode(data, lsn)
        best = min(best, time.perf_counter() - started)
    return best / rows * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.decoders", description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--stack", default=str(default_dir() / "bench"))
    args = parser.parse_args(argv)
    stack = Stack.load(Path(args.stack))
    stack.start()
    logdir = stack.root / "logs"
    logdir.mkdir(exist_ok=True)
    pipeline = new_pipeline(stack, logdir)
    try:
        compare(
            pipeline,
            args.rows,
            lambda plugin, _, figure, value: print(f"{plugin}: {figure}: {value}"),
        )
    finally:
        pipeline.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
