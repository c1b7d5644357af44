"""The benchmark: end-to-end figures and each stage's own limit, measured in one run.

    python -m tests.bench                     (make bench: the full run, writes docs/performance.md)
    python -m tests.bench --tiny              (CI: every part, tiny sizes, no figures asserted)

Parts: bulk (rows in 1,000-row transactions, first source commit to last target commit);
initial snapshot copy; OLTP (pgbench's TPC-B-like workload); latency at a steady rate of
single-row transactions (source commit to target commit, from the applier's histogram);
the stage limits (wal2json decoding alone with pg_recvlogical, RabbitMQ publishing with
confirms alone, MariaDB batched upserts alone); peak resident memory of both processes.
Each part starts once the machine is quiet again after the part before (Bench.settle).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mariadb
import psycopg2

from devstack.postgres import BIN
from devstack.stack import Stack, default_dir
from devstack.system import free_port
from tests.support.measure import SERVERS, Watch, percentile, wait_for_quiet
from tests.support.pipeline import Pipeline, Proc, new_pipeline, wait_until

BULK_TABLE = """CREATE TABLE bulk (
    id bigint PRIMARY KEY, account integer NOT NULL, amount numeric(12,2) NOT NULL,
    note text, at timestamptz NOT NULL)"""
BULK_ROW = "g, mod(g, 1000), mod(g, 100000) / 100.0, 'row ' || g, now()"


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


TINY = Sizes(20_000, 20_000, 5, 1, 2, 100, 5, 20_000)


@dataclass
class Figures:
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # part, figure, value
    memory: dict[str, dict[str, float]] = field(default_factory=dict)  # part -> process -> MB
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)  # part -> group -> cores

    def add(self, part: str, figure: str, value: str) -> None:
        self.rows.append((part, figure, value))
        print(f"bench: {part}: {figure} = {value}", flush=True)


class Bench:
    def __init__(self, stack: Stack, pipeline: Pipeline, sizes: Sizes) -> None:
        self.stack = stack
        self.p = pipeline
        self.sizes = sizes
        self.figures = Figures()
        self.metrics_port = free_port()
        self.procs: dict[str, Proc] = {}

    # ------------------------------------------------------------ helpers

    def start_pipeline(self) -> None:
        self.procs["applier"] = self.p.start("applier", CDC_METRICS_PORT=str(self.metrics_port))
        self.procs["extractor"] = self.p.start("extractor")
        self.procs["extractor"].wait_for("streaming slot=")
        self.procs["applier"].wait_for("consuming queue=")

    def watch(self) -> Watch:
        return Watch(self.stack.root, self.procs, self.p.queue_depth)

    def record(self, part: str, watch: Watch) -> None:
        self.figures.memory[part] = watch.peak
        self.figures.cpu[part] = watch.cpu
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
        waited = wait_for_quiet(max_seconds=10 if self.sizes is TINY else 120)
        print(f"bench: settled {waited:.0f} s before {part}", flush=True)

    def target_count(self, table: str) -> int:
        maria = self.p.maria()
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
        before = self.delay_buckets()
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
        after = self.delay_buckets()
        delta = {le: after[le] - before.get(le, 0.0) for le in after}
        result = {q: percentile(delta, q) for q in (0.5, 0.95, 0.99)}
        self.figures.add("latency", "source transactions/s", f"{total / sz.latency_seconds:,.0f}")
        for q, v in result.items():
            self.figures.add(
                "latency", f"p{int(q * 100)} source commit to target commit", f"{v * 1000:.0f} ms"
            )
        self.record("latency", mem)
        return result

    def delay_buckets(self) -> dict[float, float]:
        text = (
            urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10)
            .read()
            .decode()
        )
        buckets = {}
        for m in re.finditer(
            r'^cdc_applier_replication_delay_seconds_bucket\{le="([^"]+)"\} ([0-9.e+]+)$',
            text,
            re.M,
        ):
            buckets[float(m.group(1))] = float(m.group(2))
        return buckets

    def stage_decoding(self) -> float:
        """wal2json alone: pg_recvlogical writing the decoded stream to /dev/null."""
        n = self.sizes.stage_rows
        slot = f"{self.p.name}_decode"
        conn = self.pg()
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE stage_decode (LIKE bulk)")
            cur.execute("SELECT pg_create_logical_replication_slot(%s, 'wal2json')", (slot,))
            for lo in range(1, n + 1, 1000):
                cur.execute(
                    f"INSERT INTO stage_decode SELECT {BULK_ROW} FROM generate_series(%s, %s) g",
                    (lo, min(lo + 999, n)),
                )
            cur.execute("SELECT pg_current_wal_lsn()::text")
            end = cur.fetchone()[0]
        conn.close()
        pg = self.stack.postgres
        argv = [
            str(BIN / "pg_recvlogical"), "-d", pg.dsn(self.p.source_db), "-S", slot, "--start",
            "-E", end, "-f", "/dev/null", "--no-loop",
            "-o", "format-version=2", "-o", "include-lsn=1", "-o", "include-pk=1",
            "-o", "include-types=1", "-o", "include-timestamp=1", "-o", "include-xids=1",
        ]  # fmt: skip
        started = time.monotonic()
        subprocess.run(argv, check=True, capture_output=True, timeout=1800)
        took = time.monotonic() - started
        conn = self.pg()
        with conn.cursor() as cur:
            cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            cur.execute("DROP TABLE stage_decode")
        conn.close()
        rate = n / took
        self.figures.add(
            "stage limits", "wal2json decoding alone (pg_recvlogical) rows/s", f"{rate:,.0f}"
        )
        return rate

    def stage_publishing(self, body: bytes, rows_per_message: int) -> float:
        """RabbitMQ alone: our publisher, persistent messages, confirms, into a scratch queue."""
        from tests.support.publish_bench import publish_with_confirms

        messages = max(self.sizes.stage_rows // rows_per_message, 50)
        took = publish_with_confirms(
            self.stack.rabbitmq.url(), f"{self.p.name}.stage", body, messages
        )
        rate = messages * rows_per_message / took
        self.figures.add(
            "stage limits", "RabbitMQ publishing with confirms alone rows/s", f"{rate:,.0f}"
        )
        return rate

    def stage_upserts(self) -> float:
        """MariaDB alone: 1,000-row executemany upserts, one commit each, into a fresh table."""
        n = self.sizes.stage_rows
        conn = self.p.maria()
        conn.autocommit = False  # one commit per 1,000-row batch, as the applier does
        cur = conn.cursor()
        cur.execute(
            "CREATE TABLE stage_upsert (id BIGINT PRIMARY KEY, account INT NOT NULL,"
            " amount DECIMAL(12,2) NOT NULL, note LONGTEXT, at DATETIME(6) NOT NULL)"
            " CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin"
        )
        sql = (
            "INSERT INTO stage_upsert (id, account, amount, note, at) VALUES (?, ?, ?, ?, ?)"
            " ON DUPLICATE KEY UPDATE account = VALUES(account), amount = VALUES(amount),"
            " note = VALUES(note), at = VALUES(at)"
        )
        started = time.monotonic()
        for lo in range(1, n + 1, 1000):
            rows = [
                (g, g % 1000, f"{(g % 100000) / 100:.2f}", f"row {g}", "2026-01-01 00:00:00.000000")
                for g in range(lo, min(lo + 999, n) + 1)
            ]
            cur.executemany(sql, rows)
            conn.commit()
        took = time.monotonic() - started
        cur.execute("DROP TABLE stage_upsert")
        conn.close()
        rate = n / took
        self.figures.add("stage limits", "MariaDB batched upserts alone rows/s", f"{rate:,.0f}")
        return rate


def sample_body(bench: Bench) -> bytes:
    """A message as the extractor builds it for 1,000 rows of the bulk table."""
    from shared import envelope

    changes = [
        {
            "op": "insert", "lsn": "0/1", "schema": "public", "table": "bulk",
            "columns": ["id", "account", "amount", "note", "at"],
            "types": ["bigint", "integer", "numeric(12,2)", "text", "timestamp with time zone"],
            "values": [g, g % 1000, f"{(g % 100000) / 100:.2f}", f"row {g}", "2026-01-01 00:00:00.123456+00"],
            "key": ["id"],
        }
        for g in range(1000)
    ]  # fmt: skip
    return envelope.encode(
        slot="s", xid=1, commit_lsn=1, commit_time="", copy=False, after=None,
        resumed=False, chunk=0, last=True, changes=changes,
    )  # fmt: skip


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.platform()}"


PARTS = ("copy", "bulk", "oltp", "latency", "stages")
NOTES_MARKER = "<!-- notes: kept by python -m tests.bench; write below -->"


def run(bench: Bench, parts: list[str]) -> dict[str, float]:
    figures: dict[str, float] = {}
    if "copy" in parts:
        bench.seed()
        bench.settle("snapshot copy")
        figures["copy"] = bench.snapshot_copy()
    else:
        bench.start_pipeline()
    if "bulk" in parts:
        bench.settle("bulk")
        figures["bulk"] = bench.bulk()
    if "oltp" in parts:
        bench.settle("OLTP")
        bench.oltp()
    if "latency" in parts:
        bench.settle("latency")
        figures["p99"] = bench.latency()[0.99]
    if "stages" in parts:
        bench.settle("stage limits")
        stages = {
            "wal2json decoding": bench.stage_decoding(),
            "MariaDB upserts": bench.stage_upserts(),
            "RabbitMQ publishing": bench.stage_publishing(sample_body(bench), 1000),
        }
        slowest = min(stages, key=lambda k: stages[k])
        figures["slowest"] = stages[slowest]
        bench.figures.add(
            "stage limits", "slowest stage", f"{slowest} ({stages[slowest]:,.0f} rows/s)"
        )
        for part in ("bulk", "copy"):
            if part in figures:
                ratio = figures[part] / stages[slowest]
                bench.figures.add("ratios", f"{part} / slowest stage", f"{ratio:.2f}")
    return figures


def markdown(bench: Bench, figures: dict[str, float], command: str) -> str:
    lines = [
        "# Performance",
        "",
        "Measured by `make bench` in one run on the local stack: the three servers, the",
        "extractor and the applier all on the same machine.",
        "",
        f"Machine: {machine()}.",
        f"Command: `{command}`.",
        "",
        "| part | figure | value |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {part} | {figure} | {value} |" for part, figure, value in bench.figures.rows]
    lines += ["", "Peak resident memory (MB) while each part ran:", ""]
    lines += ["| part | extractor | applier |", "| --- | --- | --- |"]
    for part, peak_mb in bench.figures.memory.items():
        lines.append(
            f"| {part} | {peak_mb.get('extractor', 0):.0f} | {peak_mb.get('applier', 0):.0f} |"
        )
    lines += ["", f"CPU while each part ran, in cores busy (the machine has {os.cpu_count()}):", ""]
    groups = ["extractor", "applier", *SERVERS, "benchmark"]
    lines += ["| part | " + " | ".join(groups) + " | total |", "|" + " --- |" * (len(groups) + 2)]
    for part, cores in bench.figures.cpu.items():
        cells = " | ".join(f"{cores.get(g, 0.0):.2f}" for g in groups)
        lines.append(f"| {part} | {cells} | {sum(cores.get(g, 0.0) for g in groups):.2f} |")
    lines += ["", "Targets (issue: bulk at least 0.6 of the slowest stage; p99 at most 250 ms at",
              "1,000 transactions/s; each process under 200 MB):", ""]  # fmt: skip
    if "bulk" in figures and "slowest" in figures:
        ratio = figures["bulk"] / figures["slowest"]
        lines.append(
            f"- bulk / slowest stage: {ratio:.2f} — {'met' if ratio >= 0.6 else 'NOT met'}"
        )
    if "p99" in figures:
        p99 = figures["p99"] * 1000
        lines.append(f"- latency p99: {p99:.0f} ms — {'met' if p99 <= 250 else 'NOT met'}")
    peaks = [v for m in bench.figures.memory.values() for v in m.values()]
    peak = max(peaks) if peaks else 0.0
    lines.append(f"- highest resident memory: {peak:.0f} MB — {'met' if peak < 200 else 'NOT met'}")
    if "copy" in figures and "bulk" in figures:
        ok = figures["copy"] >= figures["bulk"]
        lines.append(
            f"- snapshot copy {figures['copy']:,.0f} rows/s vs bulk streaming "
            f"{figures['bulk']:,.0f} rows/s — {'met' if ok else 'NOT met'}"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--tiny", action="store_true", help="every part, tiny sizes (CI)")
    parser.add_argument(
        "--parts", default=",".join(PARTS), help="comma-separated: " + ",".join(PARTS)
    )
    parser.add_argument("--bulk-rows", type=int)
    parser.add_argument("--report", type=Path, help="write the table here (markdown)")
    args = parser.parse_args(argv)
    sizes = TINY if args.tiny else Sizes()
    if args.bulk_rows:
        sizes.bulk_rows = args.bulk_rows
        sizes.stage_rows = min(sizes.stage_rows, args.bulk_rows)
    stack = Stack.load(default_dir() / ("bench-tiny" if args.tiny else "bench"))
    stack.start()
    logdir = stack.root / "logs"
    logdir.mkdir(exist_ok=True)
    pipeline = new_pipeline(stack, logdir)
    bench = Bench(stack, pipeline, sizes)
    try:
        figures = run(bench, args.parts.split(","))
    finally:
        pipeline.destroy()
        if args.tiny:
            stack.stop()
    command = "python -m tests.bench" + (" --tiny" if args.tiny else "")
    if args.parts != ",".join(PARTS):
        command += f" --parts {args.parts}"
    text = markdown(bench, figures, command)
    print(text)
    if args.report:
        notes = ""
        if args.report.exists():
            old = args.report.read_text()
            if NOTES_MARKER in old:
                notes = old[old.index(NOTES_MARKER) :]
        args.report.write_text(text + "\n" + (notes or NOTES_MARKER + "\n"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
