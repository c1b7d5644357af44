"""Who confirms, acks and advances what, when: checked on the real servers."""

from __future__ import annotations

import json
import time
from typing import Any

import mariadb
import pika

from devstack.system import wait_until
from extractor.snapshot import request_backfill
from harness.pipeline import Pipeline
from shared import envelope, wire
from shared.config import BackfillConfig, load_config
from shared.lsn import parse_lsn
from shared.position import Position
from shared.tables import TableRef


def slot_flush(pipeline: Pipeline) -> int:
    with pipeline.pg() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT confirmed_flush_lsn::text FROM pg_replication_slots WHERE slot_name = %s",
            (pipeline.name,),
        )
        row = cur.fetchone()
    return parse_lsn(row[0]) if row and row[0] else 0


def current_lsn(pipeline: Pipeline) -> int:
    with pipeline.pg() as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_current_wal_lsn()::text")
        return parse_lsn(cur.fetchone()[0])


def test_slot_advances_only_past_what_rabbitmq_confirmed(pipeline: Pipeline) -> None:
    pipeline.sql("CREATE TABLE t (id int PRIMARY KEY, v text)")
    extractor = pipeline.start("extractor", CDC_SNAPSHOT="never", CDC_SOURCE_HEARTBEAT_INTERVAL="0")
    extractor.wait_for("streaming slot=")
    pipeline.sql("INSERT INTO t VALUES (1, 'confirmed')")
    mark = current_lsn(pipeline)
    wait_until(
        lambda: slot_flush(pipeline) >= mark - 1024 and pipeline.queue_depth() == 1, "first txn"
    )

    rabbit = pipeline.stack.rabbitmq
    rabbit.ctl("set_vm_memory_high_watermark", "0")  # RabbitMQ blocks every publisher
    try:
        before = current_lsn(pipeline)
        pipeline.sql("INSERT INTO t VALUES (2, 'blocked')")
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            # Not confirmed by RabbitMQ, so PostgreSQL must keep it.
            assert slot_flush(pipeline) <= before
            time.sleep(0.2)
    finally:
        rabbit.ctl("set_vm_memory_high_watermark", "0.4")
    wait_until(lambda: slot_flush(pipeline) > before, "the slot to move once RabbitMQ confirms")
    assert pipeline.queue_depth() == 2
    assert extractor.alive()


def test_a_backfill_holds_the_slot_only_until_its_copy_is_confirmed(pipeline: Pipeline) -> None:
    pipeline.sql(
        "CREATE TABLE t (id int PRIMARY KEY, v text)",
        "INSERT INTO t SELECT g, 'v' FROM generate_series(1, 100) g",
    )
    env = {"CDC_SNAPSHOT": "never", "CDC_SOURCE_HEARTBEAT_INTERVAL": "0"}
    extractor = pipeline.start("extractor", **env)
    extractor.wait_for("streaming slot=")
    cfg = load_config(BackfillConfig, environ=pipeline.env).source
    request = request_backfill(cfg, [TableRef("public", "t")])
    extractor.wait_for("copy_done")
    pipeline.sql("INSERT INTO t VALUES (101, 'after the copy')")
    # Once RabbitMQ confirmed the copy, the request no longer holds the slot.
    wait_until(lambda: slot_flush(pipeline) > request, "the slot to pass the request", timeout=20)
    assert extractor.stop() == 0
    # So a restart does not find the request again, and copies nothing.
    restarted = pipeline.start("extractor", **env)
    restarted.wait_for("streaming slot=")
    pipeline.sql("INSERT INTO t VALUES (102, 'after the restart')")
    wait_until(lambda: pipeline.queue_depth() == 4, "the copy and the two inserts")
    assert restarted.stop() == 0
    assert "backfill_requested" not in restarted.output()


def test_messages_are_persistent_json_envelopes(pipeline: Pipeline) -> None:
    pipeline.sql("CREATE TABLE t (id int PRIMARY KEY, amount numeric(30,10))")
    extractor = pipeline.start("extractor", CDC_SNAPSHOT="never", CDC_SOURCE_HEARTBEAT_INTERVAL="0")
    extractor.wait_for("streaming slot=")
    pipeline.sql(
        "BEGIN; INSERT INTO t VALUES (1, 12345678901234567890.0123456789);"
        " UPDATE t SET id = 2 WHERE id = 1; DELETE FROM t; COMMIT"
    )
    wait_until(lambda: pipeline.queue_depth() == 1, "the message")
    with pipeline.channel() as ch:
        _, props, body = ch.basic_get(pipeline.queue, auto_ack=True)
    assert props.delivery_mode == 2
    env = wire.decode(body)
    assert props.message_id == env.message_id == envelope.message_id(env.commit_lsn, 0)
    assert env.last and env.chunk == 0 and env.slot == pipeline.name
    assert [c.op for c in env.changes] == ["insert", "update", "delete"]
    assert env.changes[0].values == [1, "12345678901234567890.0123456789"]
    assert env.changes[1].old_key is not None and env.changes[1].old_key.values == [1]
    assert json.loads(body)["changes"][0]["types"] == ["integer", "numeric(30,10)"]


