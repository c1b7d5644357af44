"""Ways the target once silently differed from the source, or stalled, on the applier's side:
TOASTed values lost when a row moves, target tables with unique keys the source lacks, two
source tables sharing one target table, rows too large for one MariaDB packet."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from typing import Any

import pika

from applier.consumer import REPLAY_HEADER
from devstack.system import free_port, wait_until
from harness.pipeline import Pipeline

# Out of line and uncompressed (over 2 kB each, distinct per row): wal2json leaves such a value
# out of an UPDATE's new row when it did not change.
BODY = "repeat(md5({}::text), 100)"


def toasted(table: str) -> str:
    return f"ALTER TABLE {table} ALTER COLUMN body SET STORAGE EXTERNAL"


def transactions(pipeline: Pipeline, *statements: str) -> None:
    """Each statement in a transaction of its own (``Pipeline.sql`` makes them one)."""
    for statement in statements:
        pipeline.sql(statement)


def dead_count(pipeline: Pipeline) -> int:
    return pipeline.queue_depth(pipeline.queue + ".dead")


def peek(pipeline: Pipeline, queue: str) -> list[tuple[dict[str, Any], bytes]]:
    """The headers and body of every message in a queue; they stay there (unacked, they go
    back when the connection closes)."""
    out = []
    with pipeline.channel() as ch:
        while True:
            method, props, body = ch.basic_get(queue, auto_ack=False)
            if method is None:
                break
            out.append((dict(props.headers or {}), body))
    return out


# ---------------------------------------------------------------- A: TOAST across row moves


def test_toasted_values_survive_key_changes_and_full_identity_updates(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE TABLE doc (id int PRIMARY KEY, title text, body text)",
        toasted("doc"),
        "CREATE TABLE ck (a int, b text, title text, body text, PRIMARY KEY (a, b))",
        toasted("ck"),
        "CREATE TABLE nokey (a int, b text, body text)",
        toasted("nokey"),
        "ALTER TABLE nokey REPLICA IDENTITY FULL",
        "CREATE TABLE ui (id int PRIMARY KEY, code text NOT NULL UNIQUE, v int, body text)",
        toasted("ui"),
        "ALTER TABLE ui REPLICA IDENTITY USING INDEX ui_code_key",
        f"INSERT INTO doc SELECT g, 't', {BODY.format('g')} FROM generate_series(1, 40) g",
        f"INSERT INTO ck SELECT g, 'k', 't', {BODY.format('g')} FROM generate_series(1, 10) g",
        f"INSERT INTO nokey SELECT g, 'x', {BODY.format('g')} FROM generate_series(1, 10) g",
        f"INSERT INTO nokey VALUES (9, 'x', {BODY.format(9)})",  # two equal rows
        "INSERT INTO ui SELECT g, 'c' || g, g, "
        + BODY.format("g")
        + " FROM generate_series(1, 10) g",
    )
    tables = ["doc", "ck", "nokey", "ui"]
    _, applier = pipeline.start_pipeline()
    pipeline.wait_converged(tables)

    def scenarios(base: int) -> None:
        """Each touches rows of its own; ``base`` keeps two rounds apart."""
        d = base  # doc rows base+1 .. base+19 exist
        transactions(
            pipeline,
            # A key change of a row whose TOASTed column is unchanged.
            f"UPDATE doc SET id = {d + 100} WHERE id = {d + 1}",
            # The same row several times in one transaction, moving twice.
            f"BEGIN; UPDATE doc SET id = {d + 102} WHERE id = {d + 2};"
            f" UPDATE doc SET title = 'again' WHERE id = {d + 102};"
            f" UPDATE doc SET id = {d + 103} WHERE id = {d + 102}; COMMIT",
            # ... and over several transactions.
            f"UPDATE doc SET id = {d + 104} WHERE id = {d + 3}",
            f"UPDATE doc SET title = 'later' WHERE id = {d + 104}",
            f"UPDATE doc SET id = {d + 105} WHERE id = {d + 104}",
            # A key change, then a delete of the new key.
            f"BEGIN; UPDATE doc SET id = {d + 106} WHERE id = {d + 4};"
            f" DELETE FROM doc WHERE id = {d + 106}; COMMIT",
            # Onto a key another row freed earlier in the same transaction: moved away ...
            f"BEGIN; UPDATE doc SET id = {d + 107} WHERE id = {d + 5};"
            f" UPDATE doc SET id = {d + 5} WHERE id = {d + 6}; COMMIT",
            # ... or deleted.
            f"BEGIN; DELETE FROM doc WHERE id = {d + 7};"
            f" UPDATE doc SET id = {d + 7}, title = 'took' WHERE id = {d + 8}; COMMIT",
            # Two rows trading keys through a third.
            f"BEGIN; UPDATE doc SET id = {d + 108} WHERE id = {d + 9};"
            f" UPDATE doc SET id = {d + 9} WHERE id = {d + 10};"
            f" UPDATE doc SET id = {d + 10} WHERE id = {d + 108}; COMMIT",
        )
        c = base // 4  # ck, nokey and ui rows c+1 .. c+3
        transactions(
            pipeline,
            f"UPDATE ck SET b = 'moved{base}' WHERE a = {c + 1}",
            f"UPDATE ck SET a = {c + 100}, title = 'both' WHERE a = {c + 2}",
            f"UPDATE nokey SET b = 'y{base}' WHERE a = {c + 1}",
            f"BEGIN; UPDATE nokey SET b = 'z{base}' WHERE a = {c + 2};"
            f" UPDATE nokey SET a = {c + 200} WHERE a = {c + 2}; COMMIT",
            f"UPDATE ui SET code = 'moved{base}' WHERE id = {c + 1}",
            f"UPDATE ui SET id = {c + 300} WHERE id = {c + 2}",
            f"UPDATE ui SET v = -1 WHERE id = {c + 3}",
        )

    # Applied while the applier runs ...
    scenarios(0)
    pipeline.wait_converged(tables)
    # ... and all in one batch: the applier stopped while they were written.
    assert applier.stop() == 0
    scenarios(20)
    pipeline.sql(
        # One of two equal rows of a table without a key.
        "UPDATE nokey SET b = 'one of two' WHERE ctid = (SELECT min(ctid) FROM nokey WHERE a = 9)"
    )
    pipeline.start("applier").wait_for("consuming queue=")
    pipeline.wait_converged(tables)
    assert dead_count(pipeline) == 0


def test_key_changes_applied_again_after_a_crash_keep_their_toasted_values(
    pipeline: Pipeline,
) -> None:
    rows = 5000
    pipeline.sql(
        "CREATE TABLE doc (id int PRIMARY KEY, title text, body text)",
        toasted("doc"),
        f"INSERT INTO doc SELECT g, 't', {BODY.format('g')} FROM generate_series(1, {rows}) g",
    )
    env = {"CDC_TARGET_MAX_BATCH_CHANGES": "100"}  # many commits: a kill falls between two
    applier = pipeline.start("applier", **env)
    pipeline.start("extractor").wait_for("streaming slot=")
    pipeline.wait_converged(["doc"])
    # One transaction of key changes (several chunks), then more moves of the same rows.
    pipeline.sql(f"UPDATE doc SET id = id + {rows}")
    pipeline.sql(f"UPDATE doc SET id = id - {rows} WHERE id % 2 = 0")

    def moved() -> int:
        maria = pipeline.maria()
        cur = maria.cursor()
        cur.execute(f"SELECT count(*) FROM doc WHERE id > {rows}")
        n = int(cur.fetchone()[0])
        maria.close()
        return n

    wait_until(lambda: moved() > 0, "the first moves applied", interval=0.02)
    applier.kill()  # kill -9, in the middle of the moves (or just after them)
    pipeline.start("applier", **env)
    pipeline.wait_converged(["doc"], timeout=180)
    assert dead_count(pipeline) == 0


def test_a_replayed_key_change_never_crashes_nor_moves_another_row(pipeline: Pipeline) -> None:
    pipeline.sql("CREATE TABLE doc (id int PRIMARY KEY, title text, body text)", toasted("doc"))
    extractor = pipeline.start("extractor")
    extractor.wait_for("streaming slot=")
    pipeline.sql(f"INSERT INTO doc VALUES (1, 't', {BODY.format(1)})")
    pipeline.sql("UPDATE doc SET id = 2 WHERE id = 1")
    updates: list[bytes] = []

    def key_change_queued() -> bool:
        updates[:] = [b for _, b in peek(pipeline, pipeline.queue) if b'"update"' in b]
        return bool(updates)

    wait_until(key_change_queued, "the key change in the queue")
    key_change = updates[0]
    applier = pipeline.start("applier")
    applier.wait_for("consuming queue=")
    pipeline.sql(f"INSERT INTO doc VALUES (1, 'new', {BODY.format(7)})")
    pipeline.wait_converged(["doc"])

    # Sent back as `applier dlq replay` does: applied as it is, out of order. Moving row 1
    # onto key 2 again would overwrite row 2 or lose row 1: refused, parked again.
    with pipeline.channel() as ch:
        ch.confirm_delivery()
        ch.basic_publish(
            "cdc",
            pipeline.name,
            key_change,
            properties=pika.BasicProperties(
                delivery_mode=2, message_id="replayed", headers={REPLAY_HEADER: 1}
            ),
            mandatory=True,
        )
    wait_until(lambda: "replaying message_id=replayed" in applier.output(), "the replay")
    wait_until(lambda: dead_count(pipeline) == 1, "the replay parked again")
    pipeline.sql("UPDATE doc SET title = 'after' WHERE id = 2")
    pipeline.wait_converged(["doc"])
    assert applier.alive()


def refused_metric(port: int) -> list[str]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return [line for line in text.splitlines() if line.startswith("cdc_applier_refused_tables{")]


def replay_all(pipeline: Pipeline) -> None:
    subprocess.run(
        [sys.executable, "-m", "applier", "dlq", "replay", "--all"],
        env=pipeline.env,
        capture_output=True,
        text=True,
        check=True,
    )


# ---------------------------------------------------------------- B: unique keys the source lacks


def test_a_target_unique_index_the_source_lacks_is_refused_never_overwritten(
    pipeline: Pipeline,
) -> None:
    pipeline.sql(
        "CREATE TABLE acct (id int PRIMARY KEY, email text, name text)",
        "CREATE TABLE ev (a int, b text)",
        "ALTER TABLE ev REPLICA IDENTITY FULL",
        "CREATE TABLE fine (id int PRIMARY KEY, v text)",
    )
    # Made by hand in the target, each with a unique index the source does not have.
    maria = pipeline.maria()
    cur = maria.cursor()
    cur.execute(
        "CREATE TABLE acct (id int PRIMARY KEY, email varchar(100), name text,"
        " UNIQUE KEY uq_email (email))"
    )
    cur.execute("CREATE TABLE ev (a int, b text, UNIQUE KEY uq_a (a))")
    port = free_port()
    applier = pipeline.start("applier", CDC_METRICS_PORT=str(port))
    # No initial copy: its one transaction of every table would be parked with them.
    pipeline.start("extractor", CDC_SNAPSHOT="never").wait_for("streaming slot=")
    applier.wait_for("consuming queue=")
    transactions(
        pipeline,
        "INSERT INTO acct VALUES (1, 'same@example.com', 'Ada')",
        # The same e-mail: its upsert would overwrite row 1 through uq_email.
        "INSERT INTO acct VALUES (2, 'same@example.com', 'Bob')",
        "INSERT INTO ev VALUES (1, 'x'), (1, 'x')",  # no key: equal rows are allowed
        "INSERT INTO fine VALUES (1, 'goes on')",
    )
    wait_until(lambda: dead_count(pipeline) == 3, "the refused messages parked")
    pipeline.wait_converged(["fine"])
    reasons = [h["x-cdc-error"] for h, _ in peek(pipeline, pipeline.queue + ".dead")]
    assert sum("target table acct has the unique index uq_email" in r for r in reasons) == 2
    assert all("DROP INDEX `uq_email`" in r for r in reasons if "acct" in r)
    assert any(
        "target table ev has the unique index uq_a" in r and "no primary key" in r for r in reasons
    )
    assert "ERROR applier.schema table_refused table=acct source=public.acct" in applier.output()
    assert sorted(refused_metric(port)) == [
        'cdc_applier_refused_tables{reason="unique_index",source="public.acct",table="acct"} 1.0',
        'cdc_applier_refused_tables{reason="unique_index",source="public.ev",table="ev"} 1.0',
    ]
    cur.execute("SELECT count(*) FROM acct")
    assert cur.fetchone()[0] == 0  # nothing written, nothing overwritten

    # The fix the reason names, then the parked messages sent back.
    cur.execute("ALTER TABLE acct DROP INDEX uq_email")
    cur.execute("ALTER TABLE ev DROP INDEX uq_a")
    maria.close()
    replay_all(pipeline)
    pipeline.wait_converged(["acct", "ev", "fine"])
    assert dead_count(pipeline) == 0
    wait_until(lambda: refused_metric(port) == [], "the refusals lifted")
    assert applier.alive()


def test_a_source_table_that_gains_a_primary_key_gives_its_target_one(
    pipeline: Pipeline,
) -> None:
    # As pg_restore and pgbench -i do: the table is filled first, its key added after.
    pipeline.sql("CREATE TABLE late (id int, name text, n int)")
    pipeline.start_pipeline()
    pipeline.sql("INSERT INTO late SELECT g, 'n' || g, g FROM generate_series(1, 50) g")
    pipeline.wait_converged(["late"])
    transactions(
        pipeline,
        "ALTER TABLE late ADD PRIMARY KEY (id)",
        "UPDATE late SET n = n * 10 WHERE id <= 10",
        "UPDATE late SET id = 100 WHERE id = 11",
        "DELETE FROM late WHERE id = 12",
        "INSERT INTO late VALUES (51, 'new', 0)",
    )
    pipeline.wait_converged(["late"])
    assert dead_count(pipeline) == 0


# ---------------------------------------------------------------- C: one target, two sources


def test_the_extractor_refuses_two_captured_tables_with_one_target(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE SCHEMA s",
        "CREATE TABLE s.t (id int PRIMARY KEY)",
        'CREATE TABLE public."s__t" (id int PRIMARY KEY)',
        "CREATE TABLE public.a (id int PRIMARY KEY)",
        "CREATE TABLE public.b (id int PRIMARY KEY)",
    )
    pipeline.grant_source("s")
    for env, line in (
        ({}, "source tables public.s__t and s.t would both go to target table s__t"),
        (
            {"CDC_TABLES": "public.a,public.b", "CDC_TARGET_RENAME": "public.a=b"},
            "source tables public.a and public.b would both go to target table b",
        ),
    ):
        extractor = pipeline.start("extractor", **env)
        assert extractor.popen.wait(timeout=60) == 1
        assert line in extractor.output()


def test_the_applier_refuses_a_second_source_table_for_one_target(pipeline: Pipeline) -> None:
    pipeline.sql('CREATE TABLE public."s__t" (id int PRIMARY KEY, w text)')
    _, applier = pipeline.start_pipeline()
    pipeline.sql("INSERT INTO s__t VALUES (1, 'first'), (2, 'first')")
    pipeline.wait_converged(["s__t"])
    # Created after the extractor's start-up check: only the applier sees the clash.
    transactions(
        pipeline,
        "CREATE SCHEMA s",
        "CREATE TABLE s.t (id int PRIMARY KEY, v text)",
        "INSERT INTO s.t VALUES (1, 'second'), (3, 'second')",
        "TRUNCATE s.t",
    )
    transactions(
        pipeline, "INSERT INTO s__t VALUES (3, 'first goes on')", "DELETE FROM s__t WHERE id = 2"
    )
    wait_until(lambda: dead_count(pipeline) == 2, "the second table's changes parked")
    pipeline.wait_converged(["s__t"])
    reasons = [h["x-cdc-error"] for h, _ in peek(pipeline, pipeline.queue + ".dead")]
    assert all(
        "target table s__t takes the changes of public.s__t; s.t would share it" in r
        for r in reasons
    ), reasons
    assert "table_refused table=s__t source=s.t reason=shared_target" in applier.output()
    assert applier.alive()


# ---------------------------------------------------------------- D: what a retry cannot fix


def max_allowed_packet(pipeline: Pipeline) -> int:
    maria = pipeline.maria()
    cur = maria.cursor()
    cur.execute("SELECT @@max_allowed_packet")
    limit = int(cur.fetchone()[0])
    maria.close()
    return limit


def test_a_row_larger_than_max_allowed_packet_is_parked_not_retried_for_ever(
    pipeline: Pipeline,
) -> None:
    limit = max_allowed_packet(pipeline)
    pipeline.sql("CREATE TABLE huge (id int PRIMARY KEY, body text)")
    _, applier = pipeline.start_pipeline()
    pipeline.sql(f"INSERT INTO huge VALUES (7, repeat('x', {limit + 1000}))")
    pipeline.sql("INSERT INTO huge VALUES (8, 'after it')")
    wait_until(lambda: dead_count(pipeline) == 1, "the huge row parked", timeout=120)
    [(headers, _)] = peek(pipeline, pipeline.queue + ".dead")
    reason = headers["x-cdc-error"]
    assert headers["x-cdc-error-type"] == "RowTooLarge"
    assert "table huge" in reason and "id=7" in reason, reason
    assert f"max_allowed_packet ({limit})" in reason, reason
    # Nothing after it waits: the row after it is there; once the source drops the huge row
    # too, the two sides are equal.
    pipeline.sql("DELETE FROM huge WHERE id = 7")
    pipeline.wait_converged(["huge"])
    assert applier.alive()


def test_many_rows_larger_together_than_max_allowed_packet_are_applied(
    pipeline: Pipeline,
) -> None:
    limit = max_allowed_packet(pipeline)
    rows = limit // 100_000 + 40  # 100 kB each: together well past the limit
    pipeline.sql("CREATE TABLE wide (id int PRIMARY KEY, body text)")
    applier = pipeline.start("applier")
    # One message for the whole transaction: one executemany of every row.
    pipeline.start("extractor", CDC_SOURCE_MAX_CHUNK_BYTES=str(4 * limit)).wait_for("streaming")
    applier.wait_for("consuming queue=")
    pipeline.sql(
        f"INSERT INTO wide SELECT g, repeat(md5(g::text), 3125) FROM generate_series(1, {rows}) g"
    )
    pipeline.sql("UPDATE wide SET body = body || 'x'")
    pipeline.wait_converged(["wide"], timeout=120)
    assert dead_count(pipeline) == 0
    assert applier.alive()
