"""A private MariaDB Galera cluster on loopback: N mariadbd nodes with Debian's galera-4, each
with its own SQL, group communication (gcomm), IST and SST ports and files.

The first start bootstraps the cluster on the first node (``--wsrep-new-cluster``) and the
others join it by state transfer (rsync). When no node runs, the node Galera marks safe to
bootstrap (the last one to stop) starts the cluster again.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from devstack.mariadb import MariaDB, loopback_url
from devstack.system import (
    StackError,
    cluster_state,
    free_port,
    in_parallel,
    port_open,
    wait_until,
)

PROVIDER = "/usr/lib/galera/libgalera_smm.so"
_SAFE = re.compile(r"^safe_to_bootstrap:\s*1\s*$", re.MULTILINE)
_MARK = "root-password-set"


def _node_args(name: str, ports: dict[str, int], members: str) -> list[str]:
    gcomm, ist, sst = ports["gcomm_port"], ports["ist_port"], ports["sst_port"]
    return [
        "--wsrep-on=ON",
        f"--wsrep-provider={PROVIDER}",
        "--wsrep-cluster-name=devstack",
        f"--wsrep-cluster-address=gcomm://{members}",
        f"--wsrep-node-name={name}",
        f"--wsrep-node-address=127.0.0.1:{gcomm}",
        f"--wsrep-node-incoming-address=127.0.0.1:{ports['port']}",
        f"--wsrep-sst-receive-address=127.0.0.1:{sst}",
        "--wsrep-sst-method=rsync",
        "--wsrep-provider-options="
        f"gmcast.listen_addr=tcp://127.0.0.1:{gcomm};ist.recv_addr=127.0.0.1:{ist};"
        f"base_port={gcomm};gcache.size=64M",
        # What Galera requires of every node.
        "--binlog-format=ROW",
        "--default-storage-engine=InnoDB",
        "--innodb-autoinc-lock-mode=2",
        "--innodb-buffer-pool-size=128M",
    ]


@dataclass
class Galera:
    root: Path
    nodes: list[MariaDB]

    @classmethod
    def load(cls, root: Path, size: int) -> Galera:
        """The cluster described in root/galera.json, created (ports, password) if missing."""
        state = cluster_state(
            root / "galera.json",
            size,
            lambda: {
                "password": secrets.token_hex(12),
                "nodes": [
                    {k: free_port() for k in ("port", "gcomm_port", "ist_port", "sst_port")}
                    for _ in range(size)
                ],
            },
            "Galera cluster",
        )
        members = ",".join(f"127.0.0.1:{n['gcomm_port']}" for n in state["nodes"])
        nodes = [
            MariaDB(
                root / f"node{i + 1}",
                port=ports["port"],
                password=state["password"],
                extra_args=_node_args(f"node{i + 1}", ports, members),
            )
            for i, ports in enumerate(state["nodes"])
        ]
        return cls(root, nodes)

    def _free_transfer_ports(self, node: MariaDB) -> None:
        """The IST and SST ports are only bound while a state transfer runs: in between,
        another server of this machine may have taken one. Such a port is replaced (only the
        joining node uses them: the donor learns them from its request)."""
        state_file = self.root / "galera.json"
        state = json.loads(state_file.read_text())
        index = self.nodes.index(node)
        ports = state["nodes"][index]
        taken = [k for k in ("ist_port", "sst_port") if port_open(ports[k])]
        if not taken:
            return
        for key in taken:
            ports[key] = free_port()
        state_file.write_text(json.dumps(state, indent=2))
        members = ",".join(f"127.0.0.1:{n['gcomm_port']}" for n in state["nodes"])
        node.extra_args = _node_args(f"node{index + 1}", ports, members)

    # ------------------------------------------------------------ what the tests use

    @property
    def first(self) -> MariaDB:
        return self.nodes[0]

    @property
    def port(self) -> int:
        return self.first.port

    def url(self, database: str, user: str = "root", password: str | None = None) -> str:
        """target.url for the cluster: every node's host:port in the URL's host part."""
        single = loopback_url(self.port, database, user, password or self.first.password)
        hosts = ",".join(f"127.0.0.1:{node.port}" for node in self.nodes)
        return single.replace(f"127.0.0.1:{self.port}", hosts, 1)

    def sql(self, statements: str, database: str = "") -> str:
        """Run SQL as root on the first node that is ready."""
        for node in self.nodes:
            if node.running():
                return node.sql(statements, database)
        raise StackError("no node of the Galera cluster is running")

    def grant_target(self, user: str, password: str, database: str) -> None:
        for node in self.nodes:
            if node.running():
                node.grant_target(user, password, database)  # replicated to the others
                return
        raise StackError("no node of the Galera cluster is running")

    def ready(self, node: MariaDB) -> bool:
        """The node is a synced member of the primary component."""
        if not node.running():
            return False
        try:
            out = node.sql("SHOW GLOBAL STATUS LIKE 'wsrep_local_state_comment'")
        except StackError:
            return False
        return out.split()[-1:] == ["Synced"]

    def size(self) -> int:
        out = self.sql("SHOW GLOBAL STATUS LIKE 'wsrep_cluster_size'")
        return int(out.split()[-1])

    # ------------------------------------------------------------ life

    def running(self) -> bool:
        return all(node.running() for node in self.nodes)

    def start(self) -> None:
        for node in self.nodes:
            node.init()
        if not any(node.running() for node in self.nodes):
            first = self._bootstrap_node()
            first.once_args = ["--wsrep-new-cluster"]
            first.start()
            wait_until(lambda: self.ready(first), "the first Galera node", timeout=120)
            self._provision(first)
        for node in self.nodes:
            (node.root / _MARK).write_text("")  # root's password comes with the state transfer
        joining = [node for node in self.nodes if not node.running()]
        for node in joining:  # one at a time: they share the state file
            self._free_transfer_ports(node)
        in_parallel([self._join(node) for node in joining])
        wait_until(lambda: self.size() == len(self.nodes), "every Galera node", timeout=60)

    def _join(self, node: MariaDB) -> _Start:
        return _Start(self, node)

    def _bootstrap_node(self) -> MariaDB:
        for node in self.nodes:
            state = node.data / "grastate.dat"
            if state.exists() and _SAFE.search(state.read_text()):
                return node
        first = self.first
        state = first.data / "grastate.dat"
        if state.exists():
            # Every node crashed: none is marked safe. A throwaway cluster takes the first
            # node's data as the truth.
            state.write_text(
                re.sub(r"safe_to_bootstrap:\s*0", "safe_to_bootstrap: 1", state.read_text())
            )
        return first

    def _provision(self, node: MariaDB) -> None:
        if not (node.root / _MARK).exists():
            node.provision_root()

    def restart(self, node: MariaDB) -> None:
        """A node killed or stopped joins the running cluster again."""
        self._free_transfer_ports(node)
        _Start(self, node)()

    def stop(self) -> None:
        failures = []
        for node in reversed(self.nodes):
            try:
                node.stop()
            except StackError as e:
                failures.append(str(e))
        if failures:
            raise StackError("; ".join(failures))


class _Start:
    """Start one node into the running cluster and wait until it is synced."""

    def __init__(self, cluster: Galera, node: MariaDB) -> None:
        self.cluster, self.node = cluster, node

    def __call__(self) -> None:
        self.node.start()
        wait_until(lambda: self.cluster.ready(self.node), f"Galera node {self.node.root.name}", 180)
