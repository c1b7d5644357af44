"""The end-to-end parts of the benchmark: the initial copy, bulk, OLTP and latency, each
measured from the source's first commit to the target's last, with what the machine spent on
it (bench/measure.py)."""

from __future__ import annotations

import os
import re
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

import mariadb
import psycopg2

from bench.measure import Watch, flush_innodb, histogram, percentile, wait_for_quiet
from bench.report import Figures
from devstack.postgres import BIN
from devstack.stack import Stack
from devstack.system import free_port, wait_until
from harness.pipeline import Pipeline, Proc

BULK_TABLE = """CREATE TABLE bulk (
    id bigint PRIMARY KEY, account integer NOT NULL, amount numeric(12,2) NOT NULL,
    note text, at timestamptz NOT NULL)"""
BULK_ROW = "g, mod(g, 1000), mod(g, 100000) / 100.0, 'row ' || g, now()"


# Where the latency goes, each from the source commit (the first two per message, for its first
# transaction; RabbitMQ's confirm per message from its publish).
_END_TO_END = "source commit to target commit"
_STAGES = {
    "source commit to published (PostgreSQL, extractor; per message)": (
        "extractor",
        "cdc_extractor_publish_delay_seconds",
    ),
    "publish to RabbitMQ's confirm (per message)": ("extractor", "cdc_extractor_confirm_seconds"),
    "source commit to delivered to the applier (per message)": (
        "applier",
        "cdc_applier_delivery_delay_seconds",
    ),
    _END_TO_END: ("applier", "cdc_applier_replication_delay_seconds"),
}


def _ms(quantiles: dict[float, float]) -> str:
    return " / ".join(f"{v:.0f}" for v in quantiles.values()) + " ms"


@dataclass
class Sizes:
    bulk_rows: int = 1_000_000
    copy_rows: int = 1_000_000
    oltp_seconds: int = 60
    oltp_scale: int = 10
    oltp_clients: int = 4
    latency_rate: int = 1000
    latency_seconds: int = 30
    stage_rows: int = 300_000
    drain_transactions: int = 20_000
    apply_bulk_rows: int | None = None  # the applier's target.bulk_rows (None: its default)


TINY = Sizes(20_000, 20_000, 5, 1, 2, 100, 5, 20_000, 2_000)


