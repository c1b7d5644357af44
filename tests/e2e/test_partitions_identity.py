"""Partitioned and inherited tables with wal2json; tables PostgreSQL cannot identify rows of."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.system import free_port, wait_until
from harness.pipeline import Pipeline, Proc
from tests.support.metrics import scrape, value

# A range-partitioned root, two levels (one partition is itself partitioned by list), a
# default partition, a partition in another schema; rows in every leaf.
EVENTS = (
    "CREATE SCHEMA archive",
    "CREATE TABLE events (id int, k int, v text, PRIMARY KEY (id, k)) PARTITION BY RANGE (k)",
    "CREATE TABLE events_low PARTITION OF events FOR VALUES FROM (0) TO (10)",
    "CREATE TABLE events_mid PARTITION OF events FOR VALUES FROM (10) TO (20)"
    " PARTITION BY LIST (id)",
    "CREATE TABLE events_mid_a PARTITION OF events_mid FOR VALUES IN (1, 2, 3)",
    "CREATE TABLE events_mid_rest PARTITION OF events_mid DEFAULT",
    "CREATE TABLE archive.events_old PARTITION OF events FOR VALUES FROM (-100) TO (0)",
    "CREATE TABLE events_other PARTITION OF events DEFAULT",
    "INSERT INTO events SELECT g, k, 'v' || g || '/' || k"
    " FROM generate_series(1, 6) g, unnest(ARRAY[-5, 5, 15, 50]) k",
)
# Inheritance: two tables, each with its own rows and its own target table.
FAMILY = (
    "CREATE TABLE parent (id int PRIMARY KEY, v text)",
    "CREATE TABLE child (extra text) INHERITS (parent)",
    "ALTER TABLE child ADD PRIMARY KEY (id)",
    "INSERT INTO parent VALUES (1, 'p1'), (2, 'p2')",
    "INSERT INTO child VALUES (1, 'c1', 'x'), (3, 'c3', 'y')",
)
LEAVES = ("events_low", "events_mid", "events_mid_a", "events_mid_rest", "events_other")


def target_rows(pipeline: Pipeline, table: str) -> list[tuple[Any, ...]]:
    maria = pipeline.maria()
    try:
        cur = maria.cursor()
        cur.execute(f"SELECT * FROM `{table}` ORDER BY 1")
        return [tuple(r) for r in cur.fetchall()]
    finally:
        maria.close()


def source_rows(pipeline: Pipeline, query: str) -> list[tuple[Any, ...]]:
    with pipeline.pg() as conn, conn.cursor() as cur:
        cur.execute(query)
        return [tuple(r) for r in cur.fetchall()]


def target_tables(pipeline: Pipeline) -> set[str]:
    maria = pipeline.maria()
    try:
        cur = maria.cursor()
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
                    (pipeline.target_db,))  # fmt: skip
        return {str(r[0]) for r in cur.fetchall()}
    finally:
        maria.close()


def parent_converged(pipeline: Pipeline) -> None:
    # The parent's own rows only: its children are tables of their own.
    wait_until(
        lambda: (
            target_rows(pipeline, "parent")
            == source_rows(pipeline, "SELECT * FROM ONLY parent ORDER BY 1")
        ),
        "the inheritance parent's own rows",
    )


@pytest.mark.decoders
def test_partitioned_root_is_one_table_that_follows_its_partitions(pipeline: Pipeline) -> None:
    pipeline.sql(*EVENTS, *FAMILY)
    env = {"CDC_TABLES": "public.events,public.parent,public.child"}
    extractor = pipeline.start("extractor", **env)
    pipeline.start("applier", **env)
    extractor.wait_for("streaming slot=")
    pipeline.wait_converged(["events", "child"])
    parent_converged(pipeline)

    pipeline.sql(
        "INSERT INTO events VALUES (7, -1, 'n'), (7, 1, 'n'), (2, 11, 'n'), (7, 11, 'n'),"
        " (7, 70, 'n')",
        "UPDATE events SET k = 13 WHERE id = 1 AND k = 5",  # low -> mid_a
        "UPDATE events SET id = 10 WHERE id = 2 AND k = 15",  # mid_a -> mid_rest
        "UPDATE events SET k = -50 WHERE id = 3 AND k = 50",  # other -> archive.events_old
        "UPDATE events SET v = 'changed' WHERE k = 15",
        "DELETE FROM events WHERE id = 4",
        "INSERT INTO parent VALUES (4, 'p4')",
        "INSERT INTO child VALUES (5, 'c5', 'z')",
        "UPDATE parent SET v = v || '!'",  # the parent's and the child's rows
        "DELETE FROM parent WHERE id = 3",  # a child's row, through the parent
    )
    pipeline.wait_converged(["events", "child"])
    parent_converged(pipeline)

    # One leaf truncated: only its rows leave the root's table; then the root's intermediate
    # partition (two leaves at once), and the inheritance parent alone.
    pipeline.sql("TRUNCATE events_low", "INSERT INTO events VALUES (8, 2, 'after')")
    pipeline.wait_converged(["events"])
    pipeline.sql(
        "BEGIN; TRUNCATE events_mid; INSERT INTO events VALUES (9, 12, 'm'); COMMIT",
        "TRUNCATE ONLY parent",
        "INSERT INTO parent VALUES (9, 'p9')",
    )
    pipeline.wait_converged(["events", "child"])
    parent_converged(pipeline)
    assert "partition_truncated table=public.events partition=public.events_low" in (
        extractor.output()
    )

    # A partition created while running; a table with rows attached; a partition detached.
    pipeline.sql(
        "CREATE TABLE events_hi PARTITION OF events FOR VALUES FROM (100) TO (200)",
        "INSERT INTO events VALUES (1, 150, 'hi'), (2, 199, 'hi')",
        "UPDATE events SET k = 101 WHERE id = 7 AND k = 70",  # default -> the new partition
        "CREATE TABLE events_att (id int NOT NULL, k int NOT NULL, v text)",
        "INSERT INTO events_att VALUES (1, 250, 'attached'), (2, 260, 'attached')",
        "ALTER TABLE events ATTACH PARTITION events_att FOR VALUES FROM (200) TO (300)",
        "ALTER TABLE events DETACH PARTITION events_other",
        "INSERT INTO events_other VALUES (99, 99, 'detached, not captured')",
    )
    extractor.wait_for("partition_attached table=public.events partition=public.events_att")
    extractor.wait_for("partition_detached table=public.events partition=public.events_other")
    assert "python -m extractor backfill public.events" in extractor.output()
    proc = pipeline.backfill("public.events")
    assert proc.returncode == 0, proc.stderr
    pipeline.sql("INSERT INTO events VALUES (3, 201, 'in the attached one')")

    # The root as a whole, then new rows.
    pipeline.wait_converged(["events", "child"])
    pipeline.sql("TRUNCATE events", "INSERT INTO events VALUES (5, 5, 'last'), (5, 150, 'last')")
    pipeline.wait_converged(["events", "child"])
    parent_converged(pipeline)
    assert not target_tables(pipeline) & {*LEAVES, "events_old", "events_hi", "events_att"}
    assert "table_without_identity" not in extractor.output()


def test_a_filter_naming_a_partition_is_refused(pipeline: Pipeline) -> None:
    pipeline.sql(*EVENTS)
    extractor = pipeline.start("extractor", CDC_TABLES="public.events_mid_a")
    assert extractor.popen.wait(timeout=60) == 2  # a setting's fault, found once connected
    assert "public.events_mid_a is a partition of public.events" in extractor.output()
    proc = pipeline.backfill("public.events_mid_a")
    assert proc.returncode == 2
    assert "backfill: public.events_mid_a is a partition of public.events" in proc.stderr


def _identity_errors(extractor: Proc, *tables: str) -> None:
    for t in tables:
        extractor.wait_for(f"table_without_identity table={t}")


def test_tables_postgres_cannot_identify_are_named(pipeline: Pipeline) -> None:
    port = free_port()
    pipeline.sql(
        "CREATE TABLE dk (id int PRIMARY KEY DEFERRABLE, v text)",
        "CREATE TABLE kl (a int, b text)",
        "ALTER TABLE kl REPLICA IDENTITY FULL",
        "CREATE TABLE ri (id int NOT NULL, v text)",
        "CREATE UNIQUE INDEX ri_id ON ri (id)",
        "ALTER TABLE ri REPLICA IDENTITY USING INDEX ri_id",
        "CREATE TABLE nt (id int PRIMARY KEY, v text)",
        "CREATE TABLE pt (id int PRIMARY KEY, v text) PARTITION BY RANGE (id)",
        "CREATE TABLE pt1 PARTITION OF pt FOR VALUES FROM (0) TO (100)",
        "ALTER TABLE pt1 REPLICA IDENTITY NOTHING",
        "CREATE TABLE good (id int PRIMARY KEY, v text)",
        *(f"INSERT INTO {t} VALUES (1, 'a'), (2, 'b')" for t in ("dk", "kl", "ri", "nt", "pt")),
        "INSERT INTO good VALUES (1, 'a')",
    )
    extractor = pipeline.start("extractor", CDC_METRICS_PORT=str(port))
    pipeline.start("applier")
    extractor.wait_for("streaming slot=")
    # At start: a DEFERRABLE primary key; a partition with REPLICA IDENTITY NOTHING.
    _identity_errors(extractor, "public.dk", "public.pt partition=public.pt1")
    wait_until(lambda: value(scrape(port), "cdc_extractor_unidentified_tables") == 2, "gauge")

    # While running: identities taken away.
    pipeline.sql(
        "ALTER TABLE kl REPLICA IDENTITY DEFAULT",
        "DROP INDEX ri_id",
        "ALTER TABLE nt REPLICA IDENTITY NOTHING",
        *(f"UPDATE {t} SET v = 'lost' WHERE id = 1" for t in ("dk", "ri", "nt", "pt")),
        "UPDATE kl SET b = 'lost' WHERE a = 1",
        "UPDATE good SET v = 'kept'",
    )
    _identity_errors(extractor, "public.kl", "public.ri", "public.nt")
    assert " ERROR " in extractor.output() or '"level": "ERROR"' in extractor.output()
    wait_until(lambda: value(scrape(port), "cdc_extractor_unidentified_tables") == 5, "gauge")
    # The updates made meanwhile are lost: that is what the errors say.
    assert pipeline.differences(["nt"])["nt"].summary() == "0 missing, 0 extra, 1 different"

    # Fixed: named again, and a backfill repairs what was lost.
    pipeline.sql(
        "ALTER TABLE dk REPLICA IDENTITY FULL",
        "ALTER TABLE kl REPLICA IDENTITY FULL",
        "ALTER TABLE ri REPLICA IDENTITY FULL",
        "ALTER TABLE nt REPLICA IDENTITY DEFAULT",
        "ALTER TABLE pt1 REPLICA IDENTITY DEFAULT",
    )
    for t in ("public.dk", "public.kl", "public.ri", "public.nt", "public.pt"):
        extractor.wait_for(f"table_identified table={t}")
    wait_until(lambda: value(scrape(port), "cdc_extractor_unidentified_tables") == 0, "gauge")
    proc = pipeline.backfill("dk", "kl", "ri", "nt", "pt")
    assert proc.returncode == 0, proc.stderr
    pipeline.sql(
        *(f"UPDATE {t} SET v = 'kept' WHERE id = 2" for t in ("dk", "ri", "nt", "pt")),
        "DELETE FROM kl WHERE a = 2",
    )
    pipeline.wait_converged(["dk", "kl", "ri", "nt", "pt", "good"])


@pytest.mark.decoders
def test_a_captured_table_partitioned_while_running(pipeline: Pipeline) -> None:
    # At start the filter's one table does not exist: wal2json filters by its name, which
    # would drop every change of its partitions once it is created partitioned.
    extractor = pipeline.start("extractor", CDC_TABLES="public.later")
    pipeline.start("applier", CDC_TABLES="public.later")
    extractor.wait_for("streaming slot=")
    pipeline.sql(
        "CREATE TABLE later (id int PRIMARY KEY, v text) PARTITION BY RANGE (id)",
        "CREATE TABLE later_1 PARTITION OF later FOR VALUES FROM (0) TO (100)",
        "INSERT INTO later VALUES (1, 'a'), (2, 'b')",
    )
    if pipeline.decoder == "wal2json":
        extractor.wait_for("partitioned_table_found table=public.later")
    # (pgoutput's publication sends the partitions' changes whatever the filter: no restart.)
    pipeline.sql("UPDATE later SET v = 'c' WHERE id = 2", "INSERT INTO later VALUES (3, 'd')")
    pipeline.wait_converged(["later"])
    if pipeline.decoder == "wal2json":
        assert "copy_started tables=public.later" in extractor.output()
