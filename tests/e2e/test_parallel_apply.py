"""Parallel apply end to end (issue 14, part 2): target.partitions = 4 on the real servers,
both processes as subprocesses. Two applier processes share the four partitions (one takes
0 and 1, the other all four: active on 2 and 3, standby on 0 and 1); random DML across many
keys, with updates that move a key into another partition; a TRUNCATE, a schema change, a
backfill and the initial copy (barriers); a kill -9 of an applier and of the extractor in the
middle. The target ends equal to the source, row by row."""

from __future__ import annotations

import subprocess
import sys
import threading
from functools import partial

from devstack.system import wait_until
from harness.pipeline import ROOT, Pipeline
from harness.workload import TABLES
from shared.partitioning import partition_of

PARTITIONS = "4"
MOVED = 1_000_000  # what a moved row's key becomes


def backfill(pipeline: Pipeline, *tables: str) -> None:
    proc = pipeline.backfill(*tables)
    assert proc.returncode == 0, proc.stderr


def applied_rows(pipeline: Pipeline) -> int:
    maria = pipeline.maria()
    try:
        cur = maria.cursor()
        cur.execute("SELECT COUNT(*) FROM _cdc_checkpoint WHERE part > 0")
        return int(cur.fetchone()[0])
    finally:
        maria.close()


def test_four_partitions_shared_by_two_appliers_through_kills_and_barriers(
    pipeline: Pipeline,
) -> None:
    pipeline.settings["CDC_TARGET_PARTITIONS"] = PARTITIONS
    pipeline.stack.postgres.psql((ROOT / "sql" / "ddl-capture.sql").read_text(), pipeline.source_db)
    # Small batches and a small prefetch window: many batches in flight one after the other
    # on each partition, each planned while the one before is applied and while more
    # messages come in.
    pipeline.settings["CDC_TARGET_MAX_BATCH_CHANGES"] = "20"
    pipeline.settings["CDC_BROKER_PREFETCH"] = "8"
    w = pipeline.workload(1402)
    w.run(60)  # rows the initial copy brings: a barrier of its own
    extractor = pipeline.start("extractor")
    extractor.wait_for("streaming slot=")
    extractor.wait_for("ddl_capture installed=true")
    w.run(300)  # a backlog, as fast as PostgreSQL takes it, before any applier runs
    first = pipeline.start("applier", CDC_TARGET_PARTITION_SET="0,1")
    first.wait_for("consuming queue=")
    second = pipeline.start("applier")
    w.start(600, rate=60)

    wait_until(lambda: w.transactions >= 420, "a fifth of the workload", timeout=60)
    pipeline.sql("TRUNCATE notes")
    wait_until(lambda: w.transactions >= 500, "a third of the workload", timeout=60)
    first.kill()  # kill -9: the other applier's standby consumers take 0 and 1 over
    pipeline.sql("ALTER TABLE accounts ADD COLUMN tier integer DEFAULT 3")
    wait_until(lambda: w.transactions >= 600, "half of the workload", timeout=60)
    extractor.kill()  # kill -9, mid-stream
    extractor = pipeline.start("extractor")
    extractor.wait_for("streaming slot=")
    backfill(pipeline, "public.order_lines")
    first = pipeline.start("applier", CDC_TARGET_PARTITION_SET="0,1")  # a standby now
    wait_until(lambda: w.transactions >= 750, "most of the workload", timeout=60)
    pipeline.sql("UPDATE accounts SET tier = id % 7")
    w.join()

    pipeline.wait_converged(TABLES, timeout=240)
    assert applied_rows(pipeline) == 3  # partitions 1 to 3 each kept a checkpoint row
    # The appliers applied in parallel: each process applied a partition of its own.
    assert "progress messages=" in second.output()
    for proc in pipeline.procs:
        out = proc.output()
        assert "ordering_gap" not in out, out[-3000:]
        assert "Traceback" not in out, out[-3000:]


