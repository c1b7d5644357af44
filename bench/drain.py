"""The drain: single-row transactions queued in the slot while the pipeline is stopped, then
drained by this pipeline and by the simplest one in the field (bench/naive.py), each timed
from its processes' start until MariaDB holds every row (issue 13, target (a)).

With both decoders the drain runs in each decoder's pipeline, and so does the naive one
(always wal2json, polling its own slot) though its work does not depend on our decoder: each
ratio is then of two rates measured back to back on the same transactions in the same state of
the machine. The two pipelines' drains are minutes apart (other parts run between them, on a
machine other work may share), and one naive figure for both would carry whatever changed in
between into the second ratio. That costs the naive drain once more (about 12 s of the full
run); the decoders' own rates compare directly ("this pipeline, transactions/s")."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from devstack.system import wait_until

if TYPE_CHECKING:
    from bench.parts import Bench


def drain(bench: Bench) -> tuple[float, float]:
    """Single-row transactions queued in the slot while nothing reads it, then drained:
    by this pipeline, and by the simplest one in the field (bench/naive.py) from a slot of
    its own holding the same transactions. Transactions/s of each."""
    n = bench.sizes.drain_transactions
    table = "drain"
    bench.p.sql(f"CREATE TABLE {table} (id bigint PRIMARY KEY, v integer NOT NULL)")
    naive_slot, naive_db = f"{bench.p.name}_naive", f"{bench.p.name}_naive"
    bench.p.sql(f"SELECT pg_create_logical_replication_slot('{naive_slot}', 'wal2json')")
    bench.stack.mariadb.sql(
        f"CREATE DATABASE `{naive_db}`;\n"
        f"CREATE TABLE `{naive_db}`.`{table}` (id BIGINT PRIMARY KEY, v INT NOT NULL);\n"
    )
    try:
        for name in ("applier", "extractor"):
            bench.procs[name].stop()  # the backlog builds up in the slot
        # One transaction per row, written fast: a loop that commits (outside a
        # transaction block: no "with", which would open one).
        conn = bench.pg()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    f"DO $$ BEGIN FOR i IN 1..{n} LOOP INSERT INTO {table} VALUES (i, i);"
                    " COMMIT; END LOOP; END $$"
                )
        finally:
            conn.close()
        with bench.watch() as mem:
            started = time.time()
            bench.start_pipeline()
            mem.watch(bench.procs)
            bench.wait_last_row(table, n, timeout=max(600, n / 100))
            ours = n / (time.time() - started)
        bench.record("drain", mem)
        naive = _naive_drain(bench, naive_slot, naive_db, table, n)
    finally:
        bench.p.sql(f"SELECT pg_drop_replication_slot('{naive_slot}')")
        bench.stack.mariadb.sql(f"DROP DATABASE IF EXISTS `{naive_db}`;\n")
    bench.figures.add("drain", "single-row transactions queued in the slot", f"{n:,}")
    bench.figures.add("drain", "this pipeline, transactions/s", f"{ours:,.0f}")
    # Where our drain's time goes: each process's CPU over it, start-up included (a third of
    # the extractor's, more of the applier's, at 20,000 transactions), per transaction.
    per_txn = {k: mem.cpu.get(k, 0.0) * mem.wall / n * 1e6 for k in ("extractor", "applier")}
    bench.figures.add(
        "drain",
        "CPU per transaction µs, start-up included (extractor + applier = total)",
        f"{per_txn['extractor']:.1f} + {per_txn['applier']:.1f} = {sum(per_txn.values()):.1f}",
    )
    bench.figures.add("drain", "naive pipeline (bench/naive.py), transactions/s", f"{naive:,.0f}")
    bench.figures.add("drain", "ratio (target 5, goal 8)", f"{ours / naive:.1f}")
    return ours, naive


def _naive_drain(bench: Bench, slot: str, database: str, table: str, n: int) -> float:
    pg, maria, rabbit = bench.stack.postgres, bench.stack.mariadb, bench.stack.rabbitmq
    queue = f"{slot}.naive"
    started = time.time()
    procs = [
        bench.p.start("bench.naive", "apply", rabbit.url(), queue, maria.url(database), table),
        bench.p.start(
            "bench.naive", "extract", pg.dsn(bench.p.source_db), slot, rabbit.url(), queue
        ),
    ]
    try:
        wait_until(
            lambda: bench.target_count(table, database) >= n,
            f"{n} rows through the naive pipeline",
            max(600, n / 50),
            0.1,
        )
        return n / (time.time() - started)
    finally:
        for proc in procs:
            proc.kill()
        with bench.p.channel() as ch:
            ch.queue_delete(queue)
