"""Bad settings and bad server set-up end with one clear line and the right exit code."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from contextlib import closing
from pathlib import Path

import pika
import pytest

from devstack.postgres import Postgres
from devstack.stack import APP_USER, Stack
from devstack.system import free_port
from harness.pipeline import ROOT, Pipeline, Proc
from harness.servers import Servers
from shared.config import DlqConfig, load_config
from shared.topology import topology_for


def run(module: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


def last_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stderr.strip().splitlines()
    return lines[-1] if lines else ""


@pytest.mark.parametrize("module", ["extractor", "applier"])
def test_missing_setting_is_exit_2_naming_it(module: str) -> None:
    proc = run(module, {"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "is required" in proc.stderr and "CDC_" in proc.stderr


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("CDC_SLOT", "Bad-Slot", "source.slot"),
        ("CDC_BROKER_URL", "http://example", "broker.url"),
        ("CDC_TARGET_URL", "mysql+pymysql://u:p@h/db", "target.url"),
        ("CDC_METRICS_PORT", "99999", "metrics_port"),
        ("CDC_LOG_LEVEL", "LOUD", "log_level"),
        ("CDC_TABLES", 'public."unbalanced', "source.tables"),
    ],
)
def test_bad_value_is_exit_2_naming_it(
    pipeline: Pipeline, variable: str, value: str, named: str
) -> None:
    proc = run("extractor", {**pipeline.env, variable: value})
    assert proc.returncode == 2, proc.stderr
    assert named in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_config_file_with_env_override(pipeline: Pipeline, tmp_path: Path) -> None:
    env = pipeline.env
    config = tmp_path / "cdc.yaml"
    config.write_text(
        "source:\n"
        f"  dsn: {env['CDC_SOURCE_DSN']}\n"
        "  slot: not_this_one\n"
        "broker:\n"
        f"  url: {env['CDC_BROKER_URL']}\n"
        "target:\n"
        f"  url: {env['CDC_TARGET_URL']}\n"
        "log_level: debug\n"
    )
    # Only the slot comes from the environment; the file holds the rest.
    minimal = {"PATH": "/usr/bin:/bin", "CDC_SLOT": pipeline.name, "PYTHONUNBUFFERED": "1"}
    extractor = Proc("extractor", minimal, tmp_path / "extractor.log", ["--config", str(config)])
    pipeline.procs.append(extractor)
    extractor.wait_for(f"streaming slot={pipeline.name} ")
    assert "DEBUG" in extractor.output() or "log_level" not in extractor.output()
    assert extractor.stop() == 0


def test_wrong_password_is_one_clear_line(pipeline: Pipeline, stack: Servers) -> None:
    env = {
        **pipeline.env,
        "CDC_SOURCE_DSN": stack.postgres.dsn(pipeline.source_db, APP_USER, "wrong"),
    }
    proc = run("extractor", env)
    assert proc.returncode == 1
    assert "refused the login" in last_line(proc)
    assert "wrong" not in proc.stderr  # the password never reaches the output
    env = {
        **pipeline.env,
        "CDC_TARGET_URL": stack.mariadb.url(pipeline.target_db, APP_USER, "wrong"),
    }
    proc = run("applier", env)
    assert proc.returncode == 1
    assert "MariaDB refused" in last_line(proc)


def test_role_without_replication(pipeline: Pipeline, stack: Servers) -> None:
    stack.postgres.psql(f"CREATE ROLE {pipeline.name}_r LOGIN PASSWORD 'pw';")
    try:
        env = {
            **pipeline.env,
            "CDC_SOURCE_DSN": stack.postgres.dsn(pipeline.source_db, f"{pipeline.name}_r", "pw"),
        }
        proc = run("extractor", env)
        assert proc.returncode == 1
        line = last_line(proc)
        assert "lacks the REPLICATION attribute" in line and "ALTER ROLE" in line
    finally:
        stack.postgres.psql(f"DROP ROLE {pipeline.name}_r")


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"wal_level": "replica"}, ["wal_level is 'replica'", "wal_level = logical"]),
        # wal2json missing from the server: PostgreSQL cannot find the library.
        ({"dynamic_library_path": "'/nonexistent'"}, ["wal2json output plugin is not installed"]),
        (
            {"output_plugin_libraries": "'pgoutput'"},
            ["does not allow wal2json", "output_plugin_libraries"],
        ),
    ],
    ids=["wal_level", "no_wal2json", "plugin_not_allowed"],
)
def test_server_not_set_up(
    local_stack: Stack, settings: dict[str, str], expected: list[str]
) -> None:
    # A second, short-lived cluster: its folder must be reachable by the postgres user.
    stack = local_stack
    root = stack.root / "scratch" / f"pg-{uuid.uuid4().hex[:8]}"
    pg = Postgres(root, free_port(), "pw", settings)
    pg.init()
    pg.start()
    try:
        env = {
            "PATH": "/usr/bin:/bin",
            "CDC_SOURCE_DSN": pg.dsn("postgres"),
            "CDC_SLOT": "never",
            "CDC_BROKER_URL": stack.rabbitmq.url(),
        }
        proc = run("extractor", env)
        assert proc.returncode == 1, proc.stderr
        line = last_line(proc)
        for text in expected:
            assert text in line
        assert "Traceback" not in proc.stderr
    finally:
        pg.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


def test_pgoutput_needs_no_server_change(local_stack: Stack, tmp_path: Path) -> None:
    """output_plugin_libraries at its default (no wal2json) refuses wal2json, and pgoutput
    streams: its publication made by a role that may (here the superuser)."""
    stack = local_stack
    root = stack.root / "scratch" / f"pg-{uuid.uuid4().hex[:8]}"
    pg = Postgres(root, free_port(), "pw", {"output_plugin_libraries": "'pgoutput, test_decoding'"})
    pg.init()
    pg.start()
    try:
        env = {
            "PATH": "/usr/bin:/bin",
            "CDC_SOURCE_DSN": pg.dsn("postgres"),
            "CDC_SLOT": f"plain_{uuid.uuid4().hex[:8]}",
            "CDC_BROKER_URL": stack.rabbitmq.url(),
            "CDC_SOURCE_DECODER": "pgoutput",
        }
        extractor = Proc("extractor", env, tmp_path / "extractor.log", [])
        try:
            extractor.wait_for("streaming slot=")
            out = extractor.output()
            assert "publication_created publication=cdc_plain_" in out
            assert f"publication=cdc_{env['CDC_SLOT']}" in out
        finally:
            assert extractor.stop() == 0
    finally:
        pg.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)
        topology = topology_for(load_config(DlqConfig, environ=env).broker, env["CDC_SLOT"])
        with closing(pika.BlockingConnection(pika.URLParameters(stack.rabbitmq.url()))) as c:
            ch = c.channel()
            for q in (topology.queue, topology.dead_letter_queue, topology.state_queue):
                ch.queue_delete(q)