class Bench:
    def __init__(
        self, stack: Stack, pipeline: Pipeline, sizes: Sizes, figures: Figures | None = None
    ) -> None:
        self.stack = stack
        self.p = pipeline
        self.sizes = sizes
        # Shared by the pipelines of one run (one per decoder): one table.
        self.figures = figures or Figures()
        self.metrics_port = free_port()
        self.extractor_metrics_port = free_port()
        self.procs: dict[str, Proc] = {}
        self.cpu_per_row = 0.0  # µs, extractor + applier, in the bulk part

    # ------------------------------------------------------------ helpers

    def start_pipeline(self) -> None:
        env = {"CDC_METRICS_PORT": str(self.metrics_port)}
        if self.sizes.apply_bulk_rows is not None:
            env["CDC_TARGET_BULK_ROWS"] = str(self.sizes.apply_bulk_rows)
        self.procs["applier"] = self.p.start("applier", **env)
        self.procs["extractor"] = self.p.start(
            "extractor", CDC_METRICS_PORT=str(self.extractor_metrics_port)
        )
        self.procs["extractor"].wait_for("streaming slot=")
        self.procs["applier"].wait_for("consuming queue=")

    def watch(self) -> Watch:
        return Watch(self.stack.root, self.procs, self.p.queue_depth)

    def record(self, part: str, watch: Watch) -> None:
        self.figures.memory[part, self.figures.decoder] = watch.peak
        self.figures.cpu[part, self.figures.decoder] = watch.cpu
        if watch.backlog:
            mean = sum(watch.backlog) / len(watch.backlog)
            self.figures.add(
                part,
                "messages waiting in RabbitMQ (mean / max)",
                f"{mean:,.0f} / {max(watch.backlog):,}",
            )

    def pg(self) -> Any:
        return self.p.pg()

    def settle(self, part: str) -> None:
        """Each part starts on a quiet machine, not during the servers' clean-up of the part
        before (autovacuum of a million dead rows, InnoDB purge, a checkpoint)."""
        conn = self.pg()  # autocommit, and no "with": VACUUM refuses a transaction block
        try:
            with conn.cursor() as cur:
                cur.execute("VACUUM")
                cur.execute("CHECKPOINT")
        finally:
            conn.close()
        limit = 10 if self.sizes is TINY else 120
        waited = flush_innodb(self.stack.mariadb.sql, limit)
        waited += wait_for_quiet(max_seconds=limit)
        print(f"bench: settled {waited:.0f} s before {part}", flush=True)

    def target_count(self, table: str, database: str | None = None) -> int:
        maria = self.p.maria(database)
        try:
            cur = maria.cursor()
            cur.execute(f"SELECT COUNT(*) FROM `{table}`")
            return int(cur.fetchone()[0])
        except mariadb.Error:
            return 0
        finally:
            maria.close()

    def checkpoint_applied_at(self) -> float:
        """When the applier's last transaction committed (its checkpoint row, UTC)."""
        maria = self.p.maria()
        try:
            cur = maria.cursor()
            cur.execute("SELECT UNIX_TIMESTAMP(applied_at) FROM _cdc_checkpoint")
            return float(cur.fetchone()[0])
        finally:
            maria.close()

    def wait_rows(self, table: str, rows: int, timeout: float) -> None:
        wait_until(
            lambda: self.target_count(table) >= rows, f"{rows} rows in {table}", timeout, 0.25
        )

    def wait_last_row(self, table: str, last_id: int, timeout: float) -> None:
        """Polled by key: COUNT(*) over a million InnoDB rows, four times a second, would load
        MariaDB while it is being measured. The count is checked once, after."""

        def present() -> bool:
            maria = self.p.maria()
            try:
                cur = maria.cursor()
                cur.execute(f"SELECT 1 FROM `{table}` WHERE id = ?", (last_id,))
                return cur.fetchone() is not None
            except mariadb.Error:
                return False
            finally:
                maria.close()

        wait_until(present, f"row {last_id} in {table}", timeout, 0.1)

    # ------------------------------------------------------------ parts

    def bulk(self) -> float:
        n = self.sizes.bulk_rows
        self.p.sql(BULK_TABLE)
        with self.watch() as mem:
            started = time.time()
            with self.pg() as conn, conn.cursor() as cur:
                for lo in range(1, n + 1, 1000):
                    cur.execute(
                        f"INSERT INTO bulk SELECT {BULK_ROW} FROM generate_series(%s, %s) g",
                        (lo, min(lo + 999, n)),
                    )
                    conn.commit()
            source_done = time.time()
            self.wait_last_row("bulk", n, timeout=max(600, n / 500))
            self.wait_rows("bulk", n, timeout=60)
            finished = self.checkpoint_applied_at()
        rate = n / (finished - started)
        self.figures.add("bulk", "rows", f"{n:,}")
        self.figures.add("bulk", "source commits took", f"{source_done - started:.1f} s")
        self.figures.add("bulk", "end-to-end rows/s", f"{rate:,.0f}")
        self.record("bulk", mem)
        # The issue's target (d): our two processes' CPU per row, from what /proc says they
        # used over the part (start-up and idle polling included, so an upper bound).
        per_row = {k: mem.cpu.get(k, 0.0) * mem.wall / n * 1e6 for k in ("extractor", "applier")}
        self.figures.add(
            "bulk",
            "CPU per row µs (extractor + applier = total)",
            f"{per_row['extractor']:.1f} + {per_row['applier']:.1f} = {sum(per_row.values()):.1f}",
        )
        self.cpu_per_row = sum(per_row.values())
        return rate

    def seed(self) -> None:
        """A table that holds rows before the pipeline ever runs: the initial copy's work."""
        n = self.sizes.copy_rows
        self.p.sql(BULK_TABLE.replace("bulk", "seed"))
        with self.pg() as conn, conn.cursor() as cur:
            for lo in range(1, n + 1, 100_000):
                cur.execute(
                    f"INSERT INTO seed SELECT {BULK_ROW} FROM generate_series(%s, %s) g",
                    (lo, min(lo + 99_999, n)),
                )
                conn.commit()

    def snapshot_copy(self) -> float:
        """The initial copy, from starting the processes to the last copied row committed."""
        n = self.sizes.copy_rows
        with self.watch() as mem:
            started = time.time()
            self.start_pipeline()
            mem.watch(self.procs)
            self.wait_last_row("seed", n, timeout=max(600, n / 500))
            self.wait_rows("seed", n, timeout=60)
            finished = self.checkpoint_applied_at()
        rate = n / (finished - started)
        self.figures.add("snapshot copy", "rows", f"{n:,}")
        self.figures.add(
            "snapshot copy", "rows/s (process start to last row committed)", f"{rate:,.0f}"
        )
        self.record("snapshot copy", mem)
        return rate

    def oltp(self) -> None:
        """pgbench's TPC-B-like transactions: 3 updates and 1 insert each."""
        sz = self.sizes
        dsn = self.stack.postgres.dsn(self.p.source_db)
        env = {**os.environ, "PGOPTIONS": "-c synchronous_commit=on"}
        subprocess.run(
            [str(BIN / "pgbench"), "-i", "-q", "-s", str(sz.oltp_scale), "--foreign-keys", dsn],
            check=True, capture_output=True, env=env, timeout=1800,
        )  # fmt: skip
        self.wait_rows("pgbench_accounts", 100_000 * sz.oltp_scale, timeout=1800)
        with self.watch() as mem:
            out = subprocess.run(
                [
                    str(BIN / "pgbench"), "-n", "-T", str(sz.oltp_seconds), "-c", str(sz.oltp_clients),
                    "-j", "2", dsn,
                ],
                check=True, capture_output=True, text=True, env=env, timeout=sz.oltp_seconds + 600,
            )  # fmt: skip
            ended = time.time()
            with self.pg() as conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM pgbench_history")
                history = int(cur.fetchone()[0])
            self.wait_rows("pgbench_history", history, timeout=1800)
            caught_up = self.checkpoint_applied_at()
        tps = float(re.search(r"tps = ([0-9.]+)", out.stdout).group(1))  # type: ignore[union-attr]
        changes = history * 4
        lag = max(0.0, caught_up - ended)
        self.figures.add("OLTP", "pgbench transactions/s on the source", f"{tps:,.0f}")
        self.figures.add(
            "OLTP", "changes/s replicated", f"{changes / (sz.oltp_seconds + lag):,.0f}"
        )
        self.figures.add("OLTP", "target behind the source at the end", f"{lag:.2f} s")
        self.record("OLTP", mem)

    def latency(self) -> dict[float, float]:
        """A steady rate of single-row transactions; source commit to target commit."""
        sz = self.sizes
        self.p.sql(
            "CREATE TABLE lat (id bigserial PRIMARY KEY, v integer NOT NULL, at timestamptz NOT NULL DEFAULT now())"
        )
        before = self.latency_stages()
        threads = 4
        per_thread = sz.latency_rate / threads
        stop_at = time.monotonic() + sz.latency_seconds

        def writer() -> None:
            conn = psycopg2.connect(self.stack.postgres.dsn(self.p.source_db))
            conn.autocommit = True
            cur = conn.cursor()
            n, started = 0, time.monotonic()
            while time.monotonic() < stop_at:
                cur.execute("INSERT INTO lat (v) VALUES (%s)", (n,))
                n += 1
                ahead = started + n / per_thread - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)
            conn.close()

        with self.watch() as mem:
            workers = [threading.Thread(target=writer) for _ in range(threads)]
            for w in workers:
                w.start()
            for w in workers:
                w.join()
            with self.pg() as conn, conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM lat")
                total = int(cur.fetchone()[0])
            self.wait_rows("lat", total, timeout=600)
            time.sleep(1)
        after = self.latency_stages()
        self.figures.add("latency", "source transactions/s", f"{total / sz.latency_seconds:,.0f}")
        result: dict[float, float] = {}
        for stage, buckets in after.items():
            was = before[stage]
            delta = {le: n - was.get(le, 0.0) for le, n in buckets.items()}
            ms = {q: percentile(delta, q) * 1000 for q in (0.5, 0.95, 0.99)}
            if stage == _END_TO_END:
                result = {q: v / 1000 for q, v in ms.items()}
                for q, v in ms.items():
                    figure = f"p{int(q * 100)} source commit to target commit"
                    self.figures.add("latency", figure, f"{v:.0f} ms")
            else:
                self.figures.add("latency", f"p50 / p95 / p99 {stage}", _ms(ms))
        self.record("latency", mem)
        return result

    def latency_stages(self) -> dict[str, dict[float, float]]:
        """Where the latency goes: the histograms of each stage, from the source commit."""
        ports = {"extractor": self.extractor_metrics_port, "applier": self.metrics_port}
        return {stage: histogram(ports[proc], name) for stage, (proc, name) in _STAGES.items()}
