"""The servers the tests run on, from one of two providers, chosen by CDC_TEST_SERVERS:

- ``local`` (the default, and CI's): devstack's private PostgreSQL, RabbitMQ and MariaDB on
  free loopback ports, in .stack/test (CDC_TEST_STACK_DIR to change it);
- ``containers``: the images of compose.yaml, started with testcontainers on a Docker engine
  of this machine (harness/containers.py).

Both offer what the tests use and nothing more (Servers, below): connection strings, SQL as
the administrator, the pipeline's least-privileged accounts (sql/), rabbitmqctl, and for the
fault tests stopping and starting a server. The containers provider cannot do everything the
local one does; what it cannot do fails with one line saying to use the local provider.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from devstack.stack import Stack, default_dir
from devstack.system import StackError

PROVIDER_SETTING = "CDC_TEST_SERVERS"
PROVIDERS = ("local", "containers")


class SourceServer(Protocol):
    """PostgreSQL."""

    @property
    def port(self) -> int: ...

    def dsn(
        self, database: str = "postgres", user: str = "postgres", password: str | None = None
    ) -> str:
        """A libpq URI; the superuser unless ``user`` and ``password`` say otherwise."""
        ...

    def psql(
        self, sql: str, database: str = "postgres", variables: dict[str, str] | None = None
    ) -> str:
        """Run a psql script as the superuser; its output."""
        ...

    def grant_source(
        self, role: str, password: str, database: str, owner: str, schema: str = "public"
    ) -> None:
        """sql/source-role.sql in ``database``."""
        ...

    def running(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self, mode: str = "fast") -> None: ...


class BrokerServer(Protocol):
    """RabbitMQ: one user (app_user) for the pipeline and the tests."""

    @property
    def port(self) -> int: ...

    @property
    def password(self) -> str: ...

    @property
    def app_user(self) -> str: ...

    def url(self, vhost: str = "%2F") -> str: ...

    def tls_url(self, vhost: str = "%2F") -> str: ...

    def ctl(self, *args: str, timeout: float = 60) -> str:
        """rabbitmqctl on the node; its output."""
        ...

    def running(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class TargetServer(Protocol):
    """MariaDB."""

    @property
    def port(self) -> int: ...

    def url(self, database: str, user: str = "root", password: str | None = None) -> str:
        """A SQLAlchemy URL; root unless ``user`` and ``password`` say otherwise."""
        ...

    def sql(self, statements: str, database: str = "") -> str:
        """Run SQL as root; its output (tab-separated rows)."""
        ...

    def grant_target(self, user: str, password: str, database: str) -> None:
        """sql/target-user.sql for ``database``."""
        ...

    def running(self) -> bool: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Servers(Protocol):
    """The three servers, and the password of the pipeline's accounts on all of them
    (devstack.stack.APP_USER on PostgreSQL and MariaDB, the broker's app_user)."""

    @property
    def postgres(self) -> SourceServer: ...

    @property
    def rabbitmq(self) -> BrokerServer: ...

    @property
    def mariadb(self) -> TargetServer: ...

    @property
    def app_password(self) -> str: ...

    def tls_env(self) -> dict[str, str]:
        """The pipeline's settings for TLS on all three connections, verified."""
        ...

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def running(self) -> dict[str, bool]: ...


def provider(environ: Mapping[str, str] = os.environ) -> str:
    value = environ.get(PROVIDER_SETTING, "").strip() or "local"
    if value not in PROVIDERS:
        raise StackError(f"{PROVIDER_SETTING}={value!r}: expected one of {', '.join(PROVIDERS)}")
    return value


@contextmanager
def servers_for_tests(environ: Mapping[str, str] = os.environ) -> Iterator[Servers]:
    """The servers for one test session, from the chosen provider.

    Local servers already running are left running at the end (re-running tests during
    development stays fast); otherwise they are stopped. Containers are removed at the end.
    """
    if provider(environ) == "containers":
        from harness.containers import ContainerServers

        servers = ContainerServers.create()
        try:
            servers.start()
            yield servers
        finally:
            servers.stop()
        return
    stack = Stack.load(Path(environ.get("CDC_TEST_STACK_DIR", default_dir() / "test")))
    was_running = all(stack.running().values())
    stack.start()
    yield stack
    if not was_running:
        stack.stop()
