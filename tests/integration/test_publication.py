"""pgoutput's publication (extractor/publication.py) on the real PostgreSQL: made when the role
may, found when it exists, kept in step with the captured tables, and one line when it cannot."""

from __future__ import annotations

import logging
from contextlib import closing
from typing import Any

import psycopg2
import pytest

from devstack.stack import APP_USER
from extractor.publication import Publication
from harness.pipeline import Pipeline
from shared.errors import SetupError
from shared.tables import TableRef

T1, T2 = TableRef("public", "t1"), TableRef("public", "t2")


def published(pipeline: Pipeline, name: str) -> tuple[bool, list[str]]:
    with closing(pipeline.pg()) as conn, conn.cursor() as cur:
        cur.execute("SELECT pubviaroot FROM pg_publication WHERE pubname = %s", (name,))
        via_root = cur.fetchone()[0]
        cur.execute(
            "SELECT tablename FROM pg_publication_tables WHERE pubname = %s ORDER BY 1", (name,)
        )
        return via_root, [r[0] for r in cur.fetchall()]


def extractor_role(pipeline: Pipeline) -> Any:
    """A connection as the extractor's role (sql/source-role.sql: it owns no table)."""
    pg = pipeline.stack.postgres
    return psycopg2.connect(pg.dsn(pipeline.source_db, APP_USER, pipeline.stack.app_password))


def test_made_for_the_captured_tables_and_kept_in_step(pipeline: Pipeline) -> None:
    pipeline.sql("CREATE TABLE t1 (id int PRIMARY KEY)", "CREATE TABLE t2 (id int PRIMARY KEY)")
    pub = Publication("cdc_made")
    with closing(pipeline.pg()) as conn:  # a role that may (here the owner: the superuser)
        assert pub.ensure(conn, [T1], at_start=True) == []
        assert published(pipeline, "cdc_made") == (False, ["t1"])
        # A table that came into the filter: added, and named to be copied.
        assert pub.ensure(conn, [T1, T2], at_start=False) == [T2]
        assert published(pipeline, "cdc_made") == (False, ["t1", "t2"])
        assert pub.ensure(conn, [T1, T2], at_start=False) == []


def test_a_role_that_may_not_make_it_is_told_the_statement(pipeline: Pipeline) -> None:
    pipeline.sql("CREATE TABLE t1 (id int PRIMARY KEY)")
    with closing(extractor_role(pipeline)) as conn, pytest.raises(SetupError) as info:
        Publication("cdc_none").ensure(conn, [T1], at_start=True)
    line = str(info.value)
    assert "\n" not in line
    assert "publication cdc_none does not exist and role cdc may not create it" in line
    assert "CREATE PUBLICATION cdc_none FOR TABLE public.t1" in line
    assert "sql/publication.sql" in line


def test_missing_tables_are_named_at_start_and_reported_once_while_running(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline.sql(
        "CREATE TABLE t1 (id int PRIMARY KEY)",
        "CREATE TABLE t2 (id int PRIMARY KEY)",
        "CREATE PUBLICATION cdc_some FOR TABLE t1",
    )
    pub = Publication("cdc_some")
    with closing(extractor_role(pipeline)) as conn:
        assert pub.ensure(conn, [T1], at_start=True) == []
        with pytest.raises(SetupError, match=r"lacks the captured tables public\.t2 and role cdc"):
            pub.ensure(conn, [T1, T2], at_start=True)
        with caplog.at_level(logging.ERROR, logger="extractor.publication"):
            assert pub.ensure(conn, [T1, T2], at_start=False) == []
            assert pub.ensure(conn, [T1, T2], at_start=False) == []
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "ALTER PUBLICATION cdc_some ADD TABLE public.t2" in errors[0]


def test_all_tables_needs_nothing_and_via_root_is_warned_of(
    pipeline: Pipeline, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline.sql(
        "CREATE TABLE t1 (id int PRIMARY KEY)",
        "CREATE PUBLICATION cdc_all FOR ALL TABLES",
        "CREATE PUBLICATION cdc_root FOR TABLE t1 WITH (publish_via_partition_root = true)",
    )
    with closing(extractor_role(pipeline)) as conn, caplog.at_level(logging.WARNING):
        assert Publication("cdc_all").ensure(conn, [T1, T2], at_start=True) == []
        assert Publication("cdc_root").ensure(conn, [T1], at_start=True) == []
    assert any(
        "publication_via_root publication=cdc_root" in r.getMessage() for r in caplog.records
    )


def test_a_publication_that_leaves_out_an_action_is_refused(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE TABLE t1 (id int PRIMARY KEY)",
        "CREATE PUBLICATION cdc_part FOR TABLE t1 WITH (publish = 'insert, update, delete')",
    )
    with closing(extractor_role(pipeline)) as conn, pytest.raises(SetupError) as info:
        Publication("cdc_part").ensure(conn, [T1], at_start=True)
    assert "publication cdc_part does not publish every action" in str(info.value)
    assert "SET (publish = 'insert, update, delete, truncate')" in str(info.value)
