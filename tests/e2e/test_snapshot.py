"""Initial snapshot, restarts during the copy, backfill, tables added to the filter later."""

from __future__ import annotations

import subprocess
import sys

import pytest

from devstack.system import wait_until
from harness.pipeline import Pipeline
from harness.workload import TABLES


def filled(pipeline: Pipeline, rows: int) -> None:
    pipeline.sql(
        "CREATE TABLE items (id bigint PRIMARY KEY, name text, price numeric(12,4),"
        " seen timestamptz, tags text[], doc jsonb, raw bytea, code char(4))",
        "INSERT INTO items SELECT g, 'item ''' || g || ' ü🎉', g * 1.0001, '2024-01-01 00:00+05'::timestamptz"
        " + g * interval '1 minute', ARRAY['a', 'b c', g::text], jsonb_build_object('n', g, 'x', 1.50),"
        f" decode(md5(g::text), 'hex'), 'c' || (g % 10) FROM generate_series(1, {rows}) g",
    )


def test_initial_snapshot_copies_existing_rows_exactly(pipeline: Pipeline) -> None:
    filled(pipeline, 5000)
    w = pipeline.workload(21)
    w.run(200)  # rows in the workload's tables before the pipeline ever ran
    extractor, _ = pipeline.start_pipeline()
    w.run(200)  # and changes after
    pipeline.wait_converged(["items", *TABLES])
    assert "copy_done" in extractor.output()
    assert "copy_table_done table=public.items rows=5000" in extractor.output()


@pytest.mark.decoders
def test_writes_during_the_copy_are_neither_lost_nor_doubled(pipeline: Pipeline) -> None:
    filled(pipeline, 20000)
    w = pipeline.workload(22)
    w.run(100)
    w.start(800, rate=200)  # writing while the slot is created and the copy runs
    pipeline.start_pipeline()
    w.join()
    pipeline.wait_converged(["items", *TABLES])


def test_a_restart_during_the_copy_copies_again_cleanly(pipeline: Pipeline) -> None:
    filled(pipeline, 100000)
    w = pipeline.workload(23)
    # Small messages, one confirm at a time: the copy takes long enough to be cut short.
    slow = {"CDC_SOURCE_MAX_CHUNK_CHANGES": "50", "CDC_BROKER_MAX_INFLIGHT": "1"}
    extractor = pipeline.start("extractor", **slow)
    extractor.wait_for("copy_started")
    wait_until(lambda: pipeline.queue_depth() > 100, "part of the copy published")
    extractor.kill()
    assert "copy_done" not in extractor.output()
    applier = pipeline.start("applier")  # applies the unfinished copy's first part
    w.run(100)
    extractor = pipeline.start("extractor")
    pipeline.wait_converged(["items", *TABLES], timeout=180)
    assert "copy_done" in extractor.output()
    assert "ordering_gap" not in applier.output()
    assert applier.alive()


