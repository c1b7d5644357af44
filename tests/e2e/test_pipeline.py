"""Both processes as subprocesses on the real servers: random DML, crashes, outages."""

from __future__ import annotations

import pytest

from devstack.system import wait_until
from harness.pipeline import Pipeline
from harness.workload import TABLES


@pytest.mark.decoders
def test_random_dml_converges_exactly(pipeline: Pipeline) -> None:
    w = pipeline.workload(1)
    pipeline.start_pipeline()
    w.run(300)
    pipeline.wait_converged(TABLES)
    # Converged on the workload's rows, not on tables left empty.
    with pipeline.pg() as conn, conn.cursor() as cur:
        for table in TABLES:
            cur.execute(f"SELECT count(*) FROM {table}")
            assert cur.fetchone()[0] > 0, f"{table} is empty"


def test_replay_after_target_outage(pipeline: Pipeline) -> None:
    w = pipeline.workload(2)
    extractor, applier = pipeline.start_pipeline()
    w.run(20)
    pipeline.wait_converged(TABLES)

    pipeline.stack.mariadb.stop()
    w.run(150)  # these wait in RabbitMQ, unacked or ready, while MariaDB is down
    wait_until(lambda: "retrying what=apply" in applier.output(), "the applier to retry")
    assert applier.alive() and extractor.alive()
    pipeline.stack.mariadb.start()

    pipeline.wait_converged(TABLES)
    assert applier.alive(), "the applier must ride through a MariaDB outage"
    assert pipeline.queue_depth() == 0


@pytest.mark.decoders
def test_kill_extractor_mid_stream(pipeline: Pipeline) -> None:
    w = pipeline.workload(3)
    extractor, _ = pipeline.start_pipeline()
    w.start(400)
    wait_until(lambda: w.transactions >= 100, "the workload to get going")
    extractor.kill()
    wait_until(lambda: w.transactions >= 200, "more writes while the extractor is dead")
    pipeline.start("extractor").wait_for("streaming slot=")
    w.join()
    pipeline.wait_converged(TABLES)


def test_kill_applier_mid_stream(pipeline: Pipeline) -> None:
    w = pipeline.workload(4)
    _, applier = pipeline.start_pipeline()
    w.start(400)
    wait_until(lambda: w.transactions >= 100, "the workload to get going")
    applier.kill()
    wait_until(lambda: w.transactions >= 200, "more writes while the applier is dead")
    pipeline.start("applier").wait_for("consuming queue=")
    w.join()
    pipeline.wait_converged(TABLES)


@pytest.mark.decoders
def test_kill_both_repeatedly(pipeline: Pipeline) -> None:
    w = pipeline.workload(5)
    extractor, applier = pipeline.start_pipeline()
    w.start(600)
    for round_ in range(3):
        target = 100 * (round_ + 1)
        wait_until(lambda: w.transactions >= target, "writes")  # noqa: B023 - used at once
        extractor.kill()
        applier.kill()
        applier = pipeline.start("applier")
        extractor = pipeline.start("extractor")
        extractor.wait_for("streaming slot=")
    w.join()
    pipeline.wait_converged(TABLES)


@pytest.mark.decoders
def test_server_restarts_are_ridden_through(pipeline: Pipeline) -> None:
    w = pipeline.workload(6)
    extractor, applier = pipeline.start_pipeline()
    w.run(30)
    pipeline.wait_converged(TABLES)

    pipeline.stack.rabbitmq.stop()
    pipeline.stack.rabbitmq.start()
    w.run(30)
    pipeline.wait_converged(TABLES)

    pipeline.stack.postgres.stop()
    pipeline.stack.postgres.start()
    w.run(30)
    pipeline.wait_converged(TABLES)
    assert extractor.alive() and applier.alive()
    assert "session_lost" in extractor.output() or "retrying" in extractor.output()
