"""Schema changes replicated exactly, at their place in the stream (issue 9, item 2).

With the DDL capture (sql/ddl-capture.sql, installed by the test stack's superuser), each
schema change is mirrored in MariaDB as its own unit, or its table copied again where DDL
cannot say what PostgreSQL did to the rows. Without it, a table whose columns or types change
is copied again when the stream shows it. Each case used to leave the target silently
different from the source.
"""

from __future__ import annotations

from typing import Any

import pytest

from devstack.system import free_port, wait_until
from harness.pipeline import ROOT, Pipeline
from tests.support.metrics import scrape, value

CAPTURE = ROOT / "sql" / "ddl-capture.sql"


def install_capture(pipeline: Pipeline) -> None:
    pipeline.stack.postgres.psql(CAPTURE.read_text(), pipeline.source_db)


def target_columns(pipeline: Pipeline, table: str) -> list[str]:
    maria = pipeline.maria()
    try:
        cur = maria.cursor()
        cur.execute(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = DATABASE() AND table_name = ? ORDER BY ordinal_position",
            (table,),
        )
        return [str(r[0]) for r in cur.fetchall()]
    finally:
        maria.close()


def target_rows(pipeline: Pipeline, query: str) -> list[tuple[Any, ...]]:
    maria = pipeline.maria()
    try:
        cur = maria.cursor()
        cur.execute(query)
        return [tuple(r) for r in cur.fetchall()]
    finally:
        maria.close()


def started(pipeline: Pipeline, *tables: str, **env: str) -> tuple[Any, Any]:
    """Capture installed, tables copied: the pipeline running and caught up."""
    install_capture(pipeline)
    extractor = pipeline.start("extractor", **env)
    applier = pipeline.start("applier", **env)
    extractor.wait_for("streaming slot=")
    extractor.wait_for("ddl_capture installed=true")
    pipeline.wait_converged(list(tables))
    return extractor, applier


@pytest.mark.decoders
def test_add_column_with_a_constant_default_fills_the_rows_there(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE TABLE acc (id int PRIMARY KEY, v text)",
        "INSERT INTO acc SELECT g, 'r' || g FROM generate_series(1, 50) g",
        "CREATE TABLE parent (id int PRIMARY KEY)",
        "CREATE TABLE child (extra text) INHERITS (parent)",
        "INSERT INTO child VALUES (1, 'x'), (2, NULL)",
    )
    started(pipeline, "acc", "child")
    # No row changes after it: only the schema change can fill them.
    pipeline.sql(
        "ALTER TABLE acc ADD COLUMN c int NOT NULL DEFAULT 7,"
        " ADD COLUMN at timestamptz DEFAULT '2024-02-29 23:30:00-05',"
        " ADD COLUMN amount numeric(10,2) DEFAULT 1.5, ADD COLUMN flag boolean DEFAULT true,"
        " ADD COLUMN label text DEFAULT 'it''s \"q\" \\ {x}', ADD COLUMN nums int[] DEFAULT"
        " '{1,2}', ADD COLUMN nothing text",
        # An inheritance parent's change is its children's too.
        "ALTER TABLE parent ADD COLUMN d date DEFAULT '2024-02-29'",
    )
    pipeline.wait_converged(["acc", "child"])
    assert target_rows(pipeline, "SELECT count(*) FROM acc WHERE c = 7") == [(50,)]


