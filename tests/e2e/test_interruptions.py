"""Interrupted copies and redeliveries never leave a wrong copy (issue 10).

Each test reproduces a way the target used to end silently different from the source: a
backfill cut short and never finished, a late copy chunk dropped as a duplicate, an empty
checkpoint releasing whatever came first, a restart with another table filter inside a large
transaction, and one refused value sinking every table of a copy.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from devstack.system import wait_until
from harness.pipeline import Pipeline


def target_count(pipeline: Pipeline, table: str) -> int:
    maria = pipeline.maria()
    try:
        cur = maria.cursor()
        cur.execute(f"SELECT count(*) FROM `{table}`")
        return int(cur.fetchone()[0])
    except Exception:
        return -1
    finally:
        maria.close()


def backfill(pipeline: Pipeline, *tables: str) -> None:
    proc = pipeline.backfill(*tables)
    assert proc.returncode == 0, proc.stderr


def is_copy(body: bytes) -> bool:
    doc: dict[str, Any] = json.loads(body)
    # "snapshot" is how the first envelope version marked a copy.
    return bool(doc.get("copy", doc.get("snapshot")))


@pytest.mark.parametrize("how", ["kill", "sigterm"])
def test_an_interrupted_backfill_is_finished_after_a_restart(pipeline: Pipeline, how: str) -> None:
    rows = 60000
    pipeline.sql(
        "CREATE TABLE big (id int PRIMARY KEY, v text)",
        f"INSERT INTO big SELECT g, md5(g::text) FROM generate_series(1, {rows}) g",
    )
    # Small messages, one confirm at a time: the backfill takes long enough to be cut short.
    slow = {"CDC_SOURCE_MAX_CHUNK_CHANGES": "100", "CDC_BROKER_MAX_INFLIGHT": "1"}
    extractor = pipeline.start("extractor", **slow)
    pipeline.start("applier")
    pipeline.wait_converged(["big"], timeout=180)
    # Someone damages the copy; a backfill is asked for to repair it.
    maria = pipeline.maria()
    maria.cursor().execute("DELETE FROM big WHERE id % 3 = 0")
    maria.close()
    damaged = target_count(pipeline, "big")
    backfill(pipeline, "public.big")
    wait_until(lambda: extractor.output().count("copy_started") == 2, "the backfill started")
    # The target table was emptied by the backfill's truncate and is being filled again (a
    # wide window: from the truncate until it holds as many rows as before the backfill).
    wait_until(lambda: 0 <= target_count(pipeline, "big") < damaged, "the copy being applied")
    if how == "kill":
        extractor.kill()
    else:
        assert extractor.stop() == 0
    assert "copy_done tables=1 rows=60000" not in extractor.output().split("backfill_requested")[1]
    pipeline.sql("UPDATE big SET v = 'after' WHERE id <= 10")
    restarted = pipeline.start("extractor")
    pipeline.wait_converged(["big"], timeout=180)
    assert "backfill_requested tables=public.big" in restarted.output()


def test_a_late_copy_chunk_is_applied_before_what_follows_the_copy(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE TABLE c (id int PRIMARY KEY, v text)",
        "INSERT INTO c SELECT g, 'v' || g FROM generate_series(1, 40) g",
    )
    extractor = pipeline.start(
        "extractor", CDC_SOURCE_MAX_CHUNK_CHANGES="10", CDC_SOURCE_HEARTBEAT_INTERVAL="0"
    )
    extractor.wait_for("streaming slot=")
    pipeline.sql("INSERT INTO c VALUES (41, 'later')", "UPDATE c SET v = 'changed' WHERE id = 5")
    wait_until(lambda: pipeline.queue_depth() >= 6, "the copy and the transaction published")
    assert extractor.stop() == 0
    messages = pipeline.drain()
    copy = [m for m in messages if is_copy(m[1])]
    rest = [m for m in messages if not is_copy(m[1])]
    assert len(copy) >= 4
    # As after a crash and a requeue: the copy's first chunk and what follows the copy
    # arrive and are taken first; the copy's other chunks only later.
    pipeline.republish([copy[0], *rest])
    pipeline.start("applier")
    wait_until(lambda: pipeline.queue_depth() == 0, "the first messages delivered")
    wait_until(lambda: target_count(pipeline, "c") >= 9, "the copy's first chunk applied")
    pipeline.republish(copy[1:])
    pipeline.wait_converged(["c"])
    wait_until(lambda: pipeline.queue_depth() == 0, "everything consumed")


def test_an_empty_checkpoint_waits_for_the_first_message(pipeline: Pipeline) -> None:
    pipeline.sql("CREATE TABLE e (id int PRIMARY KEY, v text)")
    # A message per transaction (chunks of one change are never batched): five of them.
    quiet = {
        "CDC_SNAPSHOT": "never",
        "CDC_SOURCE_HEARTBEAT_INTERVAL": "0",
        "CDC_SOURCE_MAX_CHUNK_CHANGES": "1",
    }
    extractor = pipeline.start("extractor", **quiet)
    extractor.wait_for("streaming slot=")
    for i in range(1, 6):
        pipeline.sql(f"INSERT INTO e VALUES ({i}, 'row {i}')")
    wait_until(lambda: pipeline.queue_depth() >= 5, "five messages")
    assert extractor.stop() == 0
    messages = pipeline.drain()
    # Messages 2-5 come first, with nothing applied yet, and are taken; message 1 later.
    pipeline.republish(messages[1:5])
    pipeline.start("applier")
    wait_until(lambda: pipeline.queue_depth() == 0, "messages 2-5 delivered")
    assert target_count(pipeline, "e") <= 0  # nothing applied before message 1
    pipeline.republish(messages[:1] + messages[5:])
    pipeline.wait_converged(["e"])


def run_big_transaction(pipeline: Pipeline, rows: int) -> None:
    """One transaction writing ``rows`` rows into each of a (no key) and b, interleaved."""
    pipeline.sql(
        "DO $$ BEGIN FOR i IN 1.."
        + str(rows)
        + " LOOP INSERT INTO a VALUES (i, 'a' || i); INSERT INTO b VALUES (i, 'b' || i);"
        " END LOOP; END $$"
    )


@pytest.mark.decoders
@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("public.a,public.b", "public.a"),  # narrower: rows of a went missing
        ("public.a", "public.a,public.b"),  # wider: rows of a were applied twice
    ],
)
def test_a_changed_filter_inside_a_large_transaction(
    pipeline: Pipeline, before: str, after: str
) -> None:
    pipeline.sql(
        "CREATE TABLE a (id int, v text)",  # no key: a row applied twice is there twice
        "CREATE TABLE b (id int PRIMARY KEY, v text)",
    )
    slow = {"CDC_SOURCE_MAX_CHUNK_CHANGES": "20", "CDC_BROKER_MAX_INFLIGHT": "1"}
    extractor = pipeline.start("extractor", CDC_TABLES=before, **slow)
    extractor.wait_for("streaming slot=")
    rows = 8000
    run_big_transaction(pipeline, rows)
    # Cut the extractor off early in publishing the transaction: the slot has not moved past
    # it, so the next session sends it again, this time with the other filter.
    wait_until(lambda: pipeline.queue_depth() >= 30, "part of the transaction published")
    extractor.kill()
    assert pipeline.queue_depth() < rows // 20, "the whole transaction was published"
    applier = pipeline.start("applier")
    wait_until(lambda: 0 < target_count(pipeline, "a") < rows, "part of it applied")
    wait_until(lambda: pipeline.queue_depth() == 0, "what was published applied")
    extractor = pipeline.start("extractor", CDC_TABLES=after)
    captured = [name.split(".")[1] for name in after.split(",")]
    pipeline.wait_converged(captured, timeout=120)
    assert target_count(pipeline, "a") == rows
    assert applier.alive()


def test_one_refused_value_parks_only_its_tables_copy(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE TABLE first (id int PRIMARY KEY)",
        "INSERT INTO first VALUES (1)",
    )
    extractor = pipeline.start("extractor", CDC_TABLES="public.first")
    applier = pipeline.start("applier")
    pipeline.wait_converged(["first"])
    assert extractor.stop() == 0
    good = [f"good{i}" for i in range(6)]
    for name in good:
        pipeline.sql(
            f"CREATE TABLE {name} (id int PRIMARY KEY, v text)",
            f"INSERT INTO {name} SELECT g, 'v' || g FROM generate_series(1, 20) g",
        )
    # Forty digits before the point: no MariaDB DECIMAL holds it (docs/types.md).
    pipeline.sql(
        "CREATE TABLE bad (id int PRIMARY KEY, n numeric)",
        "INSERT INTO bad VALUES (1, 1), (2, 1e40), (3, 3)",
    )
    # A catch-up copy of all of them at once.
    restarted = pipeline.start("extractor", CDC_TABLES="public.*")
    restarted.wait_for("copy_done")
    pipeline.wait_converged(["first", *good])
    wait_until(lambda: pipeline.queue_depth(pipeline.queue + ".dead") >= 1, "the dead letter")
    assert "apply_failed" in applier.output()
    failed = [line for line in applier.output().splitlines() if "apply_failed" in line]
    assert all("public.bad" in line for line in failed), failed
    assert all("good" not in line for line in failed), failed
    assert applier.alive()
