"""Ways the target once silently differed from the source, or stalled, on the applier's side:
TOASTed values lost when a row moves, target tables with unique keys the source lacks, two
source tables sharing one target table, rows too large for one MariaDB packet."""

from __future__ import annotations

from typing import Any

import pika

from applier.consumer import REPLAY_HEADER
from tests.support.pipeline import Pipeline, wait_until

# Out of line and uncompressed (over 2 kB each, distinct per row): wal2json leaves such a value
# out of an UPDATE's new row when it did not change.
BODY = "repeat(md5({}::text), 100)"


def toasted(table: str) -> str:
    return f"ALTER TABLE {table} ALTER COLUMN body SET STORAGE EXTERNAL"


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
        pipeline.sql(
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
        pipeline.sql(
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