@pytest.mark.parametrize("dropped", ["keep", "drop"])
def test_a_column_dropped_and_added_again_starts_empty(pipeline: Pipeline, dropped: str) -> None:
    pipeline.sql(
        "CREATE TABLE da (id int PRIMARY KEY, c text, d int)",
        "INSERT INTO da SELECT g, 'old ' || g, g FROM generate_series(1, 20) g",
    )
    started(pipeline, "da", CDC_TARGET_DROPPED=dropped)
    pipeline.sql("ALTER TABLE da DROP COLUMN d", "INSERT INTO da VALUES (21, 'x')")
    pipeline.wait_converged(["da"])
    assert ("d" in target_columns(pipeline, "da")) == (dropped == "keep")
    # The same name again, as the last column and in the middle: the old values must go.
    pipeline.sql(
        "ALTER TABLE da DROP COLUMN c",
        "ALTER TABLE da ADD COLUMN c text",
        "ALTER TABLE da ADD COLUMN d int",
        "UPDATE da SET d = 0 WHERE id = 1",
        "BEGIN; ALTER TABLE da DROP COLUMN d; ALTER TABLE da ADD COLUMN d text DEFAULT 'new';"
        " COMMIT",
    )
    pipeline.wait_converged(["da"])
    assert target_rows(pipeline, "SELECT count(*) FROM da WHERE c IS NULL AND d = 'new'") == [(21,)]


def test_a_type_changed_with_using_is_copied_again(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE TABLE price (id int PRIMARY KEY, cents int, note text)",
        "INSERT INTO price SELECT g, g * 3, 'n' FROM generate_series(1, 30) g",
    )
    extractor, _ = started(pipeline, "price")
    pipeline.sql(
        "ALTER TABLE price ALTER COLUMN cents TYPE bigint USING cents * 100",
        "UPDATE price SET note = 'after' WHERE id <= 3",
    )
    pipeline.wait_converged(["price"])
    extractor.wait_for("schema_rewrite table=public.price")


def test_timestamp_to_timestamptz_outside_utc(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE TABLE ev (id int PRIMARY KEY, at timestamp)",
        "INSERT INTO ev VALUES (1, '2024-01-01 12:00'), (2, '2024-07-01 12:00'), (3, NULL)",
    )
    started(pipeline, "ev")
    # The session's time zone decides which moment each value becomes.
    pipeline.sql(
        "SET TimeZone = 'America/New_York'", "ALTER TABLE ev ALTER COLUMN at TYPE timestamptz"
    )
    pipeline.wait_converged(["ev"])
    assert target_rows(pipeline, "SELECT CAST(at AS CHAR) FROM ev WHERE id = 1") == [
        ("2024-01-01 17:00:00.000000",)
    ]


def test_a_table_dropped_and_created_again_starts_empty(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE TABLE box (id int PRIMARY KEY, v text)",
        "INSERT INTO box SELECT g, 'old' FROM generate_series(1, 10) g",
    )
    started(pipeline, "box")
    pipeline.sql(
        "DROP TABLE box",
        "CREATE TABLE box (id int PRIMARY KEY, v text, w int)",
        "INSERT INTO box VALUES (100, 'new', 1)",
    )
    pipeline.wait_converged(["box"])
    assert target_rows(pipeline, "SELECT id FROM box") == [(100,)]


@pytest.mark.parametrize("dropped", ["keep", "drop"])
def test_a_dropped_table_is_kept_or_dropped(pipeline: Pipeline, dropped: str) -> None:
    pipeline.sql(
        "CREATE TABLE gone (id int PRIMARY KEY)",
        "INSERT INTO gone VALUES (1)",
        "CREATE TABLE stays (id int PRIMARY KEY)",
    )
    _, applier = started(pipeline, "gone", "stays", CDC_TARGET_DROPPED=dropped)
    pipeline.sql("DROP TABLE gone", "INSERT INTO stays VALUES (1)")
    pipeline.wait_converged(["stays"])
    applier.wait_for("table_dropped" if dropped == "drop" else "table_kept")
    assert bool(target_columns(pipeline, "gone")) == (dropped == "keep")


