"""The test servers' providers (harness/servers.py): what the containers provider would start,
what it runs inside the containers, and that the tests get the same settings from either.

No Docker engine runs here: the containers are never started; what they would be is data.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from devstack import mariadb, postgres
from devstack.__main__ import NODES_RABBITMQ, nodes
from devstack.galera import Galera
from devstack.stack import APP_USER, Stack
from devstack.system import StackError, in_parallel
from harness import containers
from harness.containers import (
    COMPOSE,
    ContainerServers,
    LocalOnly,
    container_specs,
    load_compose,
)
from harness.pipeline import Pipeline
from harness.servers import PROVIDER_SETTING, Servers, provider
from shared.config import DlqConfig, load_config
from shared.parsers import target_hosts

PORTS = {"postgres": 15432, "rabbitmq": 15672, "mariadb": 13306}


def test_provider_is_local_unless_containers_are_asked_for() -> None:
    assert provider({}) == "local"
    assert provider({PROVIDER_SETTING: ""}) == "local"
    assert provider({PROVIDER_SETTING: "containers"}) == "containers"
    with pytest.raises(StackError, match=f"{PROVIDER_SETTING}='docker': expected one of local"):
        provider({PROVIDER_SETTING: "docker"})


def test_containers_run_the_images_of_compose_yaml() -> None:
    compose = load_compose()
    made = container_specs(compose, PORTS, "pg-pw", "maria-pw", "app-pw")
    assert set(made) == {"postgres", "rabbitmq", "mariadb"}
    for name, spec in made.items():
        assert spec.image == compose[name]["image"]
        # compose.yaml's health check is how a container is known to be ready.
        assert ["CMD", *spec.ready] == compose[name]["healthcheck"]["test"]
    pg = made["postgres"]
    assert pg.build == (COMPOSE.parent / "docker", "postgres.Dockerfile")
    assert (pg.build[0] / pg.build[1]).exists()
    assert made["rabbitmq"].build is None and made["mariadb"].build is None


def test_containers_run_with_the_local_servers_settings() -> None:
    made = container_specs(load_compose(), PORTS, "pg-pw", "maria-pw", "app-pw")
    command = made["postgres"].command
    assert command[0] == "postgres"
    given = dict(arg.split("=", 1) for arg in command[2::2])
    assert command[1::2] == ("-c",) * len(given)
    assert given == {k: v.strip("'") for k, v in postgres.SERVER_SETTINGS.items()}
    assert given["wal_level"] == "logical" and given["timezone"] == postgres.SERVER_TIMEZONE
    assert "wal2json" in given["output_plugin_libraries"]
    maria = made["mariadb"].command
    assert set(mariadb.SERVER_OPTIONS) <= set(maria)
    assert list(maria[:2]) == load_compose()["mariadb"]["command"]
    assert len(maria) == len(set(maria))
    assert made["rabbitmq"].command == ()  # the image's own


def test_containers_get_the_passwords_and_loopback_ports() -> None:
    made = container_specs(load_compose(), PORTS, "pg-pw", "maria-pw", "app-pw")
    assert made["postgres"].env["POSTGRES_PASSWORD"] == "pg-pw"
    assert made["mariadb"].env["MARIADB_ROOT_PASSWORD"] == "maria-pw"
    assert made["rabbitmq"].env == {
        "RABBITMQ_DEFAULT_USER": "cdc",
        "RABBITMQ_DEFAULT_PASS": "app-pw",
    }
    assert {n: (s.port, s.host_port) for n, s in made.items()} == {
        "postgres": (5432, 15432),
        "rabbitmq": (5672, 15672),
        "mariadb": (3306, 13306),
    }


class Recorder:
    """Stands for a container: records each command and its standard input."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], str]] = []

    def __call__(self, argv: Sequence[str], stdin: str) -> str:
        self.calls.append((list(argv), stdin))
        return "out"


def recorded(servers: ContainerServers) -> dict[str, Recorder]:
    recorders = {name: Recorder() for name in ("postgres", "rabbitmq", "mariadb")}
    servers.postgres.run = recorders["postgres"]
    servers.rabbitmq.run = recorders["rabbitmq"]
    servers.mariadb.run = recorders["mariadb"]
    return recorders


