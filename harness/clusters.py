"""The test servers with a cluster in place of a single server: devstack's RabbitMQ cluster
for the broker and/or its Galera cluster for the target, beside the stack's PostgreSQL (and
its single servers for whatever is not a cluster). A Pipeline on these runs as on the stack,
its settings naming every node (broker.url, target.url)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mariadb

from devstack.galera import Galera
from devstack.mariadb import MariaDB
from devstack.rabbit_cluster import RabbitCluster
from devstack.stack import APP_USER, Stack
from devstack.system import StackError, wait_until
from harness.pipeline import Pipeline
from harness.servers import BrokerServer, SourceServer, TargetServer

NODES = 3


@dataclass
class ClusterServers:
    stack: Stack
    rabbit_cluster: RabbitCluster | None = None
    galera: Galera | None = None

    @property
    def postgres(self) -> SourceServer:
        return self.stack.postgres

    @property
    def rabbitmq(self) -> BrokerServer:
        return self.rabbit_cluster or self.stack.rabbitmq

    @property
    def mariadb(self) -> TargetServer:
        return self.galera or self.stack.mariadb

    @property
    def app_password(self) -> str:
        return self.stack.app_password

    def tls_env(self) -> dict[str, str]:
        raise StackError("the devstack's clusters have no TLS listeners")

    def start(self) -> None:
        self.stack.start()
        for cluster in (self.rabbit_cluster, self.galera):
            if cluster is not None:
                cluster.start()

    def stop(self) -> None:
        for cluster in (self.rabbit_cluster, self.galera):
            if cluster is not None:
                cluster.stop()

    def running(self) -> dict[str, bool]:
        up = {"postgres": self.stack.postgres.running()}
        up["rabbitmq"] = (self.rabbit_cluster or self.stack.rabbitmq).running()
        up["mariadb"] = (self.galera or self.stack.mariadb).running()
        return up


def rabbit_cluster_of(stack: Stack, root: Path | None = None) -> RabbitCluster:
    return RabbitCluster.load(root or stack.root / "rabbitmq-cluster", NODES, stack.app_password)


def galera_of(stack: Stack, root: Path | None = None) -> Galera:
    return Galera.load(root or stack.root / "galera", NODES)


@contextmanager
def running(cluster: RabbitCluster | Galera) -> Iterator[None]:
    """The cluster started for a test session; stopped at the end unless it ran before (as
    the stack's servers, harness/servers.py)."""
    was_running = cluster.running()
    cluster.start()
    try:
        yield
    finally:
        if not was_running:
            cluster.stop()


_marks = itertools.count(1)
MARKS = "CREATE TABLE marks (id int PRIMARY KEY)"  # the source table mark() writes


def mark(p: Pipeline, timeout: float = 90) -> None:
    """A row written to the source's ``marks`` table, awaited in the target: once it is
    there, the pipeline carries changes again (after a fault)."""
    n = next(_marks)
    p.sql(f"INSERT INTO marks VALUES ({n})")

    def arrived() -> bool:
        try:
            conn = p.maria()
        except mariadb.Error:  # a node of the cluster may be down right now
            return False
        try:
            cur = conn.cursor()
            cur.execute("SELECT COUNT(*) FROM marks WHERE id = ?", (n,))
            return bool(cur.fetchone()[0])
        except mariadb.Error:  # the table may not exist yet
            return False
        finally:
            conn.close()

    wait_until(arrived, f"mark {n} in the target", timeout=timeout, interval=0.25)


def serving(galera: Galera) -> MariaDB:
    """The Galera node the applier is connected to."""
    found: list[MariaDB] = []

    def look() -> bool:
        for node in galera.nodes:
            if node.running():
                count = node.sql(
                    f"SELECT COUNT(*) FROM information_schema.processlist WHERE user = '{APP_USER}'"
                )
                if int(count.strip() or 0):
                    found.append(node)
                    return True
        return False

    wait_until(look, "the applier's Galera node")
    return found[0]