@pytest.mark.decoders
def test_a_key_column_renamed_then_updates_and_deletes(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE TABLE kr (a int PRIMARY KEY, v text)",
        "INSERT INTO kr SELECT g, 'v' || g FROM generate_series(1, 10) g",
    )
    started(pipeline, "kr")
    pipeline.sql(
        "ALTER TABLE kr RENAME COLUMN a TO id",
        "ALTER TABLE kr RENAME COLUMN v TO label",
        "INSERT INTO kr VALUES (11, 'new')",
        "UPDATE kr SET label = 'changed' WHERE id IN (1, 11)",
        "UPDATE kr SET id = 20 WHERE id = 2",
        "DELETE FROM kr WHERE id = 3",
    )
    pipeline.wait_converged(["kr"])
    assert target_columns(pipeline, "kr") == ["id", "label"]
    assert pipeline.queue_depth(pipeline.queue + ".dead") == 0


def test_a_renamed_table_keeps_its_rows(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE TABLE old_name (id int PRIMARY KEY, v text)",
        "INSERT INTO old_name SELECT g, 'v' FROM generate_series(1, 10) g",
    )
    extractor, _ = started(pipeline, "old_name")
    pipeline.sql(
        "ALTER TABLE old_name RENAME TO new_name",
        "UPDATE new_name SET v = 'after' WHERE id < 4",
    )
    pipeline.wait_converged(["new_name"])
    assert not target_columns(pipeline, "old_name")
    # Renamed, not copied again.
    assert extractor.output().count("copy_started") == 1


def test_a_table_created_empty_is_created(pipeline: Pipeline) -> None:
    started(pipeline)
    pipeline.sql("CREATE TABLE empty_one (id int PRIMARY KEY, v numeric(8,2), t text)")
    wait_until(lambda: target_columns(pipeline, "empty_one") == ["id", "v", "t"], "created")
    pipeline.wait_converged(["empty_one"])


@pytest.mark.decoders
def test_schema_changes_between_row_changes_of_one_transaction(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE TABLE mix (id int PRIMARY KEY, v text)",
        "INSERT INTO mix SELECT g, 'v' || g FROM generate_series(1, 5) g",
    )
    started(pipeline, "mix")
    pipeline.sql(
        "BEGIN;"
        " INSERT INTO mix VALUES (6, 'before');"
        " ALTER TABLE mix ADD COLUMN n int DEFAULT 5;"
        " INSERT INTO mix VALUES (7, 'after', 70);"
        " UPDATE mix SET n = n + 1 WHERE id IN (1, 6);"
        " ALTER TABLE mix RENAME COLUMN v TO w;"
        " UPDATE mix SET w = 'renamed' WHERE id = 2;"
        " ALTER TABLE mix DROP COLUMN n;"
        " ALTER TABLE mix ADD COLUMN n text DEFAULT 'again';"
        " INSERT INTO mix VALUES (8, 'last', 'eight');"
        " COMMIT"
    )
    pipeline.wait_converged(["mix"])
    assert target_rows(pipeline, "SELECT id, w, n FROM mix WHERE id IN (1, 7, 8) ORDER BY id") == [
        (1, "v1", "again"),
        (7, "after", "again"),
        (8, "last", "eight"),
    ]


EVENTS = (
    "CREATE TABLE events (id int, k int, v text, PRIMARY KEY (id, k)) PARTITION BY RANGE (k)",
    "CREATE TABLE events_low PARTITION OF events FOR VALUES FROM (0) TO (10)",
    "CREATE TABLE events_mid PARTITION OF events FOR VALUES FROM (10) TO (20)",
    "INSERT INTO events SELECT g, k, 'v' FROM generate_series(1, 5) g, unnest(ARRAY[1, 11]) k",
)


