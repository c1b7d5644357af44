"""Graceful stops, standbys, order under redelivery, gaps, heartbeats, large transactions."""

from __future__ import annotations

import random
import subprocess
import sys
import time
from typing import Any

import psycopg2
import pytest

from devstack.system import wait_until
from harness.pipeline import Pipeline, Proc
from harness.workload import TABLES
from shared import wire


def slot_state(pipeline: Pipeline) -> tuple[bool, str]:
    with pipeline.pg() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT active, confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
            (pipeline.name,),
        )
        active, flush = cur.fetchone()
    return bool(active), str(flush)


def test_sigterm_stops_both_cleanly_and_a_restart_resumes(pipeline: Pipeline) -> None:
    w = pipeline.workload(11)
    extractor, applier = pipeline.start_pipeline()
    w.start(2000, rate=300)
    wait_until(lambda: w.transactions >= 300, "writes")
    assert extractor.stop() == 0
    assert applier.stop() == 0
    assert "stopped confirmed_lsn=" in extractor.output()
    assert "Traceback" not in extractor.output() + applier.output()
    active, _ = slot_state(pipeline)
    assert not active  # released, not dropped
    w.join()
    pipeline.start_pipeline()
    pipeline.wait_converged(TABLES)


def test_sigterm_confirms_what_was_published(pipeline: Pipeline) -> None:
    w = pipeline.workload(12)
    # Chunks of one change: a message per change, never several transactions in one, so the
    # queue's depth says how much is published.
    one = {"CDC_SOURCE_HEARTBEAT_INTERVAL": "0", "CDC_SOURCE_MAX_CHUNK_CHANGES": "1"}
    extractor = pipeline.start("extractor", **one)
    extractor.wait_for("streaming slot=")
    w.run(200)
    wait_until(lambda: pipeline.queue_depth() >= 200, "messages in the queue")
    assert extractor.stop() == 0
    # Everything published was confirmed and fed back: a new session resends nothing.
    depth = pipeline.queue_depth()
    extractor = pipeline.start("extractor", **one)
    extractor.wait_for("streaming slot=")
    time.sleep(1.5)  # long enough for a resend to show up in the queue, were there one
    assert pipeline.queue_depth() == depth
    extractor.stop()


def test_standby_applier_takes_over(pipeline: Pipeline) -> None:
    w = pipeline.workload(13)
    extractor = pipeline.start("extractor")
    active = pipeline.start("applier", CDC_LOG_LEVEL="DEBUG")
    extractor.wait_for("streaming slot=")
    w.run(100)
    pipeline.wait_converged(TABLES)
    # The standby starts later: the checkpoint it reads now is stale by the time it takes over.
    standby = pipeline.start("applier", CDC_LOG_LEVEL="DEBUG")
    standby.wait_for("consuming queue=")
    w.run(100)
    pipeline.wait_converged(TABLES)
    assert "batch_applied" not in standby.output()  # single active consumer
    active.kill()
    killed_at = time.monotonic()
    w.run(100)
    pipeline.wait_converged(TABLES)
    took = time.monotonic() - killed_at
    assert "batch_applied" in standby.output()
    assert "ordering_gap" not in standby.output()
    assert took < 15, f"the standby took {took:.1f}s to take over"


def test_standby_extractor_takes_over(pipeline: Pipeline) -> None:
    w = pipeline.workload(14)
    first, _ = pipeline.start_pipeline()
    second = pipeline.start("extractor")
    second.wait_for("is in use by another process")
    assert "streaming slot=" not in second.output()
    w.run(50)
    pipeline.wait_converged(TABLES)
    first.kill()
    killed_at = time.monotonic()
    second.wait_for("streaming slot=", timeout=30)
    took = time.monotonic() - killed_at
    w.run(50)
    pipeline.wait_converged(TABLES)
    assert took < 15, f"the standby took {took:.1f}s to take over"


def captured_messages(pipeline: Pipeline, transactions: int, seed: int) -> list[tuple[Any, bytes]]:
    w = pipeline.workload(seed)
    extractor = pipeline.start("extractor", CDC_SOURCE_MAX_CHUNK_CHANGES="3")
    extractor.wait_for("streaming slot=")
    w.run(transactions)
    # Taken off the queue as they come (small transactions may share a message), until every
    # transaction of the workload is there.
    messages: list[tuple[Any, bytes]] = []

    def all_there() -> bool:
        messages.extend(pipeline.drain())
        ends = sum(1 for _, b in messages for e in wire.decode_all(b) if e.last)
        return ends >= transactions

    wait_until(all_there, "every transaction in the queue")
    assert extractor.stop() == 0
    messages.extend(pipeline.drain())
    envs = [e for _, b in messages for e in wire.decode_all(b)]
    assert any(e.chunk > 0 for e in envs)  # some split transactions
    return messages


