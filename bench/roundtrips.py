"""The applier draining a backlog with MariaDB direct, then behind a loopback proxy that adds
2 ms to each round trip (harness/proxy.py): how much a MariaDB on another host slows one
applier — the case parallel apply (``target.partitions``, issue 14) is for.

Each measurement: single-row transactions written while the applier is stopped, published by
the extractor (the slot confirmed past them), then the applier started and timed to the last
row. First with ``target.partitions`` 1 (direct, then 2 ms away), then with 4 (the extractor
restarted with it, and what it publishes at its start, a copy of the table, applied before the
clock starts; one applier process consuming the four partitions; 2 ms away, then direct;
then two applier processes sharing them, 2 ms away), then back to 1. With each figure: the applier's CPU seconds and how many of the machine's
cores were busy meanwhile, since on a small machine the CPU, not the round trips, is what
four partitions run into.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bench.measure import cpu_seconds, machine_busy
from devstack.system import free_port, wait_until
from harness.proxy import Proxy

if TYPE_CHECKING:
    from bench.parts import Bench

TABLE = "roundtrips"
DELAY = 0.002


PARTITIONS = 4
SHARED_BY_TWO = ("0,1", "2,3")  # target.partition_set of each applier process


@dataclass
class Drain:
    rate: float  # transactions/s
    applier_cpu: float  # seconds
    busy_cores: float  # of the whole machine, on average


def roundtrips(bench: Bench) -> tuple[float, float]:
    """Transactions/s of the applier draining the same backlog, direct and with 2 ms (N = 1);
    N = 4 beside them in the figures."""
    n = bench.sizes.drain_transactions
    bench.p.sql(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, v integer NOT NULL)")
    direct = _drain(bench, 0, n, None)
    proxy = Proxy(bench.stack.mariadb.port, delay=DELAY)
    try:
        delayed = _drain(bench, n, n, proxy)
        _partitions(bench, PARTITIONS)
        parallel = _drain(bench, 2 * n, n, proxy)
        parallel_direct = _drain(bench, 3 * n, n, None)
        # The same four partitions shared by two applier processes: a core each, where one
        # process's threads share one interpreter lock.
        two = _drain(bench, 4 * n, n, proxy, SHARED_BY_TWO)
    finally:
        proxy.close()
        _partitions(bench, 1)
    bench.procs["applier"] = bench.p.start("applier", CDC_METRICS_PORT=str(bench.metrics_port))
    add = bench.figures.add
    add("round trips", "single-row transactions queued, per measurement", f"{n:,}")
    for name, d in (
        ("N = 1, MariaDB direct", direct),
        ("N = 1, MariaDB 2 ms away", delayed),
        (f"N = {PARTITIONS}, MariaDB 2 ms away", parallel),
        (f"N = {PARTITIONS}, MariaDB direct", parallel_direct),
        (f"N = {PARTITIONS} in two processes, MariaDB 2 ms away", two),
    ):
        add(
            "round trips",
            f"applier, {name}: transactions/s (applier CPU s, busy cores)",
            f"{d.rate:,.0f} ({d.applier_cpu:.1f} s, {d.busy_cores:.2f})",
        )
    add("round trips", "2 ms away / direct (N = 1)", f"{delayed.rate / direct.rate:.2f}")
    add(
        "round trips",
        f"N = {PARTITIONS} / N = 1, 2 ms away",
        f"{parallel.rate / delayed.rate:.2f} (on {os.cpu_count()} cores)",
    )
    add(
        "round trips",
        f"N = {PARTITIONS} in two processes / N = 1, 2 ms away",
        f"{two.rate / delayed.rate:.2f}",
    )
    add(
        "round trips",
        f"N = {PARTITIONS} / N = 1, direct",
        f"{parallel_direct.rate / direct.rate:.2f}",
    )
    return direct.rate, delayed.rate


def _partitions(bench: Bench, partitions: int) -> None:
    """The extractor restarted with ``target.partitions``; the appliers started from now on
    get it too. The layout may change only on empty queues: what the extractor published
    after the last drain (its heartbeats) is applied first; and what it publishes at its
    start with the new layout (it copies the table again) too, before anything is timed."""
    bench.procs["extractor"].stop()
    _empty_queues(bench)
    if partitions == 1:
        bench.p.settings.pop("CDC_TARGET_PARTITIONS", None)
    else:
        bench.p.settings["CDC_TARGET_PARTITIONS"] = str(partitions)
    bench.procs["extractor"] = extractor = bench.p.start("extractor")
    extractor.wait_for("streaming slot=")
    if "copy_started" in extractor.output():
        extractor.wait_for("copy_done")
    _empty_queues(bench)


def _empty_queues(bench: Bench) -> None:
    """An applier run until the queues are empty (a graceful stop: what it took is applied
    and acked first), again if a message came back."""
    for _ in range(3):
        if not any(bench.p.queue_depth(q) for q in bench.p.topology.queues):
            return
        applier = bench.p.start("applier", CDC_METRICS_PORT=str(bench.metrics_port))
        wait_until(
            lambda: not any(bench.p.queue_depth(q) for q in bench.p.topology.queues),
            "the queues drained",
            300,
            0.2,
        )
        applier.stop()


def _drain(
    bench: Bench, first: int, n: int, proxy: Proxy | None, sets: tuple[str, ...] = ()
) -> Drain:
    """``sets``: the partitions of each applier process, when more than one runs."""
    bench.procs["applier"].stop()
    conn = bench.pg()  # autocommit, no "with": the loop commits each row itself
    try:
        with conn.cursor() as cur:
            cur.execute(
                f"DO $$ BEGIN FOR i IN {first + 1}..{first + n} LOOP "
                f"INSERT INTO {TABLE} VALUES (i, i); COMMIT; END LOOP; END $$"
            )
            cur.execute("SELECT pg_current_wal_lsn()")
            written = cur.fetchone()[0]

            def published() -> bool:
                cur.execute(
                    "SELECT confirmed_flush_lsn >= %s FROM pg_replication_slots "
                    "WHERE slot_name = %s",
                    (written, bench.p.name),
                )
                row = cur.fetchone()
                return bool(row and row[0])

            wait_until(published, "the backlog published", max(120, n / 200), 0.2)
    finally:
        conn.close()
    env = {"CDC_METRICS_PORT": str(bench.metrics_port)}
    if proxy is not None:
        port = bench.stack.mariadb.port
        env["CDC_TARGET_URL"] = bench.p.env["CDC_TARGET_URL"].replace(
            f":{port}/", f":{proxy.port}/"
        )
    started = time.time()
    total0, idle0 = machine_busy()
    others = {
        f"applier {i + 2}": bench.p.start(
            "applier",
            **{**env, "CDC_TARGET_PARTITION_SET": one, "CDC_METRICS_PORT": str(free_port())},
        )
        for i, one in enumerate(sets[1:])
    }
    if sets:
        env["CDC_TARGET_PARTITION_SET"] = sets[0]
    bench.procs["applier"] = bench.p.start("applier", **env)
    bench.wait_last_row(TABLE, first + n, timeout=max(600, n / 100))
    # With partitions the last row may land before the others' last rows: all of them.
    bench.wait_rows(TABLE, first + n, timeout=max(600, n / 100))
    rate = n / (time.time() - started)
    total1, idle1 = machine_busy()
    appliers = {"applier": bench.procs["applier"], **others}
    used = cpu_seconds(bench.stack.root, appliers)
    cpu = sum(used[name] for name in appliers)
    for proc in appliers.values():
        proc.stop()
    busy = (1 - (idle1 - idle0) / max(total1 - total0, 1)) * (os.cpu_count() or 1)
    return Drain(rate, cpu, busy)
