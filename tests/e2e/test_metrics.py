"""Metrics and health endpoints scraped from a running pipeline, values checked for sense."""

from __future__ import annotations

from devstack.system import free_port, wait_until
from harness.pipeline import Pipeline
from tests.support.metrics import get, scrape, value


def test_metrics_of_a_running_pipeline(pipeline: Pipeline) -> None:
    ex_port, ap_port = free_port(), free_port()
    pipeline.sql("CREATE TABLE m (id int PRIMARY KEY, v text)")
    extractor = pipeline.start("extractor", CDC_METRICS_PORT=str(ex_port))
    applier = pipeline.start("applier", CDC_METRICS_PORT=str(ap_port))
    extractor.wait_for("streaming slot=")
    applier.wait_for("consuming queue=")
    for port in (ex_port, ap_port):
        assert get(port, "/healthz")[0] == 200
        wait_until(lambda p=port: get(p, "/readyz")[0] == 200, f"ready on {port}")  # type: ignore[misc]

    with pipeline.pg() as conn, conn.cursor() as cur:
        for i in range(10):  # 10 transactions of 5 inserts
            cur.execute(
                "INSERT INTO m SELECT g, 'v' FROM generate_series(%s, %s) g", (i * 5, i * 5 + 4)
            )
            conn.commit()
        cur.execute("UPDATE m SET v = 'w' WHERE id < 7")
        cur.execute("DELETE FROM m WHERE id >= 47")
        conn.commit()
    pipeline.wait_converged(["m"])

    def applied_all() -> bool:
        s = scrape(ap_port)
        return value(s, "cdc_applier_rows_total", table="m", op="delete") == 3

    wait_until(applied_all, "the applier's counters to show every change")
    ex, ap = scrape(ex_port), scrape(ap_port)

    # Extractor: 11 source transactions with 60 row changes, and the initial copy of the empty
    # table (one change: the truncate every copy starts with); every message confirmed; the
    # slot not far behind the server.
    assert value(ex, "cdc_extractor_transactions_published_total") >= 11
    assert value(ex, "cdc_extractor_changes_published_total") == 61
    # Small transactions that come while confirms are awaited travel together: at least the
    # copy and one message, at most one message per transaction.
    messages = value(ex, "cdc_extractor_messages_published_total")
    assert 2 <= messages <= 12
    # (the state message that records the finished copy is confirmed too)
    assert value(ex, "cdc_extractor_confirm_seconds_count") >= messages
    assert 0 < value(ex, "cdc_extractor_confirm_seconds_sum") < messages * 5
    # Source commit to publish, once per message of the stream (not the copy's).
    published = value(ex, "cdc_extractor_publish_delay_seconds_count")
    assert 1 <= published < messages
    assert 0 <= value(ex, "cdc_extractor_publish_delay_seconds_sum") / published < 10
    assert 0 <= value(ex, "cdc_extractor_slot_lag_bytes") < 16 * 2**20
    assert 0 <= value(ex, "cdc_extractor_seconds_since_last_commit") < 60
    assert value(ex, "cdc_extractor_reconnects_total") == 0

    # Applier: rows by table and operation, exactly; latencies sane; nothing dead-lettered.
    assert value(ap, "cdc_applier_rows_total", table="m", op="insert") == 50
    assert value(ap, "cdc_applier_rows_total", table="m", op="update") == 7
    assert value(ap, "cdc_applier_rows_total", table="m", op="delete") == 3
    # The applier counts envelopes (one per transaction or copy chunk), however they travelled.
    assert value(ap, "cdc_applier_messages_total") >= messages
    assert value(ap, "cdc_applier_transactions_total") >= 11
    batches = value(ap, "cdc_applier_apply_seconds_count")
    assert 1 <= batches <= value(ap, "cdc_applier_messages_total")
    assert 0 < value(ap, "cdc_applier_apply_seconds_sum") < batches * 5
    delivered = value(ap, "cdc_applier_delivery_delay_seconds_count")
    assert 1 <= delivered <= published
    assert 0 <= value(ap, "cdc_applier_delivery_delay_seconds_sum") / delivered < 10
    delays = value(ap, "cdc_applier_replication_delay_seconds_count")
    assert delays >= 11
    assert 0 <= value(ap, "cdc_applier_replication_delay_seconds_sum") / delays < 10
    assert 0 <= value(ap, "cdc_applier_lag_seconds") < 60
    assert value(ap, "cdc_applier_dead_lettered_total") == 0
    assert value(ap, "cdc_applier_reconnects_total") == 0
    assert value(ap, "cdc_applier_held_messages") == 0
    assert value(ap, "cdc_applier_queue_depth") >= 0
    assert get(ap_port, "/nothing")[0] == 404


def test_readyz_says_why_an_applier_is_not_ready(pipeline: Pipeline) -> None:
    port = free_port()
    dead = pipeline.stack.mariadb.url(pipeline.target_db).replace(
        f":{pipeline.stack.mariadb.port}/", f":{free_port()}/"
    )
    applier = pipeline.start("applier", CDC_METRICS_PORT=str(port), CDC_TARGET_URL=dead)
    applier.wait_for("metrics_listening")
    assert get(port, "/healthz") == (200, "alive\n")
    code, why = get(port, "/readyz")
    assert code == 503 and "not connected" in why