def test_out_of_order_redelivery_is_applied_in_source_order(pipeline: Pipeline) -> None:
    messages = captured_messages(pipeline, 150, seed=15)
    scrambled = list(messages)
    random.Random(15).shuffle(scrambled)
    # Some twice, as after a crash, and in any order.
    pipeline.republish(scrambled + random.Random(16).sample(messages, 40))
    applier = pipeline.start("applier", CDC_BROKER_PREFETCH=str(len(messages) + 50))
    pipeline.wait_converged(TABLES)
    wait_until(lambda: pipeline.queue_depth() == 0, "everything consumed")
    assert "ordering_gap" not in applier.output()


def test_a_predecessor_behind_the_prefetch_window_is_reached(pipeline: Pipeline) -> None:
    # The first message sits behind more than a prefetch window of its successors: every
    # message the applier may hold waits for it. The applier must widen its window (which
    # RabbitMQ applies only to a consumer that starts anew) until it reaches it.
    messages = captured_messages(pipeline, 40, seed=19)
    pipeline.republish(messages[:10])
    applier = pipeline.start("applier", CDC_BROKER_PREFETCH="8")
    tenth = wire.decode_all(messages[9][1])[-1].end
    wait_until(lambda: pipeline.checkpoint() == tenth, "the first ten messages applied")
    # The eleventh behind nineteen of its successors: more than twice the window of 8.
    pipeline.republish(messages[11:30] + messages[10:11] + messages[30:])
    pipeline.wait_converged(TABLES)
    wait_until(lambda: pipeline.queue_depth() == 0, "everything consumed")
    assert "prefetch_widened" in applier.output()
    assert applier.alive()


def test_a_missing_message_is_reported_not_passed_over(pipeline: Pipeline) -> None:
    messages = captured_messages(pipeline, 60, seed=17)
    missing = messages[30]
    pipeline.republish(messages[:30] + messages[31:])
    applier = pipeline.start("applier", CDC_LOG_LEVEL="DEBUG")
    applier.wait_for("ordering_gap", timeout=60)
    assert "ordering_gap" in applier.output()
    # Nothing after the gap was applied: the target is still at the state before it.
    assert pipeline.checkpoint() == wire.decode_all(messages[29][1])[-1].end
    pipeline.republish([missing])
    pipeline.wait_converged(TABLES)
    assert applier.alive()


def retained_wal(pipeline: Pipeline, slot: str) -> int:
    with pipeline.pg() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint"
            " FROM pg_replication_slots WHERE slot_name = %s",
            (slot,),
        )
        return int(cur.fetchone()[0])


def test_slot_keeps_moving_on_an_idle_captured_database(pipeline: Pipeline) -> None:
    pipeline.sql("CREATE TABLE quiet (id int PRIMARY KEY)")
    control = pipeline.name + "_control"
    pipeline.sql(f"SELECT pg_create_logical_replication_slot('{control}', 'wal2json')")
    try:
        extractor = pipeline.start("extractor", CDC_SOURCE_HEARTBEAT_INTERVAL="1")
        extractor.wait_for("streaming slot=")
        # Another database of the same server writes about 64 MB of WAL.
        busy = pipeline.stack.postgres.dsn("postgres")
        with psycopg2.connect(busy) as conn, conn.cursor() as cur:
            cur.execute("CREATE TABLE IF NOT EXISTS busy_filler (x text)")
            for _ in range(16):
                cur.execute(
                    "INSERT INTO busy_filler SELECT repeat('x', 1000) FROM generate_series(1, 4000)"
                )
                conn.commit()
            cur.execute("DROP TABLE busy_filler")
        pipeline.stack.postgres.psql("CHECKPOINT")
        control_bytes = retained_wal(pipeline, control)
        assert control_bytes > 60 * 2**20
        wait_until(
            lambda: retained_wal(pipeline, pipeline.name) < 16 * 2**20,
            "the slot to let go of the other database's WAL",
            timeout=60,
        )
        ours = retained_wal(pipeline, pipeline.name)
        print(f"retained WAL: ours {ours} bytes, a slot nobody reads {control_bytes} bytes")
    finally:
        pipeline.sql(f"SELECT pg_drop_replication_slot('{control}')")


