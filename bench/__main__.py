"""The benchmark: end-to-end figures and each stage's own limit, measured in one run, with
both decoders (source.decoder: wal2json, then pgoutput) side by side.

    python -m bench                     (make bench: the full run, writes docs/performance.md)
    python -m bench --tiny              (CI: every part, tiny sizes, no figures asserted;
                                         the second decoder: bulk, drain, decoding alone)
    python -m bench --decoder pgoutput  (one decoder only: one column)

Parts: bulk (rows in 1,000-row transactions, first source commit to last target commit);
initial snapshot copy; OLTP (pgbench's TPC-B-like workload); latency at a steady rate of
single-row transactions (source commit to target commit, from the applier's histogram);
a drain of single-row transactions queued in the slot, against the simplest pipeline in the
field (bench/naive.py) on the same transactions; the applier draining a backlog with MariaDB
direct and 2 ms away (bench/roundtrips.py);
the stage limits (the decoder's plugin decoding alone with pg_recvlogical, RabbitMQ publishing
with confirms alone, MariaDB batched upserts alone); wal2json and pgoutput side by side on the
same WAL (bench/decoders.py); peak resident memory and CPU of both processes.
The parts whose figures depend on the decoder (bulk, OLTP, latency, drain, decoding alone) run
once per decoder, each with its own pipeline (slot, databases, queue), the second after the
first's processes are stopped and its pipeline dropped; the table has a column per decoder,
and a figure that does not depend on it (the copy, the round trips, the servers alone) one
value (bench/run.py). The targets are judged for each decoder.
Each part starts once the machine is quiet again after the part before (Bench.settle).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import report
from bench.parts import TINY, Sizes
from bench.run import DECODERS, PARTS, PER_DECODER, run
from devstack.stack import Stack, default_dir

# What the tiny run (CI) measures with the second decoder: its pipeline end to end, the
# decoding alone of its plugin, the report's columns and targets with two decoders. OLTP and
# latency run with the first only: their code does not depend on the decoder. Measured on 2
# shared cores, a tiny run took 75 - 79 s with one decoder, 96 - 103 s with these parts of the
# second (about 20 s more); with OLTP and latency too the second pipeline took about 45 s.
# () would run the first only.
TINY_AGAIN = ("bulk", "drain", "stages")


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
        choices=DECODERS,
        help="only this source.decoder end to end (default: each of them, a column each)",
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
    names = [args.decoder] if args.decoder else list(DECODERS)
    try:
        parts = args.parts.split(",")
        again = TINY_AGAIN if args.tiny else PER_DECODER
        figures, results, ran = run(stack, stack.root / "logs", sizes, names, parts, again)
    finally:
        if args.tiny:
            stack.stop()
    command = "python -m bench" + (" --tiny" if args.tiny else "")
    if args.decoder:
        command += f" --decoder {args.decoder}"
    if args.parts != ",".join(PARTS):
        command += f" --parts {args.parts}"
    if args.bulk_rows:
        command += f" --bulk-rows {args.bulk_rows}"
    if args.apply_bulk_rows is not None:
        command += f" --apply-bulk-rows {args.apply_bulk_rows}"
    text = report.markdown(figures, results, command, ran)
    print(text)
    if args.report:
        report.write(args.report, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
