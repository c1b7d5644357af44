"""Both processes over TLS to all three servers, every server certificate verified against the
stack's throwaway CA (devstack/tls.py); and a wrong CA is a clear, permanent failure at start."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mariadb
import pytest

from devstack.system import wait_until
from devstack.tls import make_ca
from harness.pipeline import ROOT, Pipeline

TABLE = "accounts_tls"


@pytest.fixture
def tls_only_user(pipeline: Pipeline) -> Iterator[tuple[str, str]]:
    """A MariaDB account for the applier that the server only lets in over TLS (REQUIRE SSL):
    that the applier works at all shows its connections are encrypted."""
    user, password = f"{pipeline.name}_tls", secrets.token_hex(12)
    pipeline.stack.mariadb.sql(
        f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{password}' REQUIRE SSL;\n"
        f"GRANT ALL ON `{pipeline.target_db}`.* TO '{user}'@'127.0.0.1';\n"
    )
    yield user, password
    if pipeline.stack.mariadb.running():
        pipeline.stack.mariadb.sql(f"DROP USER IF EXISTS '{user}'@'127.0.0.1';")


@pytest.fixture
def vhost(pipeline: Pipeline) -> Iterator[str]:
    """A RabbitMQ virtual host of the test's own, so that the broker's list of connections
    shows this test's processes apart from any others."""
    rabbit = pipeline.stack.rabbitmq
    rabbit.ctl("add_vhost", pipeline.name)
    rabbit.ctl("set_permissions", "-p", pipeline.name, rabbit.app_user, ".*", ".*", ".*")
    yield pipeline.name
    if rabbit.running():
        rabbit.ctl("delete_vhost", pipeline.name)


def tls_env(pipeline: Pipeline, maria_user: tuple[str, str], vhost: str) -> dict[str, str]:
    user, password = maria_user
    return {
        **pipeline.tls_env,
        "CDC_TARGET_URL": pipeline.stack.mariadb.url(pipeline.target_db, user, password),
        "CDC_BROKER_URL": pipeline.stack.rabbitmq.tls_url(vhost),
    }


def run(pipeline: Pipeline, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )


def source_sessions(pipeline: Pipeline) -> list[tuple[str, str, bool, bool]]:
    """The pipeline role's sessions in the test's database: (backend type, application name,
    TLS?, the slot's walsender?)."""
    with pipeline.pg() as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT a.backend_type, a.application_name, s.ssl,"
            "  a.pid IN (SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s)"
            " FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)"
            " WHERE a.usename = 'cdc' AND a.datname = %s",
            (pipeline.name, pipeline.source_db),
        )
        return [(str(t), str(n), bool(s), bool(w)) for t, n, s, w in cur.fetchall()]


def broker_connections(pipeline: Pipeline, vhost: str) -> dict[str, bool]:
    """RabbitMQ's own view: each client's connection name and whether it speaks TLS."""
    out = pipeline.stack.rabbitmq.ctl(
        "list_connections", "vhost", "client_properties", "ssl", "--formatter", "json", "--quiet"
    )
    found = {}
    for row in json.loads(out or "[]"):
        if row["vhost"] != vhost:
            continue
        props = row["client_properties"]
        # rabbitmqctl prints client properties as [name, type, value] triples.
        name = next((p[2] for p in props if p[0] == "connection_name"), "?")
        found[name] = bool(row["ssl"])
    return found


def tls_accepts(pipeline: Pipeline) -> int:
    out = pipeline.stack.mariadb.sql("SHOW GLOBAL STATUS LIKE 'Ssl_accepts'")
    return int(out.split()[-1])


