"""What only the choice of decoder brings: pgoutput's publication kept in step by the extractor,
and a pipeline switched from one decoder to the other (README: Choosing the decoder)."""

from __future__ import annotations

import subprocess
import sys
from contextlib import closing

import mariadb
import psycopg2
import pytest

from devstack.stack import APP_USER
from devstack.system import wait_until
from harness.pipeline import ROOT, Pipeline


@pytest.mark.parametrize("decoder", ["pgoutput"], indirect=True)
def test_the_extractor_makes_its_publication_and_keeps_it_in_step(pipeline: Pipeline) -> None:
    """With a role that owns the tables, the extractor makes the publication for the captured
    tables, adds a table that comes into the filter while it runs, and copies it: the rows
    written before it joined the publication were never streamed."""
    pub = f"cdc_{pipeline.name}"
    pipeline.sql(
        f"DROP PUBLICATION {pub}",  # the harness's FOR ALL TABLES one
        f"GRANT CREATE ON DATABASE {pipeline.name} TO {APP_USER}",
        "CREATE TABLE t1 (id int PRIMARY KEY, v text)",
        f"ALTER TABLE t1 OWNER TO {APP_USER}",
        "INSERT INTO t1 SELECT g, 'a' || g FROM generate_series(1, 50) g",
    )
    extractor, _ = pipeline.start_pipeline()
    assert f"publication_created publication={pub} tables=1" in extractor.output()
    pipeline.sql("UPDATE t1 SET v = 'changed' WHERE id <= 5")
    pipeline.wait_converged(["t1"])
    # A new table the filter (every table) captures: not in the publication yet.
    pipeline.sql(
        "CREATE TABLE t2 (id int PRIMARY KEY, v text)",
        f"ALTER TABLE t2 OWNER TO {APP_USER}",
        "INSERT INTO t2 SELECT g, 'b' || g FROM generate_series(1, 20) g",
    )
    extractor.wait_for(f"publication_tables_added publication={pub} tables=public.t2", 60)
    pipeline.sql(
        "INSERT INTO t2 VALUES (21, 'after'), (22, 'after')", "DELETE FROM t2 WHERE id = 1"
    )
    pipeline.wait_converged(["t1", "t2"])


