"""What the extractor reads from PostgreSQL's catalog, on a real server: the captured tables,
the partition layout, the tables whose rows PostgreSQL cannot identify, how a copy reads."""

from __future__ import annotations

import psycopg2

from extractor.catalog import find_unidentified
from extractor.partitions import load_layout
from extractor.snapshot import _read_as_text
from harness.pipeline import Pipeline
from shared.postgres import captured_tables, rows_of
from shared.tables import TableFilter, TableRef


def ref(name: str) -> TableRef:
    schema, _, table = name.rpartition(".")
    return TableRef(schema or "public", table)


def test_catalog_of_partitions_inheritance_and_identities(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE SCHEMA other",
        "CREATE TABLE m (id int, k int, PRIMARY KEY (id, k)) PARTITION BY RANGE (k)",
        "CREATE TABLE m1 PARTITION OF m FOR VALUES FROM (0) TO (10) PARTITION BY LIST (id)",
        "CREATE TABLE m1a PARTITION OF m1 DEFAULT",
        "CREATE TABLE other.m2 PARTITION OF m FOR VALUES FROM (10) TO (20)",
        "ALTER TABLE other.m2 REPLICA IDENTITY NOTHING",
        "CREATE TABLE nokey (id int, v text) PARTITION BY LIST (id)",
        "CREATE TABLE nokey1 PARTITION OF nokey FOR VALUES IN (1)",
        "ALTER TABLE nokey1 ADD PRIMARY KEY (id)",
        "CREATE TABLE nokey2 PARTITION OF nokey FOR VALUES IN (2)",
        "ALTER TABLE nokey2 REPLICA IDENTITY FULL",
        "CREATE TABLE parent (id int PRIMARY KEY)",
        "CREATE TABLE child (x int) INHERITS (parent)",
        "ALTER TABLE child ADD PRIMARY KEY (id)",
        "CREATE TABLE dk (id int PRIMARY KEY DEFERRABLE INITIALLY DEFERRED)",
        "CREATE TABLE ri (id int NOT NULL)",
        "CREATE UNIQUE INDEX ri_id ON ri (id)",
        "ALTER TABLE ri REPLICA IDENTITY USING INDEX ri_id",
        "DROP INDEX ri_id",
        "INSERT INTO m VALUES (1, 1), (2, 15)",
        "INSERT INTO parent VALUES (1)",
        "INSERT INTO child VALUES (2, 0)",
    )
    conn = psycopg2.connect(pipeline.env["CDC_SOURCE_DSN"])  # the extractor's own role
    conn.autocommit = True
    try:
        tables = captured_tables(conn, TableFilter())
        # Roots and inheritance children; never a partition, at any level, in any schema.
        assert tables == [ref(t) for t in ("child", "dk", "m", "nokey", "parent", "ri")]
        layout = load_layout(conn)
        assert layout.roots == {ref("m"): ["id", "k"], ref("nokey"): []}
        assert layout.partitions == {
            ref("m1"): ref("m"),
            ref("m1a"): ref("m"),
            ref("other.m2"): ref("m"),
            ref("nokey1"): ref("nokey"),
            ref("nokey2"): ref("nokey"),
        }
        assert layout.leaves_of(ref("m")) == [ref("other.m2"), ref("m1a")]

        found = {
            (str(u.table), str(u.relation)): u.reason
            for u in find_unidentified(conn, tables, layout)
        }
        assert set(found) == {
            ("public.dk", "public.dk"),
            ("public.ri", "public.ri"),
            ("public.m", "other.m2"),
            ("public.nokey", "public.nokey1"),
        }
        assert "DEFERRABLE" in found["public.dk", "public.dk"]
        assert "dropped" in found["public.ri", "public.ri"]
        assert "NOTHING" in found["public.m", "other.m2"]
        assert "has no primary key" in found["public.nokey", "public.nokey1"]

        # A copy reads a root with its partitions, an inheritance parent without its child.
        with conn.cursor() as cur:
            for table, count in (("m", 2), ("parent", 1), ("child", 1)):
                cur.execute(
                    psycopg2.sql.SQL("SELECT count(*) FROM {}").format(rows_of(conn, ref(table)))
                )
                row = cur.fetchone()
                assert row is not None and row[0] == count, table
    finally:
        conn.close()


def test_a_copy_reads_ints_and_bools_as_values_every_other_type_as_its_text(
    pipeline: Pipeline,
) -> None:
    """As a decoder sends them (the type registry's rule): what the copier's connection gives."""
    conn = psycopg2.connect(pipeline.env["CDC_SOURCE_DSN"])
    try:
        _read_as_text(conn)
        with conn.cursor() as cur:
            cur.execute(
                "SELECT 1::smallint, 2::integer, 3::bigint, 4::oid, true, 1.50::numeric,"
                " 0.1::real, 'a'::char(3), '\\x00ff'::bytea, '2024-01-01'::date, '{1,2}'::int[],"
                " '{t}'::boolean[]"
            )
            row = cur.fetchone()
        assert row == (
            1,
            2,
            3,
            4,
            True,
            "1.50",
            "0.1",
            "a  ",
            "\\x00ff",
            "2024-01-01",
            "{1,2}",
            "{t}",
        )
        assert [type(v) for v in row[:5]] == [int, int, int, int, bool]
    finally:
        conn.close()
