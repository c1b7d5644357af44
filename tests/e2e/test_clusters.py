"""The pipeline on clusters: a 3-node RabbitMQ cluster with quorum queues, and a 3-node MariaDB
Galera cluster as the target. Nodes are killed (kill -9) under continuous DML and started again;
the target must end equal to the source, row by row (0 missing, 0 extra, 0 different)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from applier.target import create_target_engine
from devstack.galera import Galera
from devstack.rabbit_cluster import RabbitCluster
from devstack.stack import Stack
from harness.clusters import MARKS, ClusterServers, mark, serving
from harness.pipeline import Pipeline, new_pipeline
from harness.workload import TABLES
from shared.config import ApplierConfig, load_config


@pytest.fixture
def on_rabbit_cluster(
    local_stack: Stack, rabbit_cluster: RabbitCluster, tmp_path: Path
) -> Iterator[Pipeline]:
    rabbit_cluster.start()  # a node a previous test killed comes back
    p = new_pipeline(ClusterServers(local_stack, rabbit_cluster=rabbit_cluster), tmp_path)
    p.settings["CDC_BROKER_QUEUE_TYPE"] = "quorum"
    yield p
    p.destroy()


@pytest.fixture
def on_galera(local_stack: Stack, galera: Galera, tmp_path: Path) -> Iterator[Pipeline]:
    galera.start()
    p = new_pipeline(ClusterServers(local_stack, galera=galera), tmp_path)
    yield p
    p.destroy()


def test_rabbitmq_node_kills_under_load(
    on_rabbit_cluster: Pipeline, rabbit_cluster: RabbitCluster
) -> None:
    p = on_rabbit_cluster
    w = p.workload(41)
    p.sql(MARKS)
    extractor, applier = p.start_pipeline()
    w.start(transactions=1500, rate=60)
    mark(p)
    # The queue's leader first, then whichever node leads it after that; each comes back.
    for _ in range(2):
        leader = rabbit_cluster.leader(p.queue)
        leader.kill()
        mark(p)
        leader.start()
        mark(p)
    w.join()
    p.wait_converged([*TABLES, "marks"])
    assert extractor.alive() and applier.alive()
    # Both lost their node at least once and moved on; no password in what they said.
    assert "session_lost" in extractor.output() + applier.output()
    assert p.stack.app_password not in extractor.output() + applier.output()


def test_galera_node_kill_under_load(on_galera: Pipeline, galera: Galera) -> None:
    p = on_galera
    w = p.workload(42)
    # Galera needs a key on every table (a source transaction touching a table it refuses is
    # parked whole): the workload's keyless table gets one here; another stays keyless.
    p.sql(
        "ALTER TABLE events ADD COLUMN id bigserial PRIMARY KEY",
        MARKS,
        "CREATE TABLE keyless (a int)",
        "ALTER TABLE keyless REPLICA IDENTITY FULL",
    )
    with p.maria() as conn:  # a keyless table already in the target: named at start
        conn.cursor().execute("CREATE TABLE legacy (a int)")
    extractor, applier = p.start_pipeline()
    assert f"galera_table_without_key table={p.target_db}.legacy" in applier.output()
    w.start(transactions=1200, rate=60)
    mark(p)
    p.sql("INSERT INTO keyless VALUES (1)")
    # Galera cannot replicate a table without a primary key: refused, named with the fix.
    applier.wait_for("reason=galera_needs_key")
    assert "fix: add a primary key to public.keyless" in applier.output()
    node = serving(galera)
    node.kill()
    mark(p)  # the applier went on on another node
    galera.restart(node)
    mark(p)
    w.join()
    p.wait_converged([*TABLES, "marks"])
    assert extractor.alive() and applier.alive()
    assert p.stack.app_password not in applier.output()


def test_applier_sessions_on_galera_read_causally(galera: Galera, local_stack: Stack) -> None:
    """wsrep_sync_wait on every connection to a Galera node, none elsewhere."""
    env = {"CDC_SLOT": "s", "CDC_BROKER_URL": local_stack.rabbitmq.url()}
    for server, expected in ((galera, 1), (local_stack.mariadb, 0)):
        env["CDC_TARGET_URL"] = server.url("mysql")
        engine = create_target_engine(load_config(ApplierConfig, environ=env).target)
        try:
            with engine.connect() as conn:
                assert conn.exec_driver_sql("SELECT @@wsrep_sync_wait").scalar() == expected
        finally:
            engine.dispose()