def test_large_transaction_is_split_in_chunks(pipeline: Pipeline) -> None:
    pipeline.sql("CREATE TABLE t (id int PRIMARY KEY)")
    extractor = pipeline.start(
        "extractor",
        CDC_SOURCE_MAX_CHUNK_CHANGES="100",
        CDC_SNAPSHOT="never",
        CDC_SOURCE_HEARTBEAT_INTERVAL="0",
    )
    extractor.wait_for("streaming slot=")
    pipeline.sql("INSERT INTO t SELECT generate_series(1, 1050)")
    wait_until(lambda: pipeline.queue_depth() == 11, "11 chunks")
    applier = pipeline.start("applier")
    applier.wait_for("consuming queue=")
    pipeline.wait_converged(["t"])


def publish(pipeline: Pipeline, body: bytes, message_id: str = "test") -> None:
    with pipeline.channel() as ch:
        ch.confirm_delivery()
        ch.basic_publish(
            "cdc",
            pipeline.name,
            body,
            properties=pika.BasicProperties(delivery_mode=2, message_id=message_id),
            mandatory=True,
        )


def an_envelope(commit_lsn: int, table: str, row_id: int, value: Any, prev: int = 0) -> bytes:
    return wire.encode(
        slot="x",
        xid=1,
        commit_lsn=commit_lsn,
        commit_time="2026-01-01 00:00:00+00",
        copy=False,
        after=Position.end_of(prev) if prev else None,
        resumed=False,
        chunk=0,
        last=True,
        changes=[
            {
                "op": "insert",
                "lsn": "0/1",
                "schema": "public",
                "table": table,
                "columns": ["id", "amount"],
                "types": ["integer", "numeric"],
                "values": [row_id, value],
                "key": ["id"],
            }
        ],
    )


def test_poison_messages_go_to_the_dead_letter_queue(pipeline: Pipeline) -> None:
    applier = pipeline.start("applier")
    applier.wait_for("consuming queue=")
    publish(pipeline, b"{not json", "bad-json")
    publish(pipeline, json.dumps({"v": 99, "changes": []}).encode(), "bad-version")
    # A value MariaDB cannot hold (DECIMAL(65,30) has 35 integer digits): rejected, parked.
    publish(pipeline, an_envelope(100, "money", 1, "1" * 40), "too-big")
    publish(pipeline, an_envelope(200, "money", 2, "12.5", prev=100), "fine")

    dead = pipeline.queue + ".dead"
    wait_until(lambda: pipeline.queue_depth(dead) == 3, "three dead letters")
    with pipeline.channel() as ch:
        reasons = {}
        for _ in range(3):
            _, props, _ = ch.basic_get(dead, auto_ack=True)
            reasons[props.message_id] = props.headers
    assert "not JSON" in reasons["bad-json"]["x-cdc-error"]
    assert reasons["bad-version"]["x-cdc-error-type"] == "UnsupportedVersion"
    assert "does not fit DECIMAL(65,30)" in reasons["too-big"]["x-cdc-error"]
    # The queue's count leaves out a delivered message not yet acked: wait for the row itself.
    wait_until(lambda: money_rows(pipeline) == [(2, "12.5")], "the good message applied")
    assert applier.alive()
    assert "dead_lettered" in applier.output()


def test_replayed_message_changes_nothing(pipeline: Pipeline) -> None:
    applier = pipeline.start("applier")
    applier.wait_for("consuming queue=")
    publish(pipeline, an_envelope(500, "money", 1, "1.00"))
    publish(pipeline, an_envelope(600, "money", 1, "2.00", prev=500))
    publish(pipeline, an_envelope(500, "money", 1, "1.00"))  # a resend of an older message
    wait_until(lambda: "duplicates_skipped messages=1" in applier.output(), "the resend skipped")
    wait_until(lambda: money_rows(pipeline) == [(1, "2.")], "the newer message applied")
    maria = pipeline.maria()
    cur = maria.cursor()
    cur.execute("SELECT amount FROM money WHERE id = 1")
    assert str(cur.fetchone()[0]).startswith("2.00")
    cur.execute("SELECT commit_lsn, complete, position FROM _cdc_checkpoint")
    assert cur.fetchall() == [(600, 1, "0/258")]
    maria.close()


def test_awkward_identifiers_end_to_end(pipeline: Pipeline) -> None:
    pipeline.sql(
        'CREATE TABLE "Order Items`s" ('
        ' "select" int, "we""ird" text, "naïve col" numeric(8,3), "key`tick" text,'
        ' PRIMARY KEY ("select", "key`tick"))',
        'CREATE TABLE "group" (id int PRIMARY KEY, "from" text)',
    )
    pipeline.start_pipeline()
    pipeline.sql(
        """INSERT INTO "Order Items`s" VALUES (1, 'a''b', 1.5, 'k`1'), (2, NULL, -0.001, 'k 2')""",
        """UPDATE "Order Items`s" SET "we""ird" = 'ü' WHERE "select" = 2""",
        """UPDATE "Order Items`s" SET "key`tick" = 'moved' WHERE "select" = 1""",
        """INSERT INTO "group" VALUES (1, 'x'), (2, 'y')""",
        """DELETE FROM "group" WHERE id = 1""",
    )
    pipeline.wait_converged(["Order Items`s", "group"])


def money_rows(pipeline: Pipeline) -> list[tuple[object, str]]:
    maria = pipeline.maria()
    try:
        cur = maria.cursor()
        try:
            cur.execute("SELECT id, amount FROM money")
        except mariadb.Error:  # the table is created with the first message that fits
            return []
        return [(r[0], str(r[1]).rstrip("0")) for r in cur.fetchall()]
    finally:
        maria.close()
