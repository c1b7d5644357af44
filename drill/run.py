"""The fault drill: random DML on several tables while faults hit every part, in random order.

    python -m drill --faults 120 --report docs/reliability.md     (make drill)

Faults: kill -9 of the extractor, of the applier, of both; SIGTERM of either; RabbitMQ restart;
MariaDB down for a while; PostgreSQL restart (fast or immediate, i.e. a crash); a TCP cut between
one process and one server (through a loopback proxy that resets the connections); and faults in
the middle of copies: a backfill cut by kill -9 or SIGTERM of the extractor, or by kill -9 of
the applier (whose unacked copy chunks RabbitMQ then redelivers, not always in order); a
restart with another table filter while a large transaction is half published. The first
fault hits the initial copy. A supervisor restarts a stopped process after a moment, as a
container restart policy would; a process that exits by itself is a failure of the drill. The
first faults are one of each kind, in random order, so even a short drill has them all. At the
end the target must equal the source, table by table, row by row: 0 missing, 0 extra, 0
different.
"""

from __future__ import annotations

import argparse
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from devstack.stack import Stack, default_dir
from devstack.system import wait_until
from drill.report import AUDIT, COPIED, KINDS, Report, markdown, write_report
from harness.pipeline import Pipeline, Proc, new_pipeline
from harness.proxy import Proxy
from harness.workload import TABLES, Workload


def _via(url: str, port: int) -> str:
    parts = urlsplit(url)
    host = parts.netloc.rsplit("@", 1)
    userinfo = host[0] + "@" if len(host) == 2 else ""
    return urlunsplit(parts._replace(netloc=f"{userinfo}127.0.0.1:{port}"))


