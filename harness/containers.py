"""The containers provider (CDC_TEST_SERVERS=containers): the images of compose.yaml, run with
testcontainers on a Docker engine of this machine, each published on a loopback port.

Thin on purpose: no engine runs on the project's own machines (development and CI use the
local provider), so all that can be decided without one is plain data and plain functions,
unit-tested in tests/unit/test_servers.py: which image each server runs, with which command,
environment and port, how it is known to be ready, and the commands run inside it. Only
Engine, at the end, talks to Docker.

Local-only, failing with one line (LocalOnly): TLS (the images are not set up for it) and
stopping or starting a server (the fault tests and the drill).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from devstack import mariadb, postgres, rabbitmq
from devstack.system import StackError, free_port, port_open, wait_until

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "compose.yaml"
SERVICES = ("postgres", "rabbitmq", "mariadb")
CONTAINER_PORTS = {"postgres": 5432, "rabbitmq": 5672, "mariadb": 3306}
APP_USER = "cdc"  # the broker's user (compose.yaml's RABBITMQ_DEFAULT_USER)
DOCKER_SOCKET = Path("/var/run/docker.sock")

# Runs a command inside one server's container with the given standard input; its output.
Exec = Callable[[Sequence[str], str], str]


class LocalOnly(StackError):
    """What the containers provider does not do."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"{what} needs the local servers: run with CDC_TEST_SERVERS=local (the default)"
        )


@dataclass(frozen=True)
class ContainerSpec:
    """One server's container, as it would be started."""

    service: str  # its name in compose.yaml
    image: str
    build: tuple[Path, str] | None  # (context, Dockerfile in it): built first, tagged image
    command: tuple[str, ...]
    env: Mapping[str, str]
    port: int  # inside the container
    host_port: int  # published on 127.0.0.1
    ready: tuple[str, ...]  # run inside until it succeeds: compose.yaml's healthcheck


def load_compose(path: Path = COMPOSE) -> dict[str, Any]:
    services: dict[str, Any] = yaml.safe_load(path.read_text())["services"]
    return services


def container_specs(
    compose: Mapping[str, Any],
    host_ports: Mapping[str, int],
    postgres_password: str,
    mariadb_password: str,
    app_password: str,
) -> dict[str, ContainerSpec]:
    """The three containers: compose.yaml's images and health checks, the tests' server
    settings (those the local servers run with), the passwords given."""

    def spec(service: str, command: Sequence[str], env: Mapping[str, str]) -> ContainerSpec:
        entry = compose[service]
        build = entry.get("build")
        probe = [word for word in entry["healthcheck"]["test"] if word != "CMD"]
        return ContainerSpec(
            service=service,
            image=entry["image"],
            build=(ROOT / build["context"], build["dockerfile"]) if build else None,
            command=tuple(command),
            env=dict(env),
            port=CONTAINER_PORTS[service],
            host_port=host_ports[service],
            ready=tuple(probe),
        )

    pg_command = ["postgres"]
    for key, value in postgres.SERVER_SETTINGS.items():
        # postgresql.conf quotes strings; on the command line the value is taken whole.
        pg_command += ["-c", f"{key}={value.strip(chr(39))}"]
    maria_command = [
        *compose["mariadb"].get("command", []),
        *(o for o in mariadb.SERVER_OPTIONS if o not in compose["mariadb"].get("command", [])),
    ]
    return {
        "postgres": spec(
            "postgres",
            pg_command,
            # POSTGRES_DB: the database compose.yaml's health check names.
            {"POSTGRES_PASSWORD": postgres_password, "POSTGRES_DB": "cdc_source"},
        ),
        "rabbitmq": spec(
            "rabbitmq",
            (),  # the image's own
            {"RABBITMQ_DEFAULT_USER": APP_USER, "RABBITMQ_DEFAULT_PASS": app_password},
        ),
        "mariadb": spec("mariadb", maria_command, {"MARIADB_ROOT_PASSWORD": mariadb_password}),
    }