def test_switching_decoder_drops_the_slot_and_copies_again(pipeline: Pipeline) -> None:
    """A slot's plugin is fixed when it is made: switching is a new slot (made after the
    publication), whose start copies every table again; nothing is lost or doubled."""
    pipeline.sql(
        "CREATE TABLE t (id int PRIMARY KEY, v text, n numeric)",
        "INSERT INTO t SELECT g, 'v' || g, g / 3.0 FROM generate_series(1, 200) g",
    )
    extractor, applier = pipeline.start_pipeline()
    pipeline.sql("UPDATE t SET v = 'wal2json' WHERE id <= 10")
    pipeline.wait_converged(["t"])
    assert extractor.stop() == 0
    pipeline.sql("UPDATE t SET v = 'between' WHERE id BETWEEN 11 AND 20")
    refused = pipeline.start("extractor", CDC_SOURCE_DECODER="pgoutput")
    assert refused.popen.wait(timeout=60) == 1
    assert (
        f"slot {pipeline.name} uses the plugin 'wal2json', not pgoutput (source.decoder): "
        "set source.decoder to wal2json"
    ) in refused.output()
    dropped = subprocess.run(
        [sys.executable, "-m", "extractor", "drop-slot", "--yes"],
        env=pipeline.env, cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert dropped.returncode == 0, dropped.stdout + dropped.stderr
    pipeline.publish()  # sql/publication.sql, as a superuser
    extractor = pipeline.start("extractor", CDC_SOURCE_DECODER="pgoutput")
    extractor.wait_for("streaming slot=")
    assert "publication=" in extractor.output()
    pipeline.sql(
        "UPDATE t SET v = 'pgoutput', n = 0.5 WHERE id = 30",
        "DELETE FROM t WHERE id > 190",
    )
    pipeline.wait_converged(["t"])
    assert applier.alive()


@pytest.mark.parametrize("decoder", ["pgoutput"], indirect=True)
def test_generated_columns_pgoutput_does_not_send_are_named(pipeline: Pipeline) -> None:
    """pgoutput before PostgreSQL 18 leaves generated columns out of its changes: named at
    start with the fix, and left out of the capture the pipeline converges without them."""
    pipeline.sql(
        "CREATE TABLE gen (id int PRIMARY KEY, a int, b int GENERATED ALWAYS AS (a * 2) STORED)",
        "INSERT INTO gen (id, a) SELECT g, g FROM generate_series(1, 20) g",
    )
    # No copy yet: the first one is made by the run that leaves the column out.
    extractor = pipeline.start("extractor", CDC_SNAPSHOT="never")
    extractor.wait_for("streaming slot=")
    assert (
        "generated_columns_not_streamed table=public.gen columns=b: pgoutput before "
        "PostgreSQL 18 does not send generated columns"
    ) in extractor.output()
    assert "source.exclude_columns=public.gen.b" in extractor.output()
    assert extractor.stop() == 0
    extractor = pipeline.start("extractor", CDC_EXCLUDE_COLUMNS="public.gen.b")
    applier = pipeline.start("applier", CDC_EXCLUDE_COLUMNS="public.gen.b")
    extractor.wait_for("streaming slot=")
    assert "generated_columns_not_streamed" not in extractor.output()
    pipeline.sql(
        "UPDATE gen SET a = a + 100 WHERE id <= 5", "INSERT INTO gen (id, a) VALUES (21, 7)"
    )

    expected = [(i, i + 100 if i <= 5 else i) for i in range(1, 21)] + [(21, 7)]

    def streamed() -> bool:
        with closing(pipeline.maria()) as maria:
            cur = maria.cursor()
            try:
                cur.execute("SELECT * FROM gen ORDER BY id")
            except mariadb.Error:  # not created yet
                return False
            rows: list[tuple[int, int]] = cur.fetchall()
            return rows == expected

    wait_until(streamed, "the rows without their generated column")
    assert applier.alive()


@pytest.mark.parametrize("decoder", ["pgoutput"], indirect=True)
def test_a_published_table_without_identity_refuses_updates(pipeline: Pipeline) -> None:
    """Where wal2json silently sends nothing for the updates and deletes of a table without a
    replica identity, a publication makes PostgreSQL refuse them: named at start, as such."""
    pipeline.sql(
        "CREATE TABLE nokey (a int, b text)",
        "INSERT INTO nokey VALUES (1, 'a')",
        "CREATE TABLE keyed (id int PRIMARY KEY, v text)",
    )
    extractor, _ = pipeline.start_pipeline()
    assert (
        "table_without_identity table=public.nokey: no primary key and no replica identity: "
        "PostgreSQL refuses its updates and deletes"
    ) in extractor.output()
    with pytest.raises(psycopg2.Error, match="does not have a replica identity"):
        pipeline.sql("UPDATE nokey SET b = 'x'")
    pipeline.sql(
        "ALTER TABLE nokey REPLICA IDENTITY FULL",
        "UPDATE nokey SET b = 'x'",
        "INSERT INTO keyed VALUES (1, 'k')",
    )
    pipeline.wait_converged(["nokey", "keyed"])


@pytest.mark.decoders
def test_one_truncate_of_several_tables_among_other_changes(pipeline: Pipeline) -> None:
    """pgoutput sends one Truncate message for all the tables of a TRUNCATE; wal2json one record
    per table: the same changes either way."""
    pipeline.sql(
        "CREATE TABLE ta (id serial PRIMARY KEY, v text)",
        "CREATE TABLE tb (id int PRIMARY KEY, v text)",
        "INSERT INTO ta (v) SELECT 'a' FROM generate_series(1, 30)",
        "INSERT INTO tb SELECT g, 'b' FROM generate_series(1, 30) g",
    )
    pipeline.start_pipeline()
    pipeline.sql(
        "BEGIN; INSERT INTO ta (v) VALUES ('before'); TRUNCATE ta, tb RESTART IDENTITY;"
        " INSERT INTO ta (v) VALUES ('after'); INSERT INTO tb VALUES (1, 'after'); COMMIT",
        "TRUNCATE tb",
        "INSERT INTO tb VALUES (2, 'last')",
    )
    pipeline.wait_converged(["ta", "tb"])