def test_commands_run_inside_the_containers() -> None:
    servers = ContainerServers.create()
    calls = recorded(servers)

    assert servers.postgres.psql("SELECT 1", "shop") == "out"
    argv, stdin = calls["postgres"].calls[-1]
    assert argv == ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-At", "-U", "postgres",
                    "-d", "shop", "-f", "-"]  # fmt: skip
    assert stdin == "SELECT 1"

    servers.postgres.grant_source("cdc", "pw", "shop", owner="postgres", schema="sales")
    argv, stdin = calls["postgres"].calls[-1]
    assert stdin == (COMPOSE.parent / "sql" / "source-role.sql").read_text()
    variables = dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "-v")
    assert variables == {
        "ON_ERROR_STOP": "1", "role": "cdc", "password": "pw", "schema": "sales", "owner": "postgres",
    }  # fmt: skip

    servers.mariadb.grant_target("cdc", "pw", "shop")
    argv, stdin = calls["mariadb"].calls[-1]
    assert argv[0] == "mariadb" and "--batch" in argv
    # Through the engine's port forwarding the tests do not come from the container's loopback.
    assert stdin.startswith("SET @db = 'shop', @user = 'cdc', @host = '%', @password = 'pw';")
    assert stdin.endswith((COMPOSE.parent / "sql" / "target-user.sql").read_text())
    servers.mariadb.sql("SHOW DATABASES", "shop")
    assert calls["mariadb"].calls[-1][0][-1] == "shop"

    servers.rabbitmq.ctl("list_queues", "name")
    assert calls["rabbitmq"].calls[-1] == (["rabbitmqctl", "list_queues", "name"], "")


def test_nothing_runs_before_the_containers_are_started() -> None:
    servers = ContainerServers.create()
    with pytest.raises(StackError, match="not started"):
        servers.postgres.psql("SELECT 1")


def settings_shape(servers: Servers, tmp_path: Path) -> dict[str, tuple[str, ...]]:
    """Each setting the pipeline gets, with what varies between providers (ports,
    passwords) left out."""
    env = Pipeline(servers, "t_shape", tmp_path).env
    shape: dict[str, tuple[str, ...]] = {}
    for key, value in env.items():
        if not key.startswith("CDC_"):
            continue
        parts = urlsplit(value)
        if parts.scheme:
            shape[key] = (parts.scheme, str(parts.hostname), str(parts.username), parts.path)
        else:
            shape[key] = (value,)
    return shape


def test_the_tests_get_the_same_settings_from_either_provider(tmp_path: Path) -> None:
    local = Stack.load(tmp_path / "stack")  # nothing started: the folder and its ports
    containers = ContainerServers.create()
    shape = settings_shape(local, tmp_path)
    assert shape == settings_shape(containers, tmp_path)
    assert shape["CDC_SOURCE_DSN"] == ("postgresql", "127.0.0.1", APP_USER, "/t_shape")
    assert shape["CDC_TARGET_URL"] == (
        "mariadb+mariadbconnector",
        "127.0.0.1",
        APP_USER,
        "/t_shape",
    )
    assert shape["CDC_BROKER_URL"] == ("amqp", "127.0.0.1", "cdc", "/%2F")
    for servers in (local, containers):
        env = Pipeline(servers, "t_shape", tmp_path).env
        assert f":{servers.postgres.port}/" in env["CDC_SOURCE_DSN"]
        assert f":{servers.rabbitmq.port}/" in env["CDC_BROKER_URL"]
        assert f":{servers.mariadb.port}/" in env["CDC_TARGET_URL"]
        assert servers.app_password in env["CDC_SOURCE_DSN"]
        assert servers.postgres.dsn("x").startswith("postgresql://postgres:")
        assert servers.mariadb.url("x").startswith("mariadb+mariadbconnector://root:")


def test_what_only_local_servers_do_is_a_clear_error() -> None:
    servers = ContainerServers.create()
    for call in (
        servers.postgres.stop,
        servers.mariadb.stop,
        servers.rabbitmq.stop,
        servers.tls_env,
        servers.rabbitmq.tls_url,
    ):
        with pytest.raises(
            LocalOnly, match="needs the local servers: run with CDC_TEST_SERVERS=local"
        ):
            call()
    # Nothing listens on the chosen ports: starting a stopped server is local-only too.
    with pytest.raises(LocalOnly, match="starting a stopped PostgreSQL"):
        servers.postgres.start()


def test_without_a_docker_engine_the_containers_provider_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.setattr(containers, "DOCKER_SOCKET", tmp_path / "docker.sock")
    with pytest.raises(StackError, match="CDC_TEST_SERVERS=containers: no Docker engine here"):
        ContainerServers.create().start()