@pytest.mark.decoders
def test_backfill_repairs_a_table_while_changes_flow(pipeline: Pipeline) -> None:
    w = pipeline.workload(24)
    extractor, _ = pipeline.start_pipeline()
    w.run(300)
    pipeline.wait_converged(TABLES)
    # Someone changes the copy behind the pipeline's back.
    maria = pipeline.maria()
    cur = maria.cursor()
    cur.execute("DELETE FROM accounts ORDER BY id LIMIT 10")
    cur.execute("UPDATE order_lines SET qty = qty + 1000")
    cur.execute("INSERT INTO accounts (id, owner, balance, opened) VALUES (-1, 'ghost', 0, NOW())")
    maria.close()
    assert not all(d.equal for d in pipeline.differences(["accounts", "order_lines"]).values())
    w.start(600, rate=200)
    proc = subprocess.run(
        [sys.executable, "-m", "extractor", "backfill", "public.accounts", "order_lines"],
        env=pipeline.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "requested" in proc.stdout
    w.join()
    pipeline.wait_converged(TABLES)
    assert "backfill_requested tables=public.accounts,public.order_lines" in extractor.output()


@pytest.mark.decoders
def test_a_table_added_to_the_filter_is_copied(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE TABLE first (id int PRIMARY KEY, v text)",
        "CREATE TABLE second (id int PRIMARY KEY, v text)",
        "INSERT INTO first SELECT g, 'f' || g FROM generate_series(1, 100) g",
        "INSERT INTO second SELECT g, 's' || g FROM generate_series(1, 100) g",
    )
    extractor = pipeline.start("extractor", CDC_TABLES="public.first")
    applier = pipeline.start("applier")
    pipeline.wait_converged(["first"])
    assert pipeline.differences(["second"])["second"].summary().startswith("100 missing")
    assert extractor.stop() == 0
    pipeline.sql("UPDATE second SET v = v || '!' WHERE id <= 10")
    extractor = pipeline.start("extractor", CDC_TABLES="public.first,public.second")
    pipeline.sql("INSERT INTO second VALUES (101, 'after')")
    pipeline.wait_converged(["first", "second"])
    # The first table was not copied again.
    assert "copy_started tables=public.second" in extractor.output()
    assert applier.alive()


def test_a_table_left_out_of_the_filter_and_taken_back_is_copied_again(
    pipeline: Pipeline,
) -> None:
    pipeline.sql(
        "CREATE TABLE kept (id int PRIMARY KEY, v text)",
        "CREATE TABLE left_out (id int PRIMARY KEY, v text)",
        "INSERT INTO left_out SELECT g, 'v' || g FROM generate_series(1, 50) g",
    )
    both = "public.kept,public.left_out"
    extractor = pipeline.start("extractor", CDC_TABLES=both)
    pipeline.start("applier")
    pipeline.wait_converged(["kept", "left_out"])
    assert extractor.stop() == 0
    extractor = pipeline.start("extractor", CDC_TABLES="public.kept")
    extractor.wait_for("streaming slot=")
    # Changed while nobody carries it.
    pipeline.sql(
        "UPDATE left_out SET v = 'changed' WHERE id <= 20", "DELETE FROM left_out WHERE id > 40"
    )
    pipeline.sql("INSERT INTO kept VALUES (1, 'k')")
    pipeline.wait_converged(["kept"])
    assert extractor.stop() == 0
    extractor = pipeline.start("extractor", CDC_TABLES=both)
    pipeline.wait_converged(["kept", "left_out"])
    assert "copy_started tables=public.left_out" in extractor.output()


def test_snapshot_never_streams_only(pipeline: Pipeline) -> None:
    pipeline.sql("CREATE TABLE old (id int PRIMARY KEY)", "INSERT INTO old VALUES (1), (2)")
    extractor = pipeline.start("extractor", CDC_SNAPSHOT="never")
    pipeline.start("applier")
    extractor.wait_for("streaming slot=")
    pipeline.sql("INSERT INTO old VALUES (3)")
    # Row 3 arrives; rows 1 and 2, there before the pipeline, are not copied.
    wait_until(
        lambda: pipeline.differences(["old"])["old"].summary().startswith("2 missing"), "row 3"
    )
    assert [r[0] for r in pipeline.differences(["old"])["old"].missing] == [1, 2]
    assert "copy_started" not in extractor.output()


def test_table_without_identity_is_named_at_start(pipeline: Pipeline) -> None:
    pipeline.sql("CREATE TABLE log_lines (at int, line text)")
    extractor = pipeline.start("extractor")
    extractor.wait_for("streaming slot=")
    assert "table_without_identity table=public.log_lines" in extractor.output()
    assert "REPLICA IDENTITY FULL" in extractor.output()


def test_generated_columns_are_equal_in_copies_and_in_the_stream(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE TABLE gen (id int PRIMARY KEY, a int, b int GENERATED ALWAYS AS (a * 2) STORED,"
        " label text GENERATED ALWAYS AS ('n' || a::text) STORED)",
        "INSERT INTO gen (id, a) SELECT g, g FROM generate_series(1, 20) g",
    )
    pipeline.start_pipeline()
    pipeline.wait_converged(["gen"])  # the copy carries b and label
    pipeline.sql(
        "UPDATE gen SET a = a + 100 WHERE id <= 5", "INSERT INTO gen (id, a) VALUES (21, 7)"
    )
    pipeline.wait_converged(["gen"])


def test_a_captured_table_with_no_rows_is_created_by_its_copy(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE TABLE empty_one (id bigint PRIMARY KEY, v numeric(10,2), t text)",
        "CREATE TABLE full_one (id int PRIMARY KEY)",
        "INSERT INTO full_one VALUES (1)",
    )
    pipeline.start_pipeline()
    pipeline.wait_converged(["empty_one", "full_one"])
    maria = pipeline.maria()
    cur = maria.cursor()
    cur.execute(
        "SELECT column_name, column_type, column_key FROM information_schema.columns"
        " WHERE table_schema = DATABASE() AND table_name = 'empty_one' ORDER BY ordinal_position"
    )
    assert cur.fetchall() == [
        ("id", "bigint(20)", "PRI"),
        ("v", "decimal(10,2)", ""),
        ("t", "longtext", ""),
    ]
    maria.close()
    # applier verify can pass: the table is there, empty on both sides.
    proc = subprocess.run(
        [sys.executable, "-m", "applier", "verify", "--table", "public.empty_one"],
        env=pipeline.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
