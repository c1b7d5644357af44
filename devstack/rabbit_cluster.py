"""A private RabbitMQ cluster on loopback: N nodes of Debian's rabbitmq-server, each with its own
node name, ports and files, one Erlang cookie and one port mapper between them.

The nodes boot side by side, then the second and later ones join the first (``rabbitmqctl
join_cluster``) once; after that a node started again finds the others by itself.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from devstack.rabbitmq import RabbitMQ
from devstack.system import StackError, cluster_state, free_port, in_parallel, wait_until

_JOINED = "joined"  # a marker in a node's folder: it is a member of the cluster


@dataclass
class RabbitCluster:
    root: Path
    nodes: list[RabbitMQ]

    @classmethod
    def load(cls, root: Path, size: int, password: str) -> RabbitCluster:
        """The cluster described in root/cluster.json, created (ports, cookie) if missing."""
        state = cluster_state(
            root / "cluster.json",
            size,
            lambda: {
                "epmd_port": free_port(),
                "cookie": secrets.token_hex(16),
                "nodes": [
                    {"port": free_port(), "dist_port": free_port(), "tls_port": free_port()}
                    for _ in range(size)
                ],
            },
            "RabbitMQ cluster",
        )
        nodes = [
            RabbitMQ(
                root / f"node{i + 1}",
                password=password,
                epmd_port=state["epmd_port"],
                cookie=state["cookie"],
                shared_epmd=True,
                **node,
            )
            for i, node in enumerate(state["nodes"])
        ]
        return cls(root, nodes)

    # ------------------------------------------------------------ what the tests use

    @property
    def first(self) -> RabbitMQ:
        return self.nodes[0]

    @property
    def port(self) -> int:
        return self.first.port

    @property
    def password(self) -> str:
        return self.first.password

    @property
    def app_user(self) -> str:
        return self.first.app_user

    def url(self, vhost: str = "%2F") -> str:
        """broker.url for the cluster: every node's URL, comma-separated."""
        return ",".join(node.url(vhost) for node in self.nodes)

    def tls_url(self, vhost: str = "%2F") -> str:
        raise StackError("the devstack's RabbitMQ cluster has no TLS listeners")

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """rabbitmqctl on the first node that runs."""
        for node in self.nodes:
            if node.running():
                return node.ctl(*args, timeout=timeout)
        raise StackError("no node of the RabbitMQ cluster is running")

    def node_named(self, name: str) -> RabbitMQ:
        for node in self.nodes:
            if node.node == name:
                return node
        raise StackError(f"{name} is not a node of this cluster")

    def leader(self, queue: str) -> RabbitMQ:
        """The node that leads a quorum queue now."""
        for line in self.ctl("list_queues", "name", "leader", "--no-table-headers").splitlines():
            name, _, node = line.strip().partition("\t")
            if name == queue and node.strip():
                return self.node_named(node.strip())
        raise StackError(f"quorum queue {queue} has no leader")

    # ------------------------------------------------------------ life

    def running(self) -> bool:
        return all(node.running() for node in self.nodes)

    def start(self) -> None:
        for node in self.nodes:
            node.init()
        in_parallel([node.start for node in self.nodes if not node.running()])
        for node in self.nodes[1:]:
            if not (node.root / _JOINED).exists():
                # Once: a joining node forgets its own data and takes the cluster's.
                node.ctl("stop_app")
                node.ctl("join_cluster", self.first.node, timeout=120)
                node.ctl("start_app", timeout=120)
                (node.root / _JOINED).write_text(self.first.node)
        wait_until(self._formed, "the RabbitMQ nodes to form one cluster", timeout=60)

    def _formed(self) -> bool:
        status = self.ctl("cluster_status", "--formatter", "json")
        running = json.loads(status).get("running_nodes", [])
        return all(node.node in running for node in self.nodes)

    def stop(self) -> None:
        failures = []
        for node in reversed(self.nodes):
            try:
                node.stop()
            except StackError as e:
                failures.append(str(e))
        self.first.stop_epmd()
        if failures:
            raise StackError("; ".join(failures))
