"""A private corner of the test stack for one test: its own source database, slot, queue and
target database, and the two processes run as real subprocesses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mariadb
import pika
import pika.exceptions
import psycopg2
from sqlalchemy.engine import make_url

from applier.compare import Difference, compare_table
from devstack.stack import APP_USER
from devstack.system import wait_until
from harness.servers import Servers
from harness.workload import Workload
from shared.config import DlqConfig, load_config
from shared.naming import Naming
from shared.parsers import target_hosts
from shared.position import Position
from shared.secret import split_urls
from shared.topology import Topology, topology_for

ROOT = Path(__file__).resolve().parents[1]


class Proc:
    """One of our processes, its output in a log file."""

    def __init__(self, module: str, env: dict[str, str], log: Path, args: list[str]) -> None:
        self.module = module
        self.log = log
        self._start_offset = log.stat().st_size if log.exists() else 0
        out = log.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", module, *args], env=env, stdout=out, stderr=out, cwd=ROOT
        )
        out.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")[self._start_offset :]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_for(self, needle: str, timeout: float = 60) -> None:
        def seen() -> bool:
            if needle in self.output():
                return True
            if not self.alive():
                raise AssertionError(
                    f"{self.module} exited ({self.popen.returncode}) before {needle!r}:\n"
                    + self.output()[-3000:]
                )
            return False

        wait_until(seen, f"{self.module} to log {needle!r}", timeout)

    def kill(self) -> None:
        """kill -9: no cleanup of any kind."""
        if self.alive():
            self.popen.send_signal(signal.SIGKILL)
            self.popen.wait(timeout=30)

    def stop(self, timeout: float = 60) -> int:
        if self.alive():
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
                raise AssertionError(
                    f"{self.module} ignored SIGTERM:\n{self.output()[-3000:]}"
                ) from None
        return int(self.popen.returncode)


@dataclass
class Pipeline:
    stack: Servers
    name: str
    logdir: Path
    procs: list[Proc] = field(default_factory=list)
    # How the test expects source tables to be named in the target (see applier/naming.py).
    naming: Naming = field(default_factory=Naming)
    # source.decoder: with pgoutput, the publication is made by the superuser statement of
    # sql/publication.sql (the extractor's role owns no table here).
    decoder: str = "wal2json"
    # Settings of both processes beyond the stack's (e.g. CDC_BROKER_QUEUE_TYPE on a cluster).
    settings: dict[str, str] = field(default_factory=dict)

    # ------------------------------------------------------------ settings

    @property
    def source_db(self) -> str:
        return self.name

    @property
    def target_db(self) -> str:
        return self.name

    @property
    def env(self) -> dict[str, str]:
        pg, maria, rabbit = self.stack.postgres, self.stack.mariadb, self.stack.rabbitmq
        keep = {k: v for k, v in os.environ.items() if not k.startswith("CDC_")}
        return {
            **keep,
            "CDC_SOURCE_DSN": pg.dsn(self.source_db, APP_USER, self.stack.app_password),
            "CDC_SLOT": self.name,
            "CDC_SOURCE_DECODER": self.decoder,
            "CDC_BROKER_URL": rabbit.url(),
            "CDC_TARGET_URL": maria.url(self.target_db, APP_USER, self.stack.app_password),
            "CDC_LOG_LEVEL": "INFO",
            "CDC_METRICS_HOST": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
            **self.settings,
        }

    @property
    def tls_env(self) -> dict[str, str]:
        """env, with TLS on all three connections: verify-full against the stack's CA for
        PostgreSQL, amqps:// to RabbitMQ's TLS port, TLS with a verified certificate to
        MariaDB."""
        return {**self.env, **self.stack.tls_env()}

    @property
    def topology(self) -> Topology:
        """The exchanges and queues the processes declare with these settings."""
        cfg = load_config(DlqConfig, environ=self.env)  # the slot and the broker
        partitions = int(self.env.get("CDC_TARGET_PARTITIONS", "1"))
        return topology_for(cfg.broker, cfg.source.slot, partitions)

    @property
    def queue(self) -> str:
        return self.topology.queue

    # ------------------------------------------------------------ lifecycle

    def create(self) -> None:
        # The pipeline runs with the least-privileged roles of sql/: the tests create and
        # write tables as the superuser (the application); the extractor's role only reads.
        pg, maria = self.stack.postgres, self.stack.mariadb
        pg.psql(f"CREATE DATABASE {self.name}")
        pg.grant_source(APP_USER, self.stack.app_password, self.name, owner="postgres")
        if self.decoder == "pgoutput":
            self.publish()
        maria.sql(
            f"CREATE DATABASE `{self.name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin;\n"
        )
        maria.grant_target(APP_USER, self.stack.app_password, self.name)

    def publish(self) -> None:
        """pgoutput's publication, as a superuser makes it with sql/publication.sql (FOR ALL
        TABLES): the extractor's role owns no table here, so it may not make it itself."""
        script = (ROOT / "sql" / "publication.sql").read_text()
        self.stack.postgres.psql(script, self.name, {"publication": f"cdc_{self.name}"})

    def grant_source(self, schema: str) -> None:
        """The extractor's privileges (sql/source-role.sql) in another source schema."""
        self.stack.postgres.grant_source(
            APP_USER, self.stack.app_password, self.name, owner="postgres", schema=schema
        )

    def grant_target(self, database: str) -> None:
        """The applier's privileges (sql/target-user.sql) in another target database."""
        self.stack.mariadb.grant_target(APP_USER, self.stack.app_password, database)

    def destroy(self) -> None:
        for proc in self.procs:
            proc.kill()
        if self.stack.postgres.running():
            self.stack.postgres.psql(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                f" WHERE slot_name = '{self.name}' AND NOT active;\n"
                f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE);"
            )
        if self.stack.mariadb.running():
            self.stack.mariadb.sql(f"DROP DATABASE IF EXISTS `{self.name}`;")
        if self.stack.rabbitmq.running():
            t = self.topology
            with self.channel() as ch:
                for q in {t.queue, *t.queues, t.dead_letter_queue, t.state_queue}:
                    ch.queue_delete(q)

    def start(self, module: str, *args: str, **env: str) -> Proc:
        # One log file per process: two appliers side by side must not share one.
        n = sum(1 for p in self.procs if p.module == module)
        name = f"{module}.log" if n == 0 else f"{module}-{n + 1}.log"
        proc = Proc(module, {**self.env, **env}, self.logdir / name, list(args))
        self.procs.append(proc)
        return proc

    def start_pipeline(self) -> tuple[Proc, Proc]:
        applier = self.start("applier")
        extractor = self.start("extractor")
        extractor.wait_for("streaming slot=")
        applier.wait_for("consuming queue=")
        return extractor, applier

    # ------------------------------------------------------------ connections

    def pg(self) -> Any:
        """The test's source database, as the superuser, autocommit."""
        conn = psycopg2.connect(self.stack.postgres.dsn(self.source_db))
        conn.autocommit = True
        return conn

    def maria(self, database: str | None = None) -> Any:
        """The test's target database (or ``database``), as MariaDB's administrator (on the
        first node of a cluster that answers)."""
        failure: mariadb.Error | None = None
        for one in target_hosts(self.stack.mariadb.url(database or self.target_db)):
            url = make_url(one)
            try:
                conn = mariadb.connect(
                    host=url.host,
                    port=url.port,
                    user=url.username,
                    password=url.password,
                    database=url.database,
                )
            except mariadb.Error as e:
                failure = e
                continue
            conn.autocommit = True
            return conn
        assert failure is not None
        raise failure

    def checkpoint(self) -> Position | None:
        """The applier's position (applier/checkpoint.py), None before its first batch."""
        maria = self.maria()
        try:
            cur = maria.cursor()
            try:
                cur.execute("SELECT position FROM _cdc_checkpoint")
            except mariadb.Error:  # created with the first batch
                return None
            row = cur.fetchone()
            return None if row is None else Position.parse(str(row[0]))
        finally:
            maria.close()

    @contextmanager
    def channel(self) -> Iterator[Any]:
        """A channel on RabbitMQ (on the first node of a cluster that answers)."""
        failure: Exception | None = None
        for url in split_urls(self.stack.rabbitmq.url()):
            try:
                conn = pika.BlockingConnection(pika.URLParameters(url))
            except pika.exceptions.AMQPError as e:
                failure = e
                continue
            try:
                yield conn.channel()
            finally:
                if conn.is_open:
                    conn.close()
            return
        assert failure is not None
        raise failure

    def workload(self, seed: int) -> Workload:
        """harness/workload.py's tables, created in the source database, and a workload on
        them."""
        w = Workload(self.stack.postgres.dsn(self.source_db), seed)
        w.create_schema()
        return w

    def backfill(self, *tables: str) -> subprocess.CompletedProcess[str]:
        """``python -m extractor backfill`` with this pipeline's settings."""
        return subprocess.run(
            [sys.executable, "-m", "extractor", "backfill", *tables],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def sql(self, *statements: str) -> None:
        with self.pg() as conn, conn.cursor() as cur:
            for s in statements:
                cur.execute(s)

    # ------------------------------------------------------------ checks

    def differences(self, tables: list[str], schema: str = "public") -> dict[str, Difference]:
        pg, maria = self.pg(), self.maria()
        try:
            refs = {t: self.naming.target(schema, t) for t in tables}
            return {
                t: compare_table(pg, maria, schema, t, ref.table, target_db=ref.database)
                for t, ref in refs.items()
            }
        finally:
            pg.close()
            maria.close()

    def wait_converged(
        self, tables: list[str], timeout: float = 90, schema: str = "public"
    ) -> None:
        last: dict[str, Difference] = {}

        def converged() -> bool:
            nonlocal last
            try:
                last = self.differences(tables, schema)
            except mariadb.Error:
                return False
            return all(d.equal for d in last.values())

        try:
            wait_until(converged, f"target to converge on {tables}", timeout, interval=0.25)
        except AssertionError:
            detail = "; ".join(f"{t}: {d.summary()}" for t, d in last.items())
            logs = "\n".join(f"--- {p.module}\n{p.output()[-4000:]}" for p in self.procs)
            raise AssertionError(f"not converged: {detail}\n{logs}") from None

    def drain(self) -> list[tuple[Any, bytes]]:
        """Take every message off the pipeline's queue (acked: they are the test's now)."""
        out: list[tuple[Any, bytes]] = []
        with self.channel() as ch:
            while True:
                method, props, body = ch.basic_get(self.queue, auto_ack=True)
                if method is None:
                    return out
                out.append((props, body))

    def republish(self, messages: list[tuple[Any, bytes]]) -> None:
        """Put messages back on the queue, in this order, as RabbitMQ would redeliver them."""
        with self.channel() as ch:
            ch.confirm_delivery()
            for props, body in messages:
                ch.basic_publish("cdc", self.name, body, properties=props, mandatory=True)

    def queue_depth(self, queue: str | None = None) -> int:
        with self.channel() as ch:
            return int(ch.queue_declare(queue or self.queue, passive=True).method.message_count)


def new_pipeline(stack: Servers, logdir: Path, decoder: str = "wal2json") -> Pipeline:
    p = Pipeline(stack, f"t_{uuid.uuid4().hex[:10]}", logdir, decoder=decoder)
    p.create()
    return p
