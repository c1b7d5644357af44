"""broker.url and target.url naming several nodes, on the real servers: the processes pass over
nodes that do not answer, reach the one that does, and never print a password of the list."""

from __future__ import annotations

from devstack.system import free_port
from harness.pipeline import Pipeline


def _dead(url: str, port: int, dead: int) -> str:
    """The same URL, pointing at a loopback port where nothing listens."""
    return url.replace(f":{port}/", f":{dead}/", 1)


def test_processes_reach_the_node_that_answers_and_hide_every_password(
    pipeline: Pipeline,
) -> None:
    rabbit, maria = pipeline.stack.rabbitmq, pipeline.stack.mariadb
    good_broker, good_target = pipeline.env["CDC_BROKER_URL"], pipeline.env["CDC_TARGET_URL"]
    dead_broker = [_dead(good_broker, rabbit.port, free_port()) for _ in range(2)]
    hosts = f"127.0.0.1:{free_port()},127.0.0.1:{maria.port}"
    pipeline.settings["CDC_BROKER_URL"] = ",".join([*dead_broker, good_broker])
    pipeline.settings["CDC_TARGET_URL"] = good_target.replace(f"127.0.0.1:{maria.port}", hosts)
    pipeline.sql("CREATE TABLE t (id int PRIMARY KEY, v text)")
    extractor, applier = pipeline.start_pipeline()
    pipeline.sql("INSERT INTO t VALUES (1, 'one')", "UPDATE t SET v = 'uno' WHERE id = 1")
    pipeline.wait_converged(["t"])
    for proc in (extractor, applier):
        assert proc.output().count("broker_node_unreachable") >= 2, proc.output()
        assert f"broker=amqp://cdc:***@127.0.0.1:{rabbit.port}/" in proc.output()
    assert "target_node_unreachable" in applier.output()
    assert "target_node_changed" in applier.output()
    for proc in (extractor, applier):
        assert pipeline.stack.app_password not in proc.output()
