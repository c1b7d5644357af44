"""Cases found by review: each once lost or stalled data."""

from __future__ import annotations

import pytest

from devstack.system import wait_until
from harness.pipeline import Pipeline


@pytest.mark.decoders
def test_numbers_of_both_kinds_in_one_batch(pipeline: Pipeline) -> None:
    # Whole values arrive as JSON integers, others as text; one executemany binds both.
    pipeline.sql(
        "CREATE TABLE m (id int PRIMARY KEY, r real, d double precision, n numeric, p numeric(10,2))"
    )
    pipeline.start_pipeline()
    pipeline.sql(
        "INSERT INTO m VALUES (1, 1, 10, 100, 5), (2, 1.5, 10.25, 100.125, 5.5),"
        " (3, -0.1, 1e300, 123456789012345678901234567890, 0)"
    )
    pipeline.wait_converged(["m"])


@pytest.mark.decoders
def test_keyless_table_with_a_real_column(pipeline: Pipeline) -> None:
    pipeline.sql("CREATE TABLE k (a int, r real, s text)", "ALTER TABLE k REPLICA IDENTITY FULL")
    pipeline.start_pipeline()
    pipeline.sql("INSERT INTO k VALUES (1, 0.1, 'a'), (2, 3.3, NULL)")
    pipeline.sql("UPDATE k SET s = 'b' WHERE a = 1")
    pipeline.sql("DELETE FROM k WHERE a = 2")
    pipeline.wait_converged(["k"])


@pytest.mark.decoders
def test_bytea_whatever_the_source_output_setting(pipeline: Pipeline) -> None:
    pipeline.stack.postgres.psql(f"ALTER DATABASE {pipeline.source_db} SET bytea_output = 'escape'")
    pipeline.sql("CREATE TABLE b (id int PRIMARY KEY, v bytea)")
    pipeline.start_pipeline()
    pipeline.sql("INSERT INTO b VALUES (1, 'abcdef'), (2, '\\x00ff00'), (3, ''), (4, NULL)")
    pipeline.wait_converged(["b"])


@pytest.mark.decoders
def test_replica_identity_using_another_unique_index(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE TABLE u (id int PRIMARY KEY, code text NOT NULL UNIQUE, v int)",
        "ALTER TABLE u REPLICA IDENTITY USING INDEX u_code_key",
    )
    pipeline.start_pipeline()
    pipeline.sql("INSERT INTO u VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 3)")
    pipeline.sql("UPDATE u SET v = 10 WHERE id = 1")
    pipeline.sql("UPDATE u SET id = 20 WHERE id = 2")
    pipeline.sql("DELETE FROM u WHERE id = 3")
    pipeline.wait_converged(["u"])


def test_many_long_varchar_columns_fit_a_mariadb_row(pipeline: Pipeline) -> None:
    cols = ", ".join(f"c{i} varchar(1000)" for i in range(20))
    pipeline.sql(f"CREATE TABLE w (id int PRIMARY KEY, {cols})")
    pipeline.start_pipeline()
    values = ", ".join(f"repeat('{chr(97 + i)}', 900)" for i in range(20))
    pipeline.sql(f"INSERT INTO w VALUES (1, {values})")
    pipeline.wait_converged(["w"])


def test_returned_message_does_not_move_the_slot(pipeline: Pipeline) -> None:
    pipeline.sql("CREATE TABLE r (id int PRIMARY KEY)")
    extractor, applier = pipeline.start_pipeline()
    pipeline.sql("INSERT INTO r VALUES (1)")
    pipeline.wait_converged(["r"])
    with pipeline.channel() as ch:
        ch.queue_unbind(pipeline.queue, "cdc", routing_key=pipeline.name)
    pipeline.sql("INSERT INTO r VALUES (2)")
    # RabbitMQ returns it (mandatory): the session fails without confirming it, reconnects,
    # binds the queue again, and PostgreSQL sends the transaction once more.
    wait_until(lambda: "returned message" in extractor.output(), "the return")
    pipeline.sql("INSERT INTO r VALUES (3)")
    pipeline.wait_converged(["r"])
    assert applier.alive() and extractor.alive()