@pytest.mark.decoders
def test_partitions_attached_and_detached_are_copied(pipeline: Pipeline) -> None:
    pipeline.sql(*EVENTS)
    extractor, _ = started(pipeline, "events", CDC_TABLES="public.events")
    # The value of a column added with a default is in the partitions, not in the root.
    pipeline.sql("ALTER TABLE events ADD COLUMN x int DEFAULT 5")
    pipeline.wait_converged(["events"])
    pipeline.sql(
        "CREATE TABLE events_hi (id int NOT NULL, k int NOT NULL, v text, x int)",
        "INSERT INTO events_hi VALUES (1, 25, 'attached', 1), (2, 26, 'attached', NULL)",
        "ALTER TABLE events ATTACH PARTITION events_hi FOR VALUES FROM (20) TO (30)",
    )
    pipeline.wait_converged(["events"])
    pipeline.sql("ALTER TABLE events DETACH PARTITION events_low")
    pipeline.wait_converged(["events"])
    pipeline.sql(
        "CREATE TABLE events_empty (x int, id int NOT NULL, k int NOT NULL, v text)",
        "ALTER TABLE events ATTACH PARTITION events_empty FOR VALUES FROM (30) TO (40)",
        "DROP TABLE events_mid",
        "INSERT INTO events VALUES (9, 35, 'in the empty one', 9)",
    )
    pipeline.wait_converged(["events"])
    out = extractor.output()
    assert "partition_attached table=public.events" in out
    assert "partition_detached table=public.events" in out
    assert "partition_dropped table=public.events partition=public.events_mid" in out
    # The first copy, then one for each of the three; the empty partition needs none, and its
    # own order of columns is no schema change.
    assert out.count("copy_started") == 4
    assert "schema_changed" not in out


def test_applier_killed_right_after_a_schema_change(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE TABLE k9 (id int PRIMARY KEY, v text)",
        "INSERT INTO k9 SELECT g, 'v' FROM generate_series(1, 10) g",
    )
    _, applier = started(pipeline, "k9", CDC_SOURCE_HEARTBEAT_INTERVAL="0")
    # The checkpoint row locked from outside: the applier runs the DDL, then waits to move
    # the checkpoint past it, and dies there.
    lock = pipeline.maria()
    lock.autocommit = False
    lock.cursor().execute("SELECT * FROM _cdc_checkpoint FOR UPDATE")
    try:
        pipeline.sql(
            "ALTER TABLE k9 ADD COLUMN c int DEFAULT 7",
            "ALTER TABLE k9 RENAME COLUMN v TO w",
            "UPDATE k9 SET w = 'after' WHERE id = 1",
        )
        applier.wait_for("column_added table=k9 column=c")
        applier.kill()
    finally:
        lock.rollback()
        lock.close()
    assert "c" in target_columns(pipeline, "k9")
    pipeline.start("applier")
    pipeline.wait_converged(["k9"])
    assert target_rows(pipeline, "SELECT count(*) FROM k9 WHERE c = 7") == [(10,)]


@pytest.mark.decoders
def test_without_the_capture_a_changed_table_is_copied_again(pipeline: Pipeline) -> None:
    port = free_port()
    pipeline.sql(
        "CREATE TABLE nc (id int PRIMARY KEY, cents int, v text)",
        "INSERT INTO nc SELECT g, g, 'v' FROM generate_series(1, 20) g",
    )
    extractor = pipeline.start("extractor", CDC_METRICS_PORT=str(port))
    pipeline.start("applier")
    extractor.wait_for("ddl_capture installed=false")
    pipeline.wait_converged(["nc"])
    pipeline.sql(
        "ALTER TABLE nc ADD COLUMN c int NOT NULL DEFAULT 7",
        "ALTER TABLE nc ALTER COLUMN cents TYPE bigint USING cents * 100",
        "INSERT INTO nc VALUES (21, 2100, 'new', 8)",
    )
    pipeline.wait_converged(["nc"])
    extractor.wait_for("schema_changed table=public.nc")
    assert value(scrape(port), "cdc_extractor_unreported_schema_changes_total") == 1
    # A change made while the extractor is down: noticed at the table's next change.
    assert extractor.stop() == 0
    pipeline.sql(
        "ALTER TABLE nc ALTER COLUMN c TYPE numeric(12,2) USING c / 4.0",
        "UPDATE nc SET v = 'later' WHERE id = 1",
    )
    restarted = pipeline.start("extractor")
    pipeline.wait_converged(["nc"])
    restarted.wait_for("schema_changed table=public.nc")