def peak_rss_mb(proc: Proc) -> float:
    with open(f"/proc/{proc.popen.pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


@pytest.mark.decoders  # protocol 1 without streaming: memory bounded all the same
def test_large_transaction_streams_with_bounded_memory(pipeline: Pipeline) -> None:
    rows = 200_000
    pipeline.sql("CREATE TABLE big (id bigint PRIMARY KEY, payload text, amount numeric(12,2))")
    extractor, applier = pipeline.start_pipeline()
    pipeline.sql(
        f"INSERT INTO big SELECT g, repeat(md5(g::text), 4), g / 100.0 FROM generate_series(1, {rows}) g"
    )
    pipeline.wait_converged(["big"], timeout=300)
    extractor_mb, applier_mb = peak_rss_mb(extractor), peak_rss_mb(applier)
    print(
        f"peak RSS for one {rows}-row transaction: extractor {extractor_mb:.0f} MB, applier {applier_mb:.0f} MB"
    )
    assert extractor_mb < 300 and applier_mb < 300


def test_dead_letters_can_be_listed_and_replayed_after_a_fix(pipeline: Pipeline) -> None:
    pipeline.sql("CREATE TABLE labels (id int PRIMARY KEY, name text)")
    # The target table exists already, with a column too narrow for what is coming.
    maria = pipeline.maria()
    maria.cursor().execute("CREATE TABLE labels (id int PRIMARY KEY, name varchar(3))")
    extractor, applier = pipeline.start_pipeline()
    pipeline.sql("INSERT INTO labels VALUES (1, 'ok'), (2, 'far too long')")
    pipeline.sql("INSERT INTO labels VALUES (3, 'abc')")
    dead = pipeline.queue + ".dead"
    wait_until(lambda: pipeline.queue_depth(dead) == 1, "a dead letter")
    listing = subprocess.run(
        [*pipeline_cmd(), "dlq", "list"],
        env=pipeline.env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "1 message(s)" in listing.stdout and "RowRejected" in listing.stdout
    assert "Data too long" in listing.stdout
    assert pipeline.queue_depth(dead) == 1  # listing removes nothing
    # The row after the rejected one went through.
    cur = maria.cursor()
    cur.execute("SELECT id FROM labels ORDER BY id")
    assert [r[0] for r in cur.fetchall()] == [3]
    cur.execute("ALTER TABLE labels MODIFY name text")
    replay = subprocess.run(
        [*pipeline_cmd(), "dlq", "replay", "--all"],
        env=pipeline.env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "1 message(s) sent back" in replay.stdout
    maria.close()
    pipeline.wait_converged(["labels"])
    assert pipeline.queue_depth(dead) == 0
    assert applier.alive() and extractor.alive()


def pipeline_cmd() -> list[str]:
    return [sys.executable, "-m", "applier"]


def test_broker_password_and_vhost(pipeline: Pipeline) -> None:
    rabbit = pipeline.stack.rabbitmq
    bad = rabbit.url().replace(f":{rabbit.password}@", ":wrong@")
    for module in ("extractor", "applier"):
        proc = subprocess.run(
            [sys.executable, "-m", module],
            env={**pipeline.env, "CDC_BROKER_URL": bad},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 1
        assert "RabbitMQ refused the login" in proc.stderr.strip().splitlines()[-1]
        proc = subprocess.run(
            [sys.executable, "-m", module],
            env={**pipeline.env, "CDC_BROKER_URL": rabbit.url("no-such-vhost")},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 1
        assert "virtual host" in proc.stderr.strip().splitlines()[-1]


def test_missing_target_database(pipeline: Pipeline) -> None:
    stack = pipeline.stack
    env = {**pipeline.env, "CDC_TARGET_URL": stack.mariadb.url("no_such_db", "root")}
    proc = subprocess.run(
        [sys.executable, "-m", "applier"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 1
    assert "Unknown database" in proc.stderr.strip().splitlines()[-1]


def test_unreachable_host_is_retried_with_clear_lines(pipeline: Pipeline) -> None:
    env = {
        **pipeline.env,
        "CDC_SOURCE_DSN": pipeline.env["CDC_SOURCE_DSN"].replace(
            f":{pipeline.stack.postgres.port}/", ":1/"
        ),
    }
    proc = Proc("extractor", env, pipeline.logdir / "unreachable.log", [])
    pipeline.procs.append(proc)
    proc.wait_for("retrying what=extractor_session attempt=3", timeout=30)
    out = proc.output()
    assert "cannot reach PostgreSQL" in out and "Traceback" not in out
    assert proc.alive()
    assert proc.stop() == 0