def test_the_stack_names_its_clusters_when_asked(tmp_path: Path) -> None:
    # Nothing started: the folders, the ports, the settings they make.
    stack = Stack.load(tmp_path / "stack", rabbitmq_nodes=3, mariadb_nodes=3)
    env = stack.env()
    assert env["CDC_BROKER_QUEUE_TYPE"] == "quorum"
    broker = load_config(DlqConfig, environ={**env, "CDC_SLOT": "s"}).broker
    assert stack.rabbit_cluster is not None and stack.galera is not None
    assert [u.reveal() for u in broker.urls] == [n.url() for n in stack.rabbit_cluster.nodes]
    assert len({n.port for n in stack.rabbit_cluster.nodes}) == 3
    assert len({n.epmd_port for n in stack.rabbit_cluster.nodes}) == 1  # one port mapper
    hosts = target_hosts(env["CDC_TARGET_URL"])
    assert [urlsplit(h).port for h in hosts] == [n.port for n in stack.galera.nodes]
    # Galera's nodes: every port distinct (SQL, group communication, IST, SST).
    state = json.loads((stack.galera.root / "galera.json").read_text())
    ports = [p for node in state["nodes"] for p in node.values()]
    assert len(ports) == len(set(ports)) == 3 * 4
    for node, given in zip(stack.galera.nodes, state["nodes"], strict=True):
        args = " ".join(node.extra_args)
        for port in given.values():
            assert f"127.0.0.1:{port}" in args
    # Kept: a later command (env, stop) finds them without being told.
    again = Stack.load(tmp_path / "stack")
    assert again.env()["CDC_BROKER_URL"] == env["CDC_BROKER_URL"]
    assert "CDC_BROKER_QUEUE_TYPE" not in Stack.load(tmp_path / "stack", rabbitmq_nodes=1).env()


def test_a_galera_node_gets_new_transfer_ports_when_another_server_took_one(
    tmp_path: Path,
) -> None:
    galera = Galera.load(tmp_path / "galera", 3)
    node = galera.nodes[1]
    state = json.loads((galera.root / "galera.json").read_text())
    taken = state["nodes"][1]["sst_port"]
    with socket.socket() as other:  # another server of the machine, on that port
        other.bind(("127.0.0.1", taken))
        other.listen()
        galera._free_transfer_ports(node)
    now = json.loads((galera.root / "galera.json").read_text())["nodes"][1]
    assert now["sst_port"] != taken and now["ist_port"] == state["nodes"][1]["ist_port"]
    assert f"--wsrep-sst-receive-address=127.0.0.1:{now['sst_port']}" in node.extra_args
    assert Galera.load(tmp_path / "galera", 3).nodes[1].extra_args == node.extra_args


def test_cluster_sizes_come_from_the_option_or_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(NODES_RABBITMQ, raising=False)
    assert nodes(None, NODES_RABBITMQ) is None  # as the stack was
    monkeypatch.setenv(NODES_RABBITMQ, "3")
    assert nodes(None, NODES_RABBITMQ) == 3
    assert nodes(1, NODES_RABBITMQ) == 1  # the option wins
    monkeypatch.setenv(NODES_RABBITMQ, "three")
    with pytest.raises(StackError, match="CDC_STACK_RABBITMQ_NODES='three'"):
        nodes(None, NODES_RABBITMQ)


def test_in_parallel_runs_every_step_and_raises_the_first_failure() -> None:
    ran: list[str] = []

    def ok() -> None:
        ran.append("ok")

    def broken() -> None:
        ran.append("broken")
        raise StackError("no port")

    with pytest.raises(StackError, match="no port"):
        in_parallel([ok, broken, ok])
    assert sorted(ran) == ["broken", "ok", "ok"]


def test_a_port_is_never_handed_out_twice(monkeypatch: pytest.MonkeyPatch) -> None:
    # The kernel may give the same free port to two binds in a row: a stack's servers must
    # not be given one port between them.
    from devstack import system

    offered = iter([41001, 41001, 41002, 41001, 41003])

    class Probe:
        def __enter__(self) -> Probe:
            return self

        def __exit__(self, *_: object) -> None:
            return None

        def bind(self, _address: tuple[str, int]) -> None:
            self.port = next(offered)

        def getsockname(self) -> tuple[str, int]:
            return ("127.0.0.1", self.port)

    monkeypatch.setattr(system, "_GIVEN", set())
    monkeypatch.setattr(socket, "socket", lambda *_args: Probe())
    assert [system.free_port() for _ in range(3)] == [41001, 41002, 41003]
