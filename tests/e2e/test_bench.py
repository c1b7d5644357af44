"""The benchmark still runs (tiny sizes), with both decoders; no timing is asserted, the
figures are printed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.pipeline import ROOT


@pytest.mark.slow
def test_bench_runs_every_part() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--tiny"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for figure in (
        "end-to-end rows/s",
        "rows/s (process start to last row committed)",
        "changes/s replicated",
        "p99 source commit to target commit",
        "p50 / p95 / p99 source commit to published",
        "p50 / p95 / p99 publish to RabbitMQ's confirm",
        "p50 / p95 / p99 source commit to delivered to the applier",
        "decoding alone (pg_recvlogical)",
        "RabbitMQ publishing with confirms alone",
        "MariaDB batched upserts alone",
        "bulk / slowest stage",
        "bulk / MariaDB batched upserts alone",
        "1,000-row batches by LOAD DATA (bulk path)",
        "1,000-row batches by multi-row statement",
        "CPU per row µs (extractor + applier = total)",
        "2 ms away / direct",
        "N = 4 / N = 1, 2 ms away",
        "N = 4 in two processes / N = 1, 2 ms away",
    ):
        assert figure in proc.stdout, figure
    # The second decoder's pipeline (bench/__main__.py TINY_AGAIN), a column each.
    for figure in (
        "bulk [pgoutput]: end-to-end rows/s",
        "drain [pgoutput]: ratio",
        "stage limits [pgoutput]: decoding alone (pg_recvlogical)",
        "| part | figure | wal2json | pgoutput |",
        "- drain of queued single-row transactions, this pipeline / naive: wal2json ",
    ):
        assert figure in proc.stdout, figure
