"""Schema changes while running, filters and target mapping, TRUNCATE, TOAST, keys."""

from __future__ import annotations

from devstack.system import wait_until
from harness.pipeline import Pipeline
from shared.naming import Naming
from shared.tables import TableRef


def target_columns(pipeline: Pipeline, table: str, database: str | None = None) -> dict[str, str]:
    maria = pipeline.maria()
    cur = maria.cursor()
    cur.execute(
        "SELECT column_name, column_type FROM information_schema.columns"
        " WHERE table_schema = COALESCE(?, DATABASE()) AND table_name = ?",
        (database, table),
    )
    out = {str(r[0]): str(r[1]) for r in cur.fetchall()}
    maria.close()
    return out


def test_columns_added_while_running_appear_before_their_rows(pipeline: Pipeline) -> None:
    pipeline.sql("CREATE TABLE p (id int PRIMARY KEY, a text)", "INSERT INTO p VALUES (1, 'x')")
    pipeline.start_pipeline()
    pipeline.wait_converged(["p"])
    pipeline.sql(
        "ALTER TABLE p ADD COLUMN b numeric(10,3) DEFAULT 1.5, ADD COLUMN c jsonb",
        "INSERT INTO p VALUES (2, 'y', 2.25, '{\"k\": [1]}')",
        "UPDATE p SET c = '{}' WHERE id = 1",
    )
    pipeline.wait_converged(["p"])
    assert target_columns(pipeline, "p")["b"] == "decimal(10,3)"


def test_type_change_and_dropped_column_never_stall(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE TABLE q (id int PRIMARY KEY, n integer, gone text)",
        "INSERT INTO q VALUES (1, 5, 'g')",
    )
    _, applier = pipeline.start_pipeline()
    pipeline.wait_converged(["q"])
    pipeline.sql(
        "ALTER TABLE q ALTER COLUMN n TYPE numeric(20,4)",
        "INSERT INTO q VALUES (2, 123456789012.3456, 'h')",
        "ALTER TABLE q DROP COLUMN gone",
        "INSERT INTO q VALUES (3, 1.5)",
        "UPDATE q SET n = n + 1",
    )
    wait_until(lambda: "column_type_changed table=q column=n" in applier.output(), "the change")
    pipeline.wait_converged(["q"])  # the dropped column stays in the target, unused
    assert target_columns(pipeline, "q")["n"] == "decimal(20,4)"
    assert "gone" in target_columns(pipeline, "q")
    assert pipeline.queue_depth(pipeline.queue + ".dead") == 0


def test_a_new_table_is_created_in_the_target(pipeline: Pipeline) -> None:
    pipeline.start_pipeline()
    pipeline.sql(
        "CREATE TABLE later (k text PRIMARY KEY, v int)", "INSERT INTO later VALUES ('a', 1)"
    )
    pipeline.wait_converged(["later"])


def test_truncate_in_order_with_other_changes(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE TABLE tr (id int PRIMARY KEY, v text)", "INSERT INTO tr VALUES (1, 'a'), (2, 'b')"
    )
    pipeline.start_pipeline()
    pipeline.sql(
        "BEGIN; INSERT INTO tr VALUES (3, 'c'); TRUNCATE tr; INSERT INTO tr VALUES (4, 'd'); COMMIT"
    )
    pipeline.wait_converged(["tr"])
    maria = pipeline.maria()
    cur = maria.cursor()
    cur.execute("SELECT id FROM tr")
    assert [r[0] for r in cur.fetchall()] == [4]
    maria.close()


def test_unchanged_toasted_value_is_kept(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE TABLE doc (id int PRIMARY KEY, title text, body text)",
        "ALTER TABLE doc ALTER COLUMN body SET STORAGE EXTERNAL",  # out of line, uncompressed
    )
    pipeline.start_pipeline()
    pipeline.sql("INSERT INTO doc SELECT 1, 't', repeat('long body ', 5000)")
    pipeline.sql("UPDATE doc SET title = 'renamed' WHERE id = 1")
    pipeline.wait_converged(["doc"])


