"""The bulk path (applier/bulk.py): large groups through LOAD DATA LOCAL INFILE into a staging
table, then one upsert or one delete per group, compared row by row with the source.

The applier runs with ``target.bulk_rows`` at 2, so every group of two rows or more takes
that path; the counter ``cdc_applier_bulk_rows_total`` shows it did.
"""

from __future__ import annotations

import pytest

from devstack.system import free_port, wait_until
from harness.pipeline import Pipeline, Proc
from tests.support.nasty import NASTY_TABLES, NASTY_TEXT, bulk_rows, copy_in, nasty_rows
from tests.support.type_rows import EDGE_ROWS, OFFSET_ROWS, TYPES_TABLE


def start(pipeline: Pipeline, port: int) -> Proc:
    applier = pipeline.start("applier", CDC_TARGET_BULK_ROWS="2", CDC_METRICS_PORT=str(port))
    extractor = pipeline.start("extractor")
    extractor.wait_for("streaming slot=")
    applier.wait_for("consuming queue=")
    return applier


@pytest.mark.decoders
def test_large_groups_go_through_load_data_exactly(pipeline: Pipeline) -> None:
    pipeline.sql(TYPES_TABLE, NASTY_TABLES)
    port = free_port()
    applier = start(pipeline, port)

    nasty = nasty_rows(1, 400)
    insert = "INSERT INTO nasty VALUES (" + ", ".join(["%s"] * 12) + ")"
    types_rows = [r for r in EDGE_ROWS + OFFSET_ROWS if r]
    type_columns = sorted({c for r in types_rows for c in r})
    copy_in(
        pipeline,
        [
            (insert, nasty),
            (
                f"INSERT INTO types ({', '.join(type_columns)}) VALUES"
                f" ({', '.join(['%s'] * len(type_columns))})",
                [tuple(r.get(c) for c in type_columns) for r in types_rows],
            ),
            (
                "INSERT INTO pairs VALUES (%s, %s, %s)",
                [(t, i, t) for i, t in enumerate(NASTY_TEXT)],
            ),
        ],
    )
    pipeline.wait_converged(["nasty", "types", "pairs"])
    for table in ("nasty", "types", "pairs"):
        assert bulk_rows(port, table) > 0, table

    # Updates (upserts of whole rows, one group), then deletes by key (one DELETE ... JOIN),
    # each in one transaction; a row updated twice in one group ends as its last update.
    pipeline.sql(
        "UPDATE nasty SET t = coalesce(t, '') || E'\\\\N\\t', b = b || '\\x00'::bytea,"
        " n = -n, ok = NOT ok WHERE id % 2 = 0",
        "UPDATE nasty SET v = 'second' WHERE id % 4 = 0",
        "UPDATE pairs SET v = v || E'\\n'",
    )
    before = bulk_rows(port, "nasty")
    pipeline.sql("DELETE FROM nasty WHERE id % 3 = 0", "DELETE FROM pairs WHERE b % 2 = 0")
    pipeline.wait_converged(["nasty", "types", "pairs"])
    wait_until(lambda: bulk_rows(port, "nasty") >= before + 133, "the deletes by the bulk path")
    assert pipeline.queue_depth(pipeline.queue + ".dead") == 0
    assert "dead_lettered" not in applier.output()


def test_a_value_the_load_would_change_is_refused_not_stored(pipeline: Pipeline) -> None:
    """LOAD DATA LOCAL stores a value it cannot take changed, with only a warning: the bulk
    path refuses it as executemany's error would, and the rows beside it are parked with it."""
    pipeline.sql("CREATE TABLE dates (id int PRIMARY KEY, d date, t text)")
    port = free_port()
    applier = start(pipeline, port)
    rows = [(i, "2024-01-01", "\\N") for i in range(50)] + [(50, "infinity", "x")]
    copy_in(pipeline, [("INSERT INTO dates VALUES (%s, %s, %s)", rows)])
    dead = pipeline.queue + ".dead"
    wait_until(lambda: pipeline.queue_depth(dead) == 1, "the dead letter")
    with pipeline.channel() as ch:
        _, props, _ = ch.basic_get(dead, auto_ack=True)
    assert props.headers["x-cdc-error-type"] == "RowRejected"
    assert "LOAD DATA" in props.headers["x-cdc-error"]
    assert "id=50" in props.headers["x-cdc-error"], props.headers["x-cdc-error"]
    maria = pipeline.maria()
    try:
        cur = maria.cursor()
        cur.execute("SELECT COUNT(*) FROM dates")
        assert cur.fetchone() == (0,)
    finally:
        maria.close()
    # The next transaction is applied, by the bulk path.
    pipeline.sql(
        "DELETE FROM dates",
        "INSERT INTO dates SELECT g, '2024-01-02', '' FROM generate_series(1, 10) g",
    )
    pipeline.wait_converged(["dates"])
    assert bulk_rows(port, "dates") >= 10
    assert applier.alive()


def test_a_server_without_local_infile_gets_executemany(pipeline: Pipeline) -> None:
    """``local_infile`` off on the server: the applier says so once and applies every group
    by executemany, nothing parked."""
    admin = pipeline.maria()
    try:
        admin.cursor().execute("SET GLOBAL local_infile = OFF")
        pipeline.sql("CREATE TABLE plain (id int PRIMARY KEY, t text)")
        port = free_port()
        applier = start(pipeline, port)
        applier.wait_for("bulk_path_off reason=local_infile_off")
        copy_in(
            pipeline,
            [("INSERT INTO plain VALUES (%s, %s)", [(i, NASTY_TEXT[i % 16]) for i in range(300)])],
        )
        pipeline.wait_converged(["plain"])
        assert bulk_rows(port, "plain") == 0
        assert pipeline.queue_depth(pipeline.queue + ".dead") == 0
    finally:
        admin.cursor().execute("SET GLOBAL local_infile = ON")
        admin.close()
