"""The fault drill: random DML on several tables while faults hit every part, in random order.

    python -m tests.drill --faults 120 --report docs/reliability.md     (make drill)

Faults: kill -9 of the extractor, of the applier, of both; RabbitMQ restart; MariaDB down for a
while; PostgreSQL restart (fast or immediate, i.e. a crash); a TCP cut between one process and
one server (through a loopback proxy that resets the connections). A supervisor restarts a
killed process after a moment, as a container restart policy would; a process that exits by
itself is a failure of the drill. At the end the target must equal the source, table by table,
row by row: 0 missing, 0 extra, 0 different.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from devstack.stack import Stack, default_dir
from tests.support.pipeline import Pipeline, Proc, new_pipeline
from tests.support.proxy import Proxy
from tests.support.workload import TABLES, Workload

KINDS = (
    "kill_extractor",
    "kill_applier",
    "kill_both",
    "restart_rabbitmq",
    "mariadb_down",
    "restart_postgres",
    "tcp_cut",
)


@dataclass
class Report:
    faults: Counter[str] = field(default_factory=Counter)
    cuts: Counter[str] = field(default_factory=Counter)
    transactions: int = 0
    changes: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    differences: dict[str, str] = field(default_factory=dict)
    unexpected_exits: list[str] = field(default_factory=list)
    seconds: float = 0.0
    converge_seconds: float = 0.0
    dead_letters: int = 0
    big_rows: int = 0
    peak_rss_mb: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return (
            all(d.startswith("0 missing, 0 extra, 0 different") for d in self.differences.values())
            and not self.unexpected_exits
            and self.dead_letters == 0
        )


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
        log: Callable[[str], None] = print,
    ) -> None:
        self.big_rows = big_rows
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
        else:
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
        time.sleep(self.rng.uniform(0, 2))  # the supervisor's restart delay
        for m in modules:
            self._start(m)

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
        self._start("applier")
        self._start("extractor")
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
        try:
            for i in range(self.faults):
                time.sleep(self.rng.uniform(*self.pause))
                self._check_alive()
                kind = self.rng.choice(KINDS)
                self.log(f"drill: fault {i + 1}/{self.faults}: {kind}")
                self._fault(kind)
                self.report.faults[kind] += 1
                self._sample_memory()
            time.sleep(self.pause[1])
            self._check_alive()
        finally:
            self.workload.stop()
        self.report.transactions = self.workload.transactions
        self.report.changes = self.workload.changes
        converge_from = time.monotonic()
        tables = [*TABLES, "big"] if self.big_rows else TABLES
        try:
            self.p.wait_converged(tables, timeout=600)
        except AssertionError as e:
            self.log(str(e)[:3000])
        self.report.converge_seconds = time.monotonic() - converge_from
        self._check_alive()
        self._sample_memory()
        for table, diff in self.p.differences(tables).items():
            self.report.differences[table] = diff.summary()
        with self.p.pg() as conn, conn.cursor() as cur:
            for table in tables:
                cur.execute(f"SELECT count(*) FROM {table}")
                self.report.rows[table] = int(cur.fetchone()[0])
        self.report.dead_letters = self.p.queue_depth(self.p.queue + ".dead")
        self.report.seconds = time.monotonic() - started
        for proxy in self.proxies.values():
            proxy.close()
        return self.report


def markdown(report: Report, command: str, seed: int) -> str:
    lines = [
        "# Reliability",
        "",
        "Figures of the last full fault drill (`make drill`), on one 2-core machine that also ran",
        "PostgreSQL, RabbitMQ and MariaDB. The drill writes random DML on four tables (one with a",
        "composite key, one without any key, one with large TOASTed values) while it injects",
        "faults in random order, then compares the target with the source row by row.",
        "At the start it also commits one large transaction (`--big-rows`), which streams",
        "through while the first faults hit; the peak memory of the two processes is sampled",
        "throughout. Such a transaction is applied chunk by chunk (1,000 changes a message),",
        "exactly once but not atomically: see the README's Guarantees.",
        "",
        f"Command: `{command}` (seed {seed}).",
        "",
        "| fault | count |",
        "| --- | --- |",
    ]
    for kind in KINDS:
        lines.append(f"| {kind} | {report.faults[kind]} |")
    lines.append(f"| **total** | **{sum(report.faults.values())}** |")
    lines += [
        "",
        "TCP cuts by path: " + ", ".join(f"{k} {v}" for k, v in sorted(report.cuts.items())),
        "",
    ]
    lines += [
        "| figure | value |",
        "| --- | --- |",
        f"| source transactions committed | {report.transactions} |",
        f"| source row changes | {report.changes} |",
        f"| rows compared at the end | {sum(report.rows.values())} |",
        f"| time to converge after the last fault | {report.converge_seconds:.1f} s |",
        f"| drill duration | {report.seconds / 60:.1f} min |",
        f"| processes that exited by themselves | {len(report.unexpected_exits)} |",
        f"| messages dead-lettered | {report.dead_letters} |",
        f"| one transaction of (rows) | {report.big_rows or '-'} |",
        f"| peak resident memory, extractor | {report.peak_rss_mb.get('extractor', 0):.0f} MB |",
        f"| peak resident memory, applier | {report.peak_rss_mb.get('applier', 0):.0f} MB |",
        "",
        "| table | rows | missing, extra, different |",
        "| --- | --- | --- |",
    ]
    for table in report.differences:
        lines.append(f"| {table} | {report.rows.get(table, 0)} | {report.differences[table]} |")
    lines += ["", f"Result: **{'passed' if report.passed else 'FAILED'}**.", ""]
    return "\n".join(lines)


# The drill's figures go between these markers; the rest of the report file (sections written
# by hand, e.g. the MariaDB error classes) is kept as it is.
FIGURES_BEGIN = "<!-- drill figures: begin (written by python -m tests.drill) -->"
FIGURES_END = "<!-- drill figures: end -->"


def write_report(path: Path, figures: str) -> None:
    block = f"{FIGURES_BEGIN}\n{figures.rstrip()}\n{FIGURES_END}"
    old = path.read_text() if path.exists() else ""
    if FIGURES_BEGIN in old and FIGURES_END in old:
        head, rest = old.split(FIGURES_BEGIN, 1)
        tail = rest.split(FIGURES_END, 1)[1]
        path.write_text(head + block + tail)
    else:
        path.write_text(block + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.drill", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--faults", type=int, default=120)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--rate", type=float, default=150.0, help="source transactions per second")
    parser.add_argument("--report", type=Path, help="write the figures here (markdown)")
    parser.add_argument(
        "--big-rows", type=int, default=1_000_000, help="rows of one large transaction (0: none)"
    )
    args = parser.parse_args(argv)

    stack = Stack.load(default_dir() / "drill")
    stack.start()
    logdir = stack.root / "logs"
    logdir.mkdir(exist_ok=True)
    pipeline = new_pipeline(stack, logdir)
    try:
        report = Drill(pipeline, args.faults, args.seed, args.rate, big_rows=args.big_rows).run()
    finally:
        pipeline.destroy()
        stack.stop()
    command = (
        f"python -m tests.drill --faults {args.faults} --seed {args.seed} --rate {args.rate:g}"
        f" --big-rows {args.big_rows}"
    )
    text = markdown(report, command, args.seed)
    print(text)
    for line in report.unexpected_exits:
        print("unexpected exit:", line, file=sys.stderr)
    if args.report:
        write_report(args.report, text)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
