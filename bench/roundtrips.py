"""The applier draining a backlog with MariaDB direct, then behind a loopback proxy that adds
2 ms to each round trip (harness/proxy.py): how much a MariaDB on another host slows one
applier — the case parallel apply (``target.partitions``, issue 14) is for.

Each measurement: single-row transactions written while the applier is stopped, published by
the extractor (the slot confirmed past them), then the applier started and timed to the last
row. Today only ``target.partitions`` 1 exists; the N = 4 figure joins these once it is built.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from devstack.system import wait_until
from harness.proxy import Proxy

if TYPE_CHECKING:
    from bench.parts import Bench

TABLE = "roundtrips"
DELAY = 0.002


def roundtrips(bench: Bench) -> tuple[float, float]:
    """Transactions/s of the applier draining the same backlog, direct and with 2 ms."""
    n = bench.sizes.drain_transactions
    bench.p.sql(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, v integer NOT NULL)")
    direct = _drain(bench, 0, n, None)
    proxy = Proxy(bench.stack.mariadb.port, delay=DELAY)
    try:
        delayed = _drain(bench, n, n, proxy)
    finally:
        proxy.close()
    bench.procs["applier"] = bench.p.start("applier", CDC_METRICS_PORT=str(bench.metrics_port))
    add = bench.figures.add
    add("round trips", "single-row transactions queued, per measurement", f"{n:,}")
    add("round trips", "applier, MariaDB direct, transactions/s", f"{direct:,.0f}")
    add("round trips", "applier, MariaDB 2 ms away, transactions/s", f"{delayed:,.0f}")
    add("round trips", "2 ms away / direct", f"{delayed / direct:.2f}")
    return direct, delayed


def _drain(bench: Bench, first: int, n: int, proxy: Proxy | None) -> float:
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
    bench.procs["applier"] = bench.p.start("applier", **env)
    bench.wait_last_row(TABLE, first + n, timeout=max(600, n / 100))
    rate = n / (time.time() - started)
    bench.procs["applier"].stop()
    return rate
