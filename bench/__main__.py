"""The benchmark: end-to-end figures and each stage's own limit, measured in one run.

    python -m bench                     (make bench: the full run, writes docs/performance.md)
    python -m bench --tiny              (CI: every part, tiny sizes, no figures asserted)

Parts: bulk (rows in 1,000-row transactions, first source commit to last target commit);
initial snapshot copy; OLTP (pgbench's TPC-B-like workload); latency at a steady rate of
single-row transactions (source commit to target commit, from the applier's histogram);
a drain of single-row transactions queued in the slot, against the simplest pipeline in the
field (bench/naive.py) on the same transactions; the applier draining a backlog with MariaDB
direct and 2 ms away (bench/roundtrips.py);
the stage limits (wal2json decoding alone with pg_recvlogical, RabbitMQ publishing with
confirms alone, MariaDB batched upserts alone); wal2json and pgoutput side by side on the same
WAL (bench/decoders.py); peak resident memory of both processes.
Each part starts once the machine is quiet again after the part before (Bench.settle).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import decoders, report, stages
from bench.drain import drain
from bench.parts import TINY, Bench, Sizes
from bench.roundtrips import roundtrips
from devstack.stack import Stack, default_dir
from harness.pipeline import ROOT, new_pipeline

PARTS = ("copy", "bulk", "oltp", "latency", "drain", "roundtrips", "stages", "decoders")


def run(bench: Bench, parts: list[str]) -> dict[str, float]:
    """The chosen parts, in order; the rates the targets are judged on."""
    results: dict[str, float] = {}
    if "copy" in parts:
        bench.seed()
        bench.settle("snapshot copy")
        results["copy"] = bench.snapshot_copy()
    else:
        bench.start_pipeline()
    if "bulk" in parts:
        bench.settle("bulk")
        results["bulk"] = bench.bulk()
        results["cpu_per_row"] = bench.cpu_per_row
    if "oltp" in parts:
        bench.settle("OLTP")
        bench.oltp()
    if "latency" in parts:
        bench.settle("latency")
        results["p99"] = bench.latency()[0.99]
    if "drain" in parts:
        bench.settle("drain")
        ours, naive = drain(bench)
        results["drain_ratio"] = ours / naive
    if "roundtrips" in parts:
        bench.settle("round trips")
        direct, delayed = roundtrips(bench)
        results["roundtrips_ratio"] = delayed / direct
    if "stages" in parts:
        bench.settle("stage limits")
        results["slowest"] = stage_limits(bench, results)
    if "decoders" in parts:
        bench.settle("decoders")
        decoders.compare(bench.p, bench.sizes.stage_rows, bench.figures.add)
    return results


def stage_limits(bench: Bench, results: dict[str, float]) -> float:
    """Each stage alone, and the end-to-end rates so far as a share of the slowest; returns
    the slowest stage's rows/s."""
    rows, add = bench.sizes.stage_rows, bench.figures.add
    limits: dict[str, float] = {}
    limits["wal2json decoding"] = stages.decoding_alone(bench.p, rows)
    add(
        "stage limits",
        "wal2json decoding alone (pg_recvlogical) rows/s",
        f"{limits['wal2json decoding']:,.0f}",
    )
    paths = stages.apply_paths(bench.p, rows)
    limits["MariaDB upserts"] = paths["executemany"]
    add("stage limits", "MariaDB batched upserts alone rows/s", f"{limits['MariaDB upserts']:,.0f}")
    for path, rate in paths.items():
        add("stage limits", f"MariaDB alone, 1,000-row batches by {path} rows/s", f"{rate:,.0f}")
    loaded = paths["LOAD DATA (bulk path)"]
    add("stage limits", "LOAD DATA / executemany", f"{loaded / paths['executemany']:.2f}")
    limits["RabbitMQ publishing"] = stages.publishing_alone(bench.p, rows)
    add(
        "stage limits",
        "RabbitMQ publishing with confirms alone rows/s",
        f"{limits['RabbitMQ publishing']:,.0f}",
    )
    slowest = min(limits, key=lambda k: limits[k])
    add("stage limits", "slowest stage", f"{slowest} ({limits[slowest]:,.0f} rows/s)")
    for part in ("bulk", "copy"):
        if part in results:
            ratio = results[part] / limits[slowest]
            add("ratios", f"{part} / slowest stage", f"{ratio:.2f}")
    if "bulk" in results:
        # The target (b): against MariaDB's batched upserts alone, the executemany
        # figure; and against the faster path the applier itself now takes.
        results["bulk_vs_mariadb"] = results["bulk"] / limits["MariaDB upserts"]
        add("ratios", "bulk / MariaDB batched upserts alone", f"{results['bulk_vs_mariadb']:.2f}")
        add("ratios", "bulk / MariaDB LOAD DATA alone", f"{results['bulk'] / loaded:.2f}")
    return limits[slowest]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="every part, tiny sizes (CI)")
    parser.add_argument(
        "--parts", default=",".join(PARTS), help="comma-separated: " + ",".join(PARTS)
    )
    parser.add_argument("--bulk-rows", type=int)
    parser.add_argument(
        "--apply-bulk-rows",
        type=int,
        help="the applier's target.bulk_rows (0: executemany only, to compare the bulk path)",
    )
    parser.add_argument("--report", type=Path, help="write the table here (markdown)")
    parser.add_argument(
        "--decoder",
        default="wal2json",
        choices=("wal2json", "pgoutput"),
        help="source.decoder of the pipeline measured end to end",
    )
    parser.add_argument("--stack", type=Path, help="the servers' devstack folder")
    args = parser.parse_args(argv)
    sizes = TINY if args.tiny else Sizes()
    if args.bulk_rows:
        sizes.bulk_rows = args.bulk_rows
        sizes.stage_rows = min(sizes.stage_rows, args.bulk_rows)
    sizes.apply_bulk_rows = args.apply_bulk_rows
    stack = Stack.load(args.stack or default_dir() / ("bench-tiny" if args.tiny else "bench"))
    stack.start()
    logdir = stack.root / "logs"
    logdir.mkdir(exist_ok=True)
    pipeline = new_pipeline(stack, logdir, args.decoder)
    # The source as README advises running it: with the DDL capture, a table created while
    # the pipeline runs is known from its creation, not copied again at the next start (the
    # bulk part's million rows would be, inside the drain's timing).
    stack.postgres.psql((ROOT / "sql" / "ddl-capture.sql").read_text(), pipeline.source_db)
    bench = Bench(stack, pipeline, sizes)
    try:
        results = run(bench, args.parts.split(","))
    finally:
        pipeline.destroy()
        if args.tiny:
            stack.stop()
    command = "python -m bench" + (" --tiny" if args.tiny else "")
    if args.decoder != "wal2json":
        command += f" --decoder {args.decoder}"
    if args.parts != ",".join(PARTS):
        command += f" --parts {args.parts}"
    if args.bulk_rows:
        command += f" --bulk-rows {args.bulk_rows}"
    if args.apply_bulk_rows is not None:
        command += f" --apply-bulk-rows {args.apply_bulk_rows}"
    text = report.markdown(bench.figures, results, command)
    print(text)
    if args.report:
        report.write(args.report, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