@dataclass
class ContainerPostgres:
    port: int
    password: str
    run: Exec

    def dsn(
        self, database: str = "postgres", user: str = "postgres", password: str | None = None
    ) -> str:
        pw = self.password if password is None else password
        return postgres.loopback_dsn(self.port, database, user, pw)

    def psql(
        self, sql: str, database: str = "postgres", variables: dict[str, str] | None = None
    ) -> str:
        return self.run(["psql", *postgres.psql_arguments(database, variables)], sql)

    def grant_source(
        self, role: str, password: str, database: str, owner: str, schema: str = "public"
    ) -> None:
        script, variables = postgres.source_role(role, password, owner, schema)
        self.psql(script, database, variables)

    def running(self) -> bool:
        return port_open(self.port)

    def start(self) -> None:
        if not self.running():
            raise LocalOnly("starting a stopped PostgreSQL")

    def stop(self, mode: str = "fast") -> None:
        raise LocalOnly("stopping PostgreSQL")


@dataclass
class ContainerRabbitMQ:
    port: int
    password: str
    run: Exec
    app_user: str = APP_USER

    def url(self, vhost: str = "%2F") -> str:
        return rabbitmq.loopback_url(self.port, self.app_user, self.password, vhost)

    def tls_url(self, vhost: str = "%2F") -> str:
        raise LocalOnly("RabbitMQ over TLS")

    def ctl(self, *args: str, timeout: float = 60) -> str:
        return self.run(["rabbitmqctl", *args], "")

    def running(self) -> bool:
        return port_open(self.port)

    def start(self) -> None:
        if not self.running():
            raise LocalOnly("starting a stopped RabbitMQ")

    def stop(self) -> None:
        raise LocalOnly("stopping RabbitMQ")


@dataclass
class ContainerMariaDB:
    port: int
    password: str
    run: Exec

    def url(self, database: str, user: str = "root", password: str | None = None) -> str:
        pw = self.password if password is None else password
        return mariadb.loopback_url(self.port, database, user, pw)

    def sql(self, statements: str, database: str = "") -> str:
        argv = ["mariadb", "-uroot", f"-p{self.password}", "--batch", "--skip-column-names"]
        return self.run([*argv, *([database] if database else [])], statements)

    def grant_target(self, user: str, password: str, database: str) -> None:
        # The tests connect through the engine's port forwarding, not from the container's
        # loopback: the user may come from any host.
        self.sql(mariadb.target_user_sql(user, password, database, "%"))

    def running(self) -> bool:
        return port_open(self.port)

    def start(self) -> None:
        if not self.running():
            raise LocalOnly("starting a stopped MariaDB")

    def stop(self) -> None:
        raise LocalOnly("stopping MariaDB")


@dataclass
class ContainerServers:
    specs: dict[str, ContainerSpec]
    app_password: str
    postgres: ContainerPostgres = field(init=False)
    rabbitmq: ContainerRabbitMQ = field(init=False)
    mariadb: ContainerMariaDB = field(init=False)
    _engine: Engine | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        def runner(service: str) -> Exec:
            return lambda argv, stdin: self._exec(service, argv, stdin)

        env = {name: spec.env for name, spec in self.specs.items()}
        self.postgres = ContainerPostgres(
            self.specs["postgres"].host_port,
            env["postgres"]["POSTGRES_PASSWORD"],
            runner("postgres"),
        )
        self.rabbitmq = ContainerRabbitMQ(
            self.specs["rabbitmq"].host_port, self.app_password, runner("rabbitmq")
        )
        self.mariadb = ContainerMariaDB(
            self.specs["mariadb"].host_port,
            env["mariadb"]["MARIADB_ROOT_PASSWORD"],
            runner("mariadb"),
        )

    @classmethod
    def create(cls, compose: Path = COMPOSE) -> ContainerServers:
        """Free loopback ports and new passwords; nothing is started yet."""
        app_password = secrets.token_hex(12)
        specs = container_specs(
            load_compose(compose),
            {name: free_port() for name in SERVICES},
            postgres_password=secrets.token_hex(12),
            mariadb_password=secrets.token_hex(12),
            app_password=app_password,
        )
        return cls(specs, app_password)

    def _exec(self, service: str, argv: Sequence[str], stdin: str) -> str:
        if self._engine is None:
            raise StackError(f"{service}: the containers are not started")
        return self._engine.exec(service, argv, stdin)

    def start(self) -> None:
        if self._engine is not None:
            return
        self._engine = Engine()
        for spec in self.specs.values():
            self._engine.run(spec)
        for spec in self.specs.values():
            self._engine.wait_ready(spec)

    def stop(self) -> None:
        if self._engine is not None:
            self._engine.remove_all()
            self._engine = None

    def running(self) -> dict[str, bool]:
        return {name: port_open(spec.host_port) for name, spec in self.specs.items()}

    def tls_env(self) -> dict[str, str]:
        raise LocalOnly("TLS")


