"""The pipeline runs with the roles of sql/source-role.sql and sql/target-user.sql, and those
roles hold only what the README says: no superuser, no ownership, DROP only in the target
database (for the schema changes the DDL capture reports)."""

from __future__ import annotations

from devstack.stack import APP_USER
from harness.pipeline import Pipeline


def test_the_source_role_only_logs_in_replicates_and_reads(pipeline: Pipeline) -> None:
    pipeline.sql("CREATE TABLE t (id int PRIMARY KEY)")
    with pipeline.pg() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT rolsuper, rolreplication, rolcreatedb, rolcreaterole, rolcanlogin"
            " FROM pg_roles WHERE rolname = %s",
            (APP_USER,),
        )
        assert cur.fetchone() == (False, True, False, False, True)
        cur.execute(
            "SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = current_database()"
        )
        assert cur.fetchone()[0] != APP_USER
        cur.execute(
            "SELECT has_schema_privilege(%(r)s, 'public', 'CREATE'),"
            " has_table_privilege(%(r)s, 't', 'SELECT'),"
            " has_table_privilege(%(r)s, 't', 'INSERT, UPDATE, DELETE, TRUNCATE')",
            {"r": APP_USER},
        )
        assert cur.fetchone() == (False, True, False)
    # The extractor's environment really uses that role.
    assert f"//{APP_USER}:" in pipeline.env["CDC_SOURCE_DSN"]


def test_the_target_user_holds_only_what_the_applier_needs(pipeline: Pipeline) -> None:
    maria = pipeline.maria()
    try:
        cur = maria.cursor()
        cur.execute(f"SHOW GRANTS FOR '{APP_USER}'@'127.0.0.1'")
        grants = [row[0] for row in cur.fetchall()]
    finally:
        maria.close()
    assert any(g.startswith("GRANT USAGE ON *.*") for g in grants), grants
    mine = [g for g in grants if f"`{pipeline.target_db}`" in g]
    assert mine == [
        f"GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, CREATE TEMPORARY TABLES ON "
        f"`{pipeline.target_db}`.* TO `{APP_USER}`@`127.0.0.1`"
    ], grants
    # Other test databases of a shared stack have their own grants; globally, only USAGE.
    overall = [g for g in grants if " ON *.* " in g]
    assert len(overall) == 1 and overall[0].startswith("GRANT USAGE ON *.*"), grants
    assert not any("GRANT OPTION" in g for g in overall + mine)
    assert f"//{APP_USER}:" in pipeline.env["CDC_TARGET_URL"]