def test_a_partitions_dead_letter_is_replayed_to_its_queue(pipeline: Pipeline) -> None:
    pipeline.settings["CDC_TARGET_PARTITIONS"] = PARTITIONS
    pipeline.sql("CREATE TABLE labels (id int PRIMARY KEY, name text)")
    # The target table exists already, with a column too narrow for one of the rows.
    maria = pipeline.maria()
    maria.cursor().execute("CREATE TABLE labels (id int PRIMARY KEY, name varchar(3))")
    extractor, applier = pipeline.start_pipeline()
    pipeline.sql(
        "INSERT INTO labels SELECT g, 'ok' FROM generate_series(1, 20) g",
        "INSERT INTO labels VALUES (21, 'far too long')",
        "INSERT INTO labels SELECT g, 'ok' FROM generate_series(22, 40) g",
    )
    dead = pipeline.queue + ".dead"
    wait_until(lambda: pipeline.queue_depth(dead) == 1, "a dead letter")
    maria.cursor().execute("ALTER TABLE labels MODIFY name text")
    maria.close()
    replay = subprocess.run(
        [sys.executable, "-m", "applier", "dlq", "replay", "--all"],
        env=pipeline.env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert "1 message(s) sent back" in replay.stdout
    pipeline.wait_converged(["labels"])
    assert pipeline.queue_depth(dead) == 0
    assert applier.alive() and extractor.alive()


def test_a_target_table_with_a_foreign_key_is_refused_with_partitions(pipeline: Pipeline) -> None:
    pipeline.settings["CDC_TARGET_PARTITIONS"] = PARTITIONS
    pipeline.sql(
        "CREATE TABLE orders (id int PRIMARY KEY)",
        "CREATE TABLE items (id int PRIMARY KEY, order_id int)",
        "CREATE TABLE free (id int PRIMARY KEY)",
    )
    maria = pipeline.maria()
    cur = maria.cursor()
    cur.execute("CREATE TABLE orders (id int PRIMARY KEY)")
    cur.execute(
        "CREATE TABLE items (id int PRIMARY KEY, order_id int,"
        " CONSTRAINT items_order FOREIGN KEY (order_id) REFERENCES orders (id))"
    )
    maria.close()
    _, applier = pipeline.start_pipeline()
    pipeline.sql("INSERT INTO orders VALUES (1)", "INSERT INTO items VALUES (1, 1)")
    pipeline.sql("INSERT INTO free VALUES (1)")  # a transaction of its own
    wait_until(
        lambda: "reason=foreign_key_partitions" in applier.output(), "the refusal", timeout=60
    )
    out = applier.output()
    assert "table_refused table=items" in out and "table_refused table=orders" in out
    pipeline.wait_converged(["free"])  # the other tables go on


def test_changing_the_partitions_never_applies_again_what_was_applied(pipeline: Pipeline) -> None:
    """N goes from 1 to 4 after a drain. The extractor was killed with transactions in
    RabbitMQ that PostgreSQL had not been told of: the slot sends them again. Partition 0's
    row (the single queue's) covers them, the new partitions' rows do not: a row inserted then
    moved into another partition (a barrier, which partition 0 passes as done) must not come
    back."""
    # Each transaction inserts a row on a partition other than 0 and moves it to a third one.
    n = int(PARTITIONS)
    keys = [
        k
        for k in range(1, 100_000)
        if partition_of("public", "doc", [k], n) != 0
        and partition_of("public", "doc", [k + MOVED], n)
        not in (0, partition_of("public", "doc", [k], n))
    ]
    pipeline.sql(
        "CREATE TABLE doc (id int PRIMARY KEY, v text)",
        "CREATE TABLE tick (id int PRIMARY KEY)",
        "INSERT INTO doc VALUES (0, 'copied')",  # converged: the copy made the target table
    )
    extractor, applier = pipeline.start_pipeline()
    pipeline.wait_converged(["doc", "tick"])
    stop = threading.Event()

    def moves() -> None:
        with pipeline.pg() as conn, conn.cursor() as cur:
            while not stop.is_set() and keys:
                k = keys.pop(0)
                cur.execute(
                    f"BEGIN; INSERT INTO doc VALUES ({k}, 'a');"
                    f" UPDATE doc SET id = {k + MOVED} WHERE id = {k}; COMMIT"
                )

    def resent() -> bool:
        """Whether the slot's position is behind a transaction already applied."""
        with pipeline.pg() as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT confirmed_flush_lsn - '0/0' FROM pg_replication_slots WHERE slot_name = %s",
                (pipeline.name,),
            )
            confirmed = int(cur.fetchone()[0])
        return applied_lsn() > confirmed

    def applied_lsn() -> int:
        maria = pipeline.maria()
        try:
            cur = maria.cursor()
            cur.execute("SELECT MAX(commit_lsn) FROM _cdc_checkpoint")
            return int(cur.fetchone()[0] or 0)
        finally:
            maria.close()

    seen = [-1]

    def idle() -> bool:
        """The applier's checkpoint did not move since the last look (interval 0.5 s)."""
        now = applied_lsn()
        same, seen[0] = now == seen[0], now
        return same

    def target_rows() -> int:
        maria = pipeline.maria()
        try:
            cur = maria.cursor()
            cur.execute("SELECT COUNT(*) FROM doc")
            return int(cur.fetchone()[0])
        finally:
            maria.close()

    def grown(floor: int) -> bool:
        return target_rows() > floor

    for _ in range(10):  # a kill -9 under load leaves confirms unsent, nearly always at once
        writer = threading.Thread(target=moves)
        writer.start()
        try:
            wait_until(partial(grown, target_rows() + 20), "moves applied", interval=0.05)
            extractor.kill()
        finally:
            stop.set()
            writer.join()
            stop.clear()
        wait_until(lambda: pipeline.queue_depth() == 0, "the queue drained")
        try:
            wait_until(resent, "the slot behind what was applied", timeout=3)
            break
        except AssertionError:
            extractor = pipeline.start("extractor")
            extractor.wait_for("streaming slot=")
    else:
        raise AssertionError("the slot was never behind what was applied")
    wait_until(idle, "the applier idle", interval=0.5)
    assert applier.stop() == 0
    assert pipeline.queue_depth() == 0  # drained

    pipeline.settings["CDC_TARGET_PARTITIONS"] = PARTITIONS
    pipeline.start_pipeline()
    pipeline.sql("INSERT INTO tick VALUES (1)")
    pipeline.wait_converged(["tick"])
    # A truncate is a barrier: once it is applied, every partition is past what came before.
    pipeline.sql("TRUNCATE tick")
    pipeline.wait_converged(["tick"])
    diff = pipeline.differences(["doc"])["doc"]
    assert diff.equal, diff.summary()


