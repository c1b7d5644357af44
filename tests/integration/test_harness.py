"""The harness cleans up after each test: nothing of a pipeline is left on the servers."""

from __future__ import annotations

from pathlib import Path

from devstack.system import wait_until
from harness.pipeline import Pipeline, new_pipeline
from harness.servers import Servers


def queues(stack: Servers, prefix: str) -> list[str]:
    listed = stack.rabbitmq.ctl("list_queues", "-q", "--no-table-headers", "name")
    return sorted(q for q in listed.split() if q.startswith(prefix))


def test_destroy_leaves_no_queue_behind(stack: Servers, tmp_path: Path) -> None:
    p: Pipeline = new_pipeline(stack, tmp_path)
    try:
        p.sql("CREATE TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (1)")
        p.start_pipeline()
        p.wait_converged(["t"])
        # The initial copy is recorded in the extractor's state queue once it is confirmed.
        wait_until(lambda: f"{p.queue}.state" in queues(stack, p.queue), "the state queue")
        assert queues(stack, p.queue) == [p.queue, f"{p.queue}.dead", f"{p.queue}.state"]
    finally:
        p.destroy()
    assert queues(stack, p.queue) == []