def test_keys_composite_changed_and_missing(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE TABLE ck (a int, b text, v int, PRIMARY KEY (a, b))",
        "CREATE TABLE full_id (a int, b text)",
        "ALTER TABLE full_id REPLICA IDENTITY FULL",
        "CREATE TABLE inserts_only (a int, b text)",
    )
    pipeline.start_pipeline()
    pipeline.sql(
        "INSERT INTO ck VALUES (1, 'x', 1), (2, 'y', 2)",
        "UPDATE ck SET b = 'z' WHERE a = 1",
        "UPDATE ck SET a = 20, v = 3 WHERE a = 2",
        "INSERT INTO full_id VALUES (1, 'a'), (1, 'a'), (2, NULL)",
        "UPDATE full_id SET b = 'c' WHERE a = 2",
        "DELETE FROM full_id WHERE ctid = (SELECT min(ctid) FROM full_id WHERE a = 1)",
        "INSERT INTO inserts_only VALUES (1, 'a'), (1, 'a')",
    )
    pipeline.wait_converged(["ck", "full_id", "inserts_only"])


def test_filters_and_target_mapping(pipeline: Pipeline) -> None:
    other = f"{pipeline.name}_sales"
    pipeline.stack.mariadb.sql(
        f"CREATE DATABASE `{other}` CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin;\n"
    )
    pipeline.grant_target(other)
    try:
        pipeline.sql("CREATE SCHEMA sales")
        pipeline.grant_source("sales")
        pipeline.sql(
            "CREATE TABLE sales.orders (id int PRIMARY KEY, total numeric(10,2), note text)",
            "CREATE TABLE public.users (id int PRIMARY KEY, name text, password_hash text)",
            "CREATE TABLE public.tmp_scratch (id int PRIMARY KEY)",
            "CREATE TABLE public.audit (id int PRIMARY KEY)",
            "INSERT INTO sales.orders VALUES (1, 9.99, 'a')",
            "INSERT INTO public.users VALUES (1, 'ada', 'secret')",
        )
        env = {
            "CDC_TABLES": "public.*,sales.orders",
            "CDC_EXCLUDE_TABLES": "public.tmp_*,audit",
            "CDC_EXCLUDE_COLUMNS": "public.users.password_hash",
            "CDC_TARGET_RENAME": "public.users=people",
            "CDC_TARGET_SCHEMAS": f"sales={other}",
        }
        extractor = pipeline.start("extractor", **env)
        pipeline.start("applier", **env)
        extractor.wait_for("streaming slot=")
        pipeline.sql(
            "INSERT INTO sales.orders VALUES (2, 19.99, 'b')",
            "INSERT INTO public.users VALUES (2, 'grace', 'hunter2')",
            "UPDATE public.users SET password_hash = 'changed', name = 'Ada' WHERE id = 1",
            "INSERT INTO public.tmp_scratch VALUES (1)",
            "INSERT INTO public.audit VALUES (1)",
        )
        pipeline.naming = Naming({TableRef("public", "users"): "people"}, {"sales": other})
        wait_until(
            lambda: len(rows(pipeline, f"`{other}`.orders")) == 2, "orders copied and streamed"
        )
        wait_until(lambda: len(rows(pipeline, "people")) == 2, "users")
        assert rows(pipeline, "people") == [(1, "Ada"), (2, "grace")]
        assert "password_hash" not in target_columns(pipeline, "people")
        assert rows(pipeline, f"`{other}`.orders") == [(1, "9.99", "a"), (2, "19.99", "b")]
        for absent in ("tmp_scratch", "audit", "users"):
            assert not target_columns(pipeline, absent)
    finally:
        pipeline.stack.mariadb.sql(f"DROP DATABASE IF EXISTS `{other}`;")


def rows(pipeline: Pipeline, table: str) -> list[tuple[object, ...]]:
    maria = pipeline.maria()
    cur = maria.cursor()
    try:
        cur.execute(f"SELECT * FROM {table} ORDER BY 1")
        return [
            tuple(str(v) if type(v).__name__ == "Decimal" else v for v in r) for r in cur.fetchall()
        ]
    except Exception:  # not there yet
        return []
    finally:
        maria.close()