def test_pipeline_over_tls_on_all_three_connections(
    pipeline: Pipeline, tls_only_user: tuple[str, str], vhost: str
) -> None:
    user, password = tls_only_user
    # The account really is refused without TLS (else the check below would prove nothing).
    with pytest.raises(mariadb.OperationalError):
        mariadb.connect(
            host="127.0.0.1",
            port=pipeline.stack.mariadb.port,
            user=user,
            password=password,
            database=pipeline.target_db,
        )
    pipeline.sql(
        f"CREATE TABLE {TABLE} (id int PRIMARY KEY, owner text, balance numeric(12,2))",
        f"INSERT INTO {TABLE} SELECT g, 'owner ' || g, g * 1.25 FROM generate_series(1, 50) g",
    )
    env = tls_env(pipeline, tls_only_user, vhost)
    # The devstack's DSN says sslmode=disable: the explicit setting must win over it.
    assert "sslmode=disable" in env["CDC_SOURCE_DSN"]
    assert env["CDC_BROKER_URL"].startswith("amqps://")
    accepts = tls_accepts(pipeline)

    applier = pipeline.start("applier", **env)
    extractor = pipeline.start("extractor", **env)
    extractor.wait_for("streaming slot=")
    applier.wait_for("consuming queue=")
    pipeline.sql(
        f"INSERT INTO {TABLE} SELECT g, 'late ' || g, g FROM generate_series(51, 60) g",
        f"UPDATE {TABLE} SET balance = balance + 1 WHERE id <= 5",
        f"DELETE FROM {TABLE} WHERE id = 7",
    )
    pipeline.wait_converged([TABLE])  # the copy (snapshot) and the stream, both over TLS

    # PostgreSQL: every session of the pipeline's role is encrypted, the slot's walsender too.
    sessions = source_sessions(pipeline)
    assert any(walsender for *_, walsender in sessions), sessions
    assert all(tls for _, _, tls, _ in sessions), sessions
    # MariaDB: the REQUIRE SSL account worked, and the server counted the TLS handshakes.
    assert tls_accepts(pipeline) > accepts
    # RabbitMQ: both processes' connections, as the broker sees them.
    connections = broker_connections(pipeline, vhost)
    assert connections.get("pg2maria-extractor") is True, connections
    assert connections.get("pg2maria-applier") is True, connections

    # The side commands connect with the same settings: a backfill request (a copy with a
    # temporary slot over a replication connection), and the dead-letter queue listing.
    proc = run(pipeline, env, "extractor", "backfill", TABLE)
    assert proc.returncode == 0, proc.stderr
    wait_until(
        lambda: extractor.output().count(f"copy_table_done table=public.{TABLE}") >= 2,
        "the backfill's copy",
    )
    proc = run(pipeline, env, "applier", "dlq", "list")
    assert proc.returncode == 0, proc.stderr
    pipeline.wait_converged([TABLE])
    assert all(tls for _, _, tls, _ in source_sessions(pipeline))

    assert "Traceback" not in extractor.output() + applier.output()
    assert extractor.stop() == 0
    assert applier.stop() == 0


@pytest.mark.parametrize(
    ("module", "wrong", "says"),
    [
        ("extractor", "CDC_SOURCE_SSLROOTCERT", "PostgreSQL TLS failed"),
        ("extractor", "CDC_BROKER_CA_FILE", "RabbitMQ TLS failed"),
        ("applier", "CDC_BROKER_CA_FILE", "RabbitMQ TLS failed"),
        ("applier", "CDC_TARGET_SSL_CA", "MariaDB TLS failed"),
    ],
)
def test_a_certificate_from_another_ca_stops_at_start(
    pipeline: Pipeline, tmp_path: Path, module: str, wrong: str, says: str
) -> None:
    """verify-full against a CA that did not sign the server's certificate: no retrying for
    ever, one line that says what to check, exit code 1."""
    other_ca, _key = make_ca(tmp_path / "other-ca", "some other CA")
    env = {**pipeline.tls_env, wrong: str(other_ca)}
    proc = run(pipeline, env, module)
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{module}: {says}"), proc.stderr[-3000:]
    assert "certificate" in last.lower() and "check" in last
    assert "retrying" not in proc.stderr
    assert "Traceback" not in proc.stderr
    assert pipeline.stack.app_password not in proc.stderr


@pytest.mark.parametrize(
    ("module", "variable", "says"),
    [
        ("applier", "CDC_TARGET_URL", "MariaDB TLS failed"),
        ("extractor", "CDC_BROKER_URL", "RabbitMQ TLS failed"),
    ],
)
def test_a_host_the_certificate_does_not_name_stops_at_start(
    pipeline: Pipeline, module: str, variable: str, says: str
) -> None:
    """The host name is checked, not only the chain: 127.1 reaches the same server (it is
    127.0.0.1), but the certificate names 127.0.0.1 and localhost, not 127.1. (libpq reads
    127.1 as the IP address 127.0.0.1, which the certificate does name: not a test for it.)"""
    env = pipeline.tls_env
    env[variable] = env[variable].replace("@127.0.0.1:", "@127.1:")
    proc = run(pipeline, env, module)
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{module}: {says}"), proc.stderr[-3000:]
    assert "retrying" not in proc.stderr
