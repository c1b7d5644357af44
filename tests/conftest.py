"""Servers for the integration and end-to-end tests.

By default the local servers of devstack in .stack/test (CDC_TEST_STACK_DIR to change it), apart
from the demo's: started once per session and stopped at the end, unless they were already
running before (then they are left as they were, which makes re-running tests during
development fast). CDC_TEST_SERVERS=containers runs compose.yaml's images instead
(harness/servers.py says what each provider can do).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.galera import Galera
from devstack.rabbit_cluster import RabbitCluster
from devstack.stack import Stack
from harness.clusters import galera_of, rabbit_cluster_of, running
from harness.containers import LocalOnly
from harness.pipeline import Pipeline, new_pipeline
from harness.servers import Servers, servers_for_tests


@pytest.fixture(scope="session")
def stack() -> Iterator[Servers]:
    """The servers, from the provider CDC_TEST_SERVERS names (harness/servers.py)."""
    with servers_for_tests() as servers:
        yield servers


@pytest.fixture
def local_stack(stack: Servers) -> Stack:
    """The local servers, for a test that makes servers of its own beside them."""
    if not isinstance(stack, Stack):
        raise LocalOnly("this test (it makes a PostgreSQL cluster of its own with devstack)")
    return stack


@pytest.fixture(scope="session")
def rabbit_cluster(stack: Servers) -> Iterator[RabbitCluster]:
    """devstack's 3-node RabbitMQ cluster beside the stack (started once per session)."""
    if not isinstance(stack, Stack):
        raise LocalOnly("this test (it runs devstack's RabbitMQ cluster)")
    cluster = rabbit_cluster_of(stack)
    with running(cluster):
        yield cluster


@pytest.fixture(scope="session")
def galera(stack: Servers) -> Iterator[Galera]:
    """devstack's 3-node MariaDB Galera cluster beside the stack (started once per session)."""
    if not isinstance(stack, Stack):
        raise LocalOnly("this test (it runs devstack's Galera cluster)")
    cluster = galera_of(stack)
    with running(cluster):
        yield cluster


DECODERS = ("wal2json", "pgoutput")


@pytest.fixture
def decoder(request: pytest.FixtureRequest) -> str:
    """source.decoder of the test's pipeline: wal2json, or each in turn for a test marked
    ``decoders`` (the core of the e2e suite, run with both)."""
    return str(getattr(request, "param", "wal2json"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("decoders") and "decoder" in metafunc.fixturenames:
        metafunc.parametrize("decoder", DECODERS, indirect=True)


@pytest.fixture
def pipeline(stack: Servers, tmp_path: Path, decoder: str) -> Iterator[Pipeline]:
    """A fresh source database, slot, queue and target database for one test."""
    for server in (stack.postgres, stack.mariadb, stack.rabbitmq):
        server.start()  # a previous test may have stopped one on purpose
    p = new_pipeline(stack, tmp_path, decoder)
    yield p
    p.destroy()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.fspath)
        if "tests/integration/" in path:
            item.add_marker(pytest.mark.integration)
        elif "tests/e2e/" in path:
            item.add_marker(pytest.mark.e2e)
