"""The three servers together: one folder, one state file, one set of connection settings."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from devstack.galera import Galera
from devstack.mariadb import MariaDB
from devstack.postgres import OWNER_ROLE, Postgres
from devstack.rabbit_cluster import RabbitCluster
from devstack.rabbitmq import RabbitMQ
from devstack.system import StackError, free_port, in_parallel, install_packages
from devstack.tls import Certificates, ensure_certificates

APP_USER = "cdc"
SOURCE_DB = "cdc_source"
TARGET_DB = "cdc_target"
SLOT = "cdc_demo"


def default_dir() -> Path:
    """.stack/ in the checkout, or a folder under /var/tmp if the servers' own users could not
    reach into the checkout (e.g. a clone under a private home or /tmp folder)."""
    env = os.environ.get("CDC_STACK_DIR")
    if env:
        return Path(env).resolve()
    checkout = Path(__file__).resolve().parent.parent
    if os.geteuid() != 0 or _reachable_by_others(checkout):
        return checkout / ".stack"
    digest = hashlib.sha256(str(checkout).encode()).hexdigest()[:10]
    # Predictable, so Stack.load refuses it unless we own it.
    return Path("/var/tmp") / f"pg2maria-stack-{digest}"  # noqa: S108


def _reachable_by_others(path: Path) -> bool:
    return all(os.stat(p).st_mode & stat.S_IXOTH for p in (path, *path.parents))


@dataclass
class Stack:
    root: Path
    postgres: Postgres
    mariadb: MariaDB
    rabbitmq: RabbitMQ
    app_password: str
    # On request, clusters beside the single servers; the pipeline's settings (env()) then
    # name them. The single servers stay: the demo and the tests' administration use them.
    rabbit_cluster: RabbitCluster | None = None
    galera: Galera | None = None

    @classmethod
    def load(
        cls,
        root: Path | None = None,
        *,
        rabbitmq_nodes: int | None = None,
        mariadb_nodes: int | None = None,
    ) -> Stack:
        """The stack described in root/stack.json, created (ports, passwords) if missing.
        ``rabbitmq_nodes`` / ``mariadb_nodes`` above 1 add a RabbitMQ cluster / a Galera
        cluster of that many nodes (kept in stack.json: later commands find them)."""
        root = (root or default_dir()).resolve()
        if root.exists() and root.stat().st_uid != os.geteuid():
            raise StackError(f"{root} belongs to another user; set CDC_STACK_DIR elsewhere")
        state_file = root / "stack.json"
        if state_file.exists():
            state = json.loads(state_file.read_text())
            if "tls_port" not in state["rabbitmq"]:
                # A stack made before TLS: its RabbitMQ gets a TLS port now, its listener on
                # the next start (see start()).
                state["rabbitmq"]["tls_port"] = free_port()
                state_file.write_text(json.dumps(state, indent=2))
        else:
            root.mkdir(parents=True, exist_ok=True)
            root.chmod(0o755)
            state = {
                "postgres": {"port": free_port(), "password": secrets.token_hex(12)},
                "mariadb": {"port": free_port(), "password": secrets.token_hex(12)},
                "rabbitmq": {
                    "port": free_port(),
                    "dist_port": free_port(),
                    "epmd_port": free_port(),
                    "tls_port": free_port(),
                },
                "app_password": secrets.token_hex(12),
            }
            state_file.write_text(json.dumps(state, indent=2))
            state_file.chmod(0o600)
        for key, wanted in (("rabbitmq_nodes", rabbitmq_nodes), ("mariadb_nodes", mariadb_nodes)):
            if wanted is not None and wanted != state.get(key, 1):
                state[key] = wanted
                state_file.write_text(json.dumps(state, indent=2))
        app_password = state["app_password"]
        rabbits, marias = state.get("rabbitmq_nodes", 1), state.get("mariadb_nodes", 1)
        return cls(
            root=root,
            postgres=Postgres(root / "postgres", **state["postgres"]),
            mariadb=MariaDB(root / "mariadb", **state["mariadb"]),
            rabbitmq=RabbitMQ(root / "rabbitmq", password=app_password, **state["rabbitmq"]),
            app_password=app_password,
            rabbit_cluster=(
                RabbitCluster.load(root / "rabbitmq-cluster", rabbits, app_password)
                if rabbits > 1
                else None
            ),
            galera=Galera.load(root / "galera", marias) if marias > 1 else None,
        )

    @property
    def certificates(self) -> Certificates:
        """The stack's throwaway CA and server certificate (made by start())."""
        return Certificates(self.root / "tls")

    @property
    def ca_file(self) -> Path:
        """The CA certificate (PEM) that every server's certificate verifies against."""
        return self.certificates.ca

    def start(self) -> None:
        install_packages()
        # Made before the servers start; a server running without TLS (a stack made before
        # it) is reloaded or restarted with it by its start step.
        ensure_certificates(self.certificates.folder)
        # RabbitMQ takes the longest to boot; the three start side by side.
        steps = [self._start_postgres, self._start_mariadb, self._start_rabbitmq]
        if self.rabbit_cluster is not None:
            steps.append(self.rabbit_cluster.start)
        if self.galera is not None:
            steps.append(self._start_galera)
        in_parallel(steps)

    def _start_postgres(self) -> None:
        self.postgres.init()
        self.postgres.enable_tls(self.certificates)
        self.postgres.start()
        self.postgres.provision(APP_USER, self.app_password, SOURCE_DB)

    def _start_mariadb(self) -> None:
        self.mariadb.init()
        self.mariadb.enable_tls(self.certificates)
        self.mariadb.start()
        self.mariadb.provision(APP_USER, self.app_password, TARGET_DB)

    def _start_galera(self) -> None:
        assert self.galera is not None
        self.galera.start()
        self.galera.sql(
            f"CREATE DATABASE IF NOT EXISTS `{TARGET_DB}` CHARACTER SET utf8mb4 "
            "COLLATE utf8mb4_nopad_bin;\n"
        )
        self.galera.grant_target(APP_USER, self.app_password, TARGET_DB)

    def _start_rabbitmq(self) -> None:
        self.rabbitmq.init()
        self.rabbitmq.enable_tls(self.certificates)
        self.rabbitmq.start()

    def stop(self) -> None:
        failures = []
        clusters: list[RabbitCluster | Galera] = [
            c for c in (self.rabbit_cluster, self.galera) if c is not None
        ]
        for server in (*clusters, self.rabbitmq, self.mariadb, self.postgres):
            try:
                server.stop()
            except StackError as e:
                failures.append(str(e))
        if failures:
            raise StackError("; ".join(failures))

    def running(self) -> dict[str, bool]:
        up = {
            "postgres": self.postgres.running(),
            "mariadb": self.mariadb.running(),
            "rabbitmq": self.rabbitmq.running(),
        }
        if self.rabbit_cluster is not None:
            up["rabbitmq-cluster"] = self.rabbit_cluster.running()
        if self.galera is not None:
            up["galera"] = self.galera.running()
        return up

    def tls_env(self) -> dict[str, str]:
        """Settings that make the pipeline use TLS on all three connections, every server
        certificate verified against the stack's CA (added to env())."""
        ca = str(self.ca_file)
        return {
            "CDC_SOURCE_SSLMODE": "verify-full",
            "CDC_SOURCE_SSLROOTCERT": ca,
            "CDC_BROKER_URL": self.rabbitmq.tls_url(),
            "CDC_BROKER_CA_FILE": ca,
            "CDC_TARGET_SSL": "true",
            "CDC_TARGET_SSL_CA": ca,
        }

    def env(self) -> dict[str, str]:
        """The pipeline's settings for this stack (CDC_*), and the admin ones tests use."""
        clustered: dict[str, str] = {}
        if self.rabbit_cluster is not None:
            clustered["CDC_BROKER_URL"] = self.rabbit_cluster.url()
            clustered["CDC_BROKER_QUEUE_TYPE"] = "quorum"
        if self.galera is not None:
            clustered["CDC_TARGET_URL"] = self.galera.url(TARGET_DB, APP_USER, self.app_password)
        return {
            "CDC_SOURCE_DSN": self.postgres.dsn(SOURCE_DB, APP_USER, self.app_password),
            "CDC_SLOT": SLOT,
            "CDC_BROKER_URL": self.rabbitmq.url(),
            "CDC_TARGET_URL": self.mariadb.url(TARGET_DB, APP_USER, self.app_password),
            "CDC_METRICS_HOST": "127.0.0.1",  # a local stack: nothing outside needs to scrape
            # The application that owns the source tables (the demo writes as it).
            "DEVSTACK_SOURCE_APP_DSN": self.postgres.dsn(SOURCE_DB, OWNER_ROLE, self.app_password),
            "DEVSTACK_PG_ADMIN_DSN": self.postgres.dsn("postgres"),
            "DEVSTACK_MARIADB_ADMIN_URL": self.mariadb.url(""),
            **clustered,
        }