def test_a_primary_key_added_without_ddl_capture_keeps_the_rows_order(
    pipeline: Pipeline,
) -> None:
    """A table without a key goes to one partition by its name; once it has a key, its rows go
    by key. Without the DDL capture nothing marks the moment (the shape of the rows is the
    same): a row inserted before the key was added, still waiting on the table's partition,
    must not be applied after its delete, made since on the key's partition."""
    n = int(PARTITIONS)
    whole = partition_of("public", "nk", [], n)
    key = next(k for k in range(1, 100) if partition_of("public", "nk", [k], n) != whole)
    pipeline.sql(
        "CREATE TABLE nk (a int NOT NULL, b text)",
        "ALTER TABLE nk REPLICA IDENTITY FULL",
        "CREATE TABLE tick (id int PRIMARY KEY)",
        "INSERT INTO tick VALUES (0)",  # converged: the copy was applied
    )
    pipeline.settings["CDC_TARGET_PARTITIONS"] = PARTITIONS
    _, applier = pipeline.start_pipeline()
    pipeline.wait_converged(["nk", "tick"])
    assert applier.stop() == 0
    # The table's partition waits (no consumer) while the others are applied.
    others = ",".join(str(i) for i in range(n) if i != whole)
    pipeline.start("applier", CDC_TARGET_PARTITION_SET=others).wait_for("consuming queue=")
    pipeline.sql(
        f"INSERT INTO nk VALUES ({key}, 'x')",
        "ALTER TABLE nk ADD PRIMARY KEY (a)",
        f"DELETE FROM nk WHERE a = {key}",
        "INSERT INTO tick VALUES (1)",
    )
    pipeline.start("applier", CDC_TARGET_PARTITION_SET=str(whole)).wait_for("consuming queue=")
    pipeline.wait_converged(["tick"])
    # A truncate is a barrier: once it is applied, every partition is past what came before.
    pipeline.sql("TRUNCATE tick")
    pipeline.wait_converged(["tick"])
    diff = pipeline.differences(["nk"])["nk"]
    assert diff.equal, diff.summary()
