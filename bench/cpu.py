"""CPU per row of our own Python, step by step, without servers: where the bulk part's time
goes in the two processes, measured in one process so a change shows at once.

    python -m bench.cpu [--rows 200000] [--profile]

The rows are the bulk part's (bench/parts.py: five columns, 1,000 per transaction), as
wal2json 2.5 prints them (numerics as bare JSON numbers). Extractor: a record's bytes ->
decoded -> filtered -> types resolved -> assembled into 1,000-change messages (envelope
encoded). Applier: a message's bytes -> envelopes -> the plan (rows to bind) -> the bulk
path's file (applier/tsv.py). What is not ours is left out: psycopg2 reading the slot, pika,
MariaDB's connector; the bench's bulk part measures everything together (docs/performance.md).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from collections.abc import Callable
from typing import Any, cast

from sqlalchemy.dialects.mysql import mariadbconnector

from applier.plan import build_plan
from applier.tsv import encode as tsv_encode
from applier.upsert import Statements
from extractor.assemble import Assembler
from extractor.basetypes import TypeResolver
from extractor.decode import Begin, RowChange
from extractor.filtering import keep_change
from extractor.partitions import Layout, Partitions
from extractor.wal2json import decode_record
from shared import wire
from shared.cli import tune_gc
from shared.tables import TableFilter, TableRef

PER_TXN = 1000


def wal2json_records(rows: int) -> list[bytes]:
    """The bulk part's rows as wal2json 2.5 prints each insert."""
    out = []
    for g in range(1, rows + 1):
        lsn = f"0/{0x1000000 + g * 0x40:X}"
        out.append(
            (
                '{"action":"I","xid":1000,"timestamp":"2026-01-01 00:00:00.123456+00",'
                f'"lsn":"{lsn}","schema":"public","table":"bulk","columns":['
                f'{{"name":"id","type":"bigint","value":{g}}},'
                f'{{"name":"account","type":"integer","value":{g % 1000}}},'
                f'{{"name":"amount","type":"numeric(12,2)","value":{(g % 100000) / 100:.2f}}},'
                f'{{"name":"note","type":"text","value":"row {g}"}},'
                '{"name":"at","type":"timestamp with time zone",'
                '"value":"2026-01-01 00:00:00.123456+00"}],'
                '"pk":[{"name":"id","type":"bigint"}]}'
            ).encode()
        )
    return out


def extract(records: list[bytes]) -> list[bytes]:
    """The extractor's per-row path: records -> message bodies."""
    capture = TableFilter()
    partitions = Partitions(cast(Any, None), lambda: None)
    partitions.layout = Layout(tables=frozenset({TableRef("public", "bulk")}))
    types = TypeResolver(lambda names: {n: n for n in names})
    asm = Assembler("s", PER_TXN, 64 << 20, None)
    bodies: list[bytes] = []
    for i, payload in enumerate(records):
        if i % PER_TXN == 0:
            asm.begin(Begin(xid=i, commit_lsn=i + 1, commit_time="t", commit_end=i + 2))
        record = decode_record(payload)
        assert isinstance(record, RowChange)
        change = keep_change(record.change, capture, partitions)
        assert change is not None
        types.resolve(change)
        out = asm.add(change, record.size)
        if out is not None:
            bodies.append(out.body)
        if i % PER_TXN == PER_TXN - 1:
            last = asm.commit(i + 2)
            if last is not None:
                bodies.append(last.body)
    return bodies


def apply(bodies: list[bytes], statements: Statements) -> int:
    """The applier's per-row path: bodies -> plans -> the bulk path's files. Bytes written."""
    written = 0
    for body in bodies:
        changes = [c for env in wire.decode_all(body) for c in env.changes]
        plan = build_plan(changes, statements, set())
        for group in plan.groups:
            data, _ = tsv_encode(group.rows, len(group.statement.names))
            written += len(data)
    return written


def timed(label: str, rows: int, fn: Callable[[], Any], profile: bool, runs: int = 3) -> Any:
    """The best of ``runs`` (the machine is shared: the least disturbed run is the nearest
    to the code's own cost)."""
    best = float("inf")
    out = None
    for _ in range(runs):
        started = time.process_time()
        out = fn()
        best = min(best, time.process_time() - started)
    print(f"{label}: {best / rows * 1e6:.2f} µs CPU per row (best of {runs})", flush=True)
    if profile:
        profiler = cProfile.Profile()
        profiler.runcall(fn)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(12)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cpu", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--profile", action="store_true", help="cProfile's top functions too")
    args = parser.parse_args(argv)
    records = wal2json_records(args.rows)
    tune_gc()  # as both processes run (shared/cli.py)
    statements = Statements(mariadbconnector.dialect())
    bodies = timed(
        "extractor (decode, filter, assemble, encode)",
        args.rows,
        lambda: extract(records),
        args.profile,
    )
    timed(
        "applier (decode, plan, LOAD DATA file)",
        args.rows,
        lambda: apply(bodies, statements),
        args.profile,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