class Drill:
    def __init__(
        self,
        pipeline: Pipeline,
        faults: int,
        seed: int,
        rate: float = 150.0,
        pause: tuple[float, float] = (1.0, 4.0),
        mariadb_down: tuple[float, float] = (5.0, 30.0),
        big_rows: int = 0,
        copy_rows: int = 100_000,
        log: Callable[[str], None] = print,
    ) -> None:
        self.big_rows = big_rows
        self.copy_rows = copy_rows
        # Set by a filter change: the tables the next extractor leaves out (until the one after).
        self.excluded: str | None = None
        self.p = pipeline
        self.faults = faults
        self.rng = random.Random(seed)
        self.rate = rate
        self.pause = pause
        self.mariadb_down = mariadb_down
        self.log = log
        s = pipeline.stack
        self.proxies = {
            "extractor-postgres": Proxy(s.postgres.port),
            "extractor-rabbitmq": Proxy(s.rabbitmq.port),
            "applier-rabbitmq": Proxy(s.rabbitmq.port),
            "applier-mariadb": Proxy(s.mariadb.port),
        }
        self.procs: dict[str, Proc] = {}
        self.report = Report()
        self.workload = Workload(s.postgres.dsn(pipeline.source_db), seed)

    # ------------------------------------------------------------ processes

    def _env(self, module: str) -> dict[str, str]:
        env = self.p.env
        if module == "extractor":
            env["CDC_SOURCE_DSN"] = _via(
                env["CDC_SOURCE_DSN"], self.proxies["extractor-postgres"].port
            )
            env["CDC_BROKER_URL"] = _via(
                env["CDC_BROKER_URL"], self.proxies["extractor-rabbitmq"].port
            )
            env["CDC_SOURCE_HEARTBEAT_INTERVAL"] = "2"
            if self.excluded:
                env["CDC_EXCLUDE_TABLES"] = self.excluded
        else:
            # A wide window: a killed applier leaves many unacked messages to be requeued.
            env["CDC_BROKER_PREFETCH"] = "1000"
            env["CDC_BROKER_URL"] = _via(
                env["CDC_BROKER_URL"], self.proxies["applier-rabbitmq"].port
            )
            env["CDC_TARGET_URL"] = _via(
                env["CDC_TARGET_URL"], self.proxies["applier-mariadb"].port
            )
        return env

    def _start(self, module: str) -> None:
        proc = Proc(module, self._env(module), self.p.logdir / f"{module}.log", [])
        self.p.procs.append(proc)
        self.procs[module] = proc

    def _sample_memory(self) -> None:
        for name, proc in self.procs.items():
            try:
                with open(f"/proc/{proc.popen.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmHWM:"):
                            mb = int(line.split()[1]) / 1024
                            self.report.peak_rss_mb[name] = max(
                                self.report.peak_rss_mb.get(name, 0.0), mb
                            )
            except OSError:
                pass

    def _kill(self, *modules: str) -> None:
        self._sample_memory()
        for m in modules:
            self.procs[m].kill()
        self._restart(*modules)

    def _terminate(self, module: str) -> None:
        """SIGTERM: a graceful stop must exit 0 (anything else is a failure of the drill)."""
        self._sample_memory()
        proc = self.procs[module]
        code = proc.stop(timeout=90)
        # -15 is a death by the signal's default action: the process was still starting (its
        # handler not yet installed), had taken nothing on, and stopped as a supervisor's
        # SIGTERM would stop it. With the handler in place a stop exits 0 (or 143 on a second
        # signal), so -15 cannot hide a graceful stop gone wrong.
        if code not in (0, -signal.SIGTERM):
            self.report.unexpected_exits.append(
                f"{module} exited with {code} after SIGTERM: {proc.output()[-1500:]}"
            )
        self._restart(module)

    def _restart(self, *modules: str) -> None:
        time.sleep(self.rng.uniform(0, 2))  # the supervisor's restart delay
        if "extractor" in modules:
            self.excluded = None  # a filter change lasts one extractor run
        for m in modules:
            self._start(m)

    def _copies_started(self) -> int:
        return self.procs["extractor"].output().count("copy_started")

    def _backfill(self) -> bool:
        """Ask for a backfill of the drill's large table; True once its copy has started."""
        before = self._copies_started()
        subprocess.run(
            [sys.executable, "-m", "extractor", "backfill", f"public.{COPIED}"],
            env=self.p.env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        try:
            wait_until(lambda: self._copies_started() > before, "the backfill", timeout=30)
        except AssertionError:
            return False  # the extractor was busy reconnecting: the request waits in the WAL
        time.sleep(self.rng.uniform(0, 1.0))  # somewhere in the middle of it
        self.report.copies_cut += 1
        return True

    def _large_transaction(self) -> None:
        """A transaction writing both drill tables, interleaved, over several messages."""
        n = self.rng.randint(2000, 5000)
        start = self.rng.randint(1, max(self.copy_rows - n, 1))
        self.p.sql(
            f"DO $$ BEGIN FOR i IN {start}..{start + n - 1} LOOP"
            f" UPDATE {COPIED} SET v = md5(v || i) WHERE id = i;"
            f" INSERT INTO {AUDIT} VALUES (i, now());"
            " END LOOP; END $$"
        )

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if not proc.alive():
                code = proc.popen.returncode
                tail = proc.output()[-1500:]
                self.report.unexpected_exits.append(f"{name} exited with {code}: {tail}")
                self._start(name)

    # ------------------------------------------------------------ faults

    def _fault(self, kind: str) -> None:
        s = self.p.stack
        if kind == "kill_extractor":
            self._kill("extractor")
        elif kind == "kill_applier":
            self._kill("applier")
        elif kind == "kill_both":
            self._kill("extractor", "applier")
        elif kind == "sigterm_extractor":
            self._terminate("extractor")
        elif kind == "sigterm_applier":
            self._terminate("applier")
        elif kind == "backfill_kill_extractor":
            self._backfill()
            self._kill("extractor")
        elif kind == "backfill_sigterm_extractor":
            self._backfill()
            self._terminate("extractor")
        elif kind == "backfill_kill_applier":
            self._backfill()
            self._kill("applier")
        elif kind == "filter_change_in_large_transaction":
            self._large_transaction()
            time.sleep(self.rng.uniform(0.05, 0.5))  # part of it published, not all
            self.procs["extractor"].kill()
            time.sleep(self.rng.uniform(0, 1))
            self.excluded = f"public.{COPIED}"  # this run leaves it out; the next takes it back
            self._start("extractor")
        elif kind == "restart_rabbitmq":
            s.rabbitmq.stop()
            s.rabbitmq.start()
        elif kind == "mariadb_down":
            s.mariadb.stop()
            time.sleep(self.rng.uniform(*self.mariadb_down))
            s.mariadb.start()
        elif kind == "restart_postgres":
            s.postgres.stop(self.rng.choice(["fast", "immediate"]))
            s.postgres.start()
        elif kind == "tcp_cut":
            name = self.rng.choice(sorted(self.proxies))
            self.proxies[name].sever()
            self.report.cuts[name] += 1

    # ------------------------------------------------------------ the drill

    def run(self) -> Report:
        started = time.monotonic()
        self.workload.create_schema()
        self.p.sql(
            f"CREATE TABLE {COPIED} (id int PRIMARY KEY, v text)",
            f"INSERT INTO {COPIED} SELECT g, md5(g::text) FROM generate_series(1,"
            f" {int(self.copy_rows)}) g",
            f"CREATE TABLE {AUDIT} (id int, at timestamptz)",
        )
        self._start("applier")
        self._start("extractor")
        # The first fault hits the initial copy of the drill's large table.
        self.procs["extractor"].wait_for("copy_started")
        time.sleep(self.rng.uniform(0, 1.0))
        first = self.rng.choice(["kill_extractor", "sigterm_extractor", "kill_applier"])
        self.log(f"drill: fault during the initial copy: {first}")
        self._fault(first)
        self.report.faults[first] += 1
        self.procs["extractor"].wait_for("streaming slot=")
        if self.big_rows:
            # One transaction of big_rows rows, streamed while the faults begin.
            self.p.sql(
                "CREATE TABLE big (id bigint PRIMARY KEY, payload text, amount numeric(12,2))"
            )
            self.p.sql(
                "INSERT INTO big SELECT g, repeat(md5(g::text), 2), g / 100.0"
                f" FROM generate_series(1, {int(self.big_rows)}) g"
            )
            self.report.big_rows = self.big_rows
        self.workload.start(10**9, self.rate)
        # One of each kind first, in random order: even a short drill has them all.
        schedule = self.rng.sample(KINDS, len(KINDS))
        try:
            for i in range(1, self.faults):  # the first was the one during the initial copy
                time.sleep(self.rng.uniform(*self.pause))
                self._check_alive()
                kind = schedule[i - 1] if i <= len(schedule) else self.rng.choice(KINDS)
                self.log(f"drill: fault {i + 1}/{self.faults}: {kind}")
                self._fault(kind)
                self.report.faults[kind] += 1
                self._sample_memory()
            time.sleep(self.pause[1])
            self._check_alive()
            if self.excluded:
                self._terminate("extractor")  # the last run left a table out: take it back
        finally:
            self.workload.stop()
        self.report.transactions = self.workload.transactions
        self.report.changes = self.workload.changes
        converge_from = time.monotonic()
        tables = [*TABLES, COPIED, AUDIT, *(["big"] if self.big_rows else [])]
        try:
            self.p.wait_converged(tables, timeout=600)
        except AssertionError as e:
            self.log(str(e)[:3000])
        self.report.converge_seconds = time.monotonic() - converge_from
        self._check_alive()
        self._sample_memory()
        self.report.tally(self.p, tables, started)
        for proxy in self.proxies.values():
            proxy.close()
        return self.report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drill", description=__doc__.splitlines()[0])
    parser.add_argument("--faults", type=int, default=120)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--rate", type=float, default=150.0, help="source transactions per second")
    parser.add_argument("--report", type=Path, help="write the figures here (markdown)")
    parser.add_argument(
        "--big-rows", type=int, default=1_000_000, help="rows of one large transaction (0: none)"
    )
    parser.add_argument(
        "--copy-rows", type=int, default=100_000, help="rows of the table the backfills copy"
    )
    parser.add_argument(
        "--decoder", default="wal2json", choices=("wal2json", "pgoutput"), help="source.decoder"
    )
    args = parser.parse_args(argv)

    stack = Stack.load(default_dir() / "drill")
    stack.start()
    logdir = stack.root / "logs"
    logdir.mkdir(exist_ok=True)
    pipeline = new_pipeline(stack, logdir, args.decoder)
    try:
        report = Drill(
            pipeline,
            args.faults,
            args.seed,
            args.rate,
            big_rows=args.big_rows,
            copy_rows=args.copy_rows,
        ).run()
    finally:
        pipeline.destroy()
        stack.stop()
    command = (
        f"python -m drill --faults {args.faults} --seed {args.seed} --rate {args.rate:g}"
        f" --big-rows {args.big_rows} --copy-rows {args.copy_rows}"
        + (f" --decoder {args.decoder}" if args.decoder != "wal2json" else "")
    )
    text = markdown(report, command, args.seed)
    print(text)
    for line in report.unexpected_exits:
        print("unexpected exit:", line, file=sys.stderr)
    if args.report:
        write_report(args.report, text)
    return 0 if report.passed else 1
