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
from devstack.system import free_port
from harness.clusters import MARKS, ClusterServers, mark, serving
from harness.pipeline import Pipeline, new_pipeline
from harness.workload import TABLES
from shared.config import ApplierConfig, load_config
from tests.support.nasty import NASTY_TABLES, bulk_rows, copy_in, nasty_rows


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
    # Said when the applier first reaches the target, which may come after it started
    # consuming (the moment start_pipeline waits for).
    applier.wait_for(f"galera_table_without_key table={p.target_db}.legacy")
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


def test_bulk_path_on_galera_reaches_every_node(on_galera: Pipeline, galera: Galera) -> None:
    """LOAD DATA LOCAL into a temporary table (not replicated), then one INSERT ... SELECT
    and one DELETE ... JOIN (replicated as rows): every node ends with the source's rows."""
    p = on_galera
    p.sql(NASTY_TABLES)
    port = free_port()
    applier = p.start("applier", CDC_TARGET_BULK_ROWS="2", CDC_METRICS_PORT=str(port))
    p.start("extractor").wait_for("streaming slot=")
    applier.wait_for("consuming queue=")
    insert = "INSERT INTO nasty VALUES (" + ", ".join(["%s"] * 12) + ")"
    copy_in(p, [(insert, nasty_rows(1, 400))])
    p.sql(
        "UPDATE nasty SET n = -n, ok = NOT ok WHERE id % 2 = 0",
        "DELETE FROM nasty WHERE id % 3 = 0",
    )
    p.wait_converged(["nasty"])
    assert bulk_rows(port, "nasty") >= 400 + 200 + 133
    assert "bulk_path_off" not in applier.output()
    # Each node, read causally, holds what the node the applier wrote to holds.
    sums = {
        node.port: node.sql(f"SET SESSION wsrep_sync_wait = 1; CHECKSUM TABLE {p.target_db}.nasty")
        for node in galera.nodes
    }
    assert len(set(sums.values())) == 1, sums


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