class Engine:
    """What needs a Docker engine: build, start, exec in and remove the containers."""

    def __init__(self) -> None:
        if not os.environ.get("DOCKER_HOST") and not DOCKER_SOCKET.exists():
            raise StackError(
                f"CDC_TEST_SERVERS=containers: no Docker engine here (DOCKER_HOST is not set"
                f" and {DOCKER_SOCKET} does not exist)"
            )
        # Imported here: the local provider, the benchmark and the drill never need it.
        try:
            from testcontainers.core.container import DockerContainer
            from testcontainers.core.image import DockerImage
        except ImportError as e:
            raise StackError(
                "CDC_TEST_SERVERS=containers needs testcontainers (make setup installs it)"
            ) from e
        self._container_class = DockerContainer
        self._image_class = DockerImage
        self._running: dict[str, Any] = {}

    def run(self, spec: ContainerSpec) -> None:
        try:
            if spec.build is not None:
                context, dockerfile = spec.build
                image = self._image_class(
                    path=context, dockerfile_path=dockerfile, tag=spec.image, clean_up=False
                )
                image.build()
            container = self._container_class(spec.image)
            if spec.command:
                container.with_command(list(spec.command))
            for key, value in spec.env.items():
                container.with_env(key, value)
            # Published on loopback only: docker-py takes an (address, port) pair, which
            # with_bind_ports does not offer.
            ports: dict[str, Any] = container.ports
            ports[f"{spec.port}/tcp"] = ("127.0.0.1", spec.host_port)
            container.start()
        except Exception as e:  # the engine's and testcontainers' errors alike
            raise StackError(f"{spec.service}: cannot start {spec.image}: {e}") from e
        self._running[spec.service] = container

    def wait_ready(self, spec: ContainerSpec, timeout: float = 180) -> None:
        def ready() -> bool:
            code, _ = self._exec_raw(spec.service, spec.ready, "")
            return code == 0 and port_open(spec.host_port)

        wait_until(ready, f"{spec.service} to be ready ({spec.image})", timeout, interval=1)

    def exec(self, service: str, argv: Sequence[str], stdin: str) -> str:
        code, output = self._exec_raw(service, argv, stdin)
        if code != 0:
            raise StackError(f"{argv[0]} in {service} failed with code {code}: {output[-2000:]}")
        return output

    def _exec_raw(self, service: str, argv: Sequence[str], stdin: str) -> tuple[int, str]:
        # docker exec takes no standard input here: it goes in through the environment.
        wrapped = ["sh", "-c", 'printf %s "$CDC_STDIN" | "$@"', "sh", *argv]
        docker_container = self._running[service].get_wrapped_container()
        code, (out, err) = docker_container.exec_run(
            wrapped, environment={"CDC_STDIN": stdin}, demux=True
        )
        text = (out or b"").decode(errors="replace")
        if code != 0:
            text += (err or b"").decode(errors="replace")
        return int(code), text

    def remove_all(self) -> None:
        for container in self._running.values():
            container.stop()
        self._running.clear()
