"""The cluster drill: the pipeline on a 3-node RabbitMQ cluster (quorum queues) and a 3-node
MariaDB Galera cluster, under continuous DML, while nodes are killed (kill -9) and started again.

    python -m drill --cluster --faults 12 --report docs/deployment.md     (make drill-cluster)

Faults, the first four one of each kind, then at random: kill -9 of the RabbitMQ node that
leads the queue, of another RabbitMQ node, of the Galera node the applier writes to, of another
Galera node. After each kill a row is written to the source and awaited in the target (the
pipeline carries changes again: the time this takes is the figure "back after"), then the node
is started again and it rejoins. At the end the target must equal the source, table by table,
row by row: 0 missing, 0 extra, 0 different; no process may have exited, nothing may be
dead-lettered.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from devstack.galera import Galera
from devstack.mariadb import MariaDB
from devstack.rabbit_cluster import RabbitCluster
from devstack.rabbitmq import RabbitMQ
from devstack.stack import Stack, default_dir
from drill.report import Outcome, write_report
from harness.clusters import MARKS, ClusterServers, galera_of, mark, rabbit_cluster_of, serving
from harness.pipeline import Pipeline, new_pipeline
from harness.workload import TABLES

KINDS = ("kill_rabbitmq_leader", "kill_rabbitmq_node", "kill_galera_serving", "kill_galera_node")
# The cluster drill's figures go between these markers in docs/deployment.md.
FIGURES_BEGIN = "<!-- cluster drill figures: begin (written by python -m drill --cluster) -->"
FIGURES_END = "<!-- cluster drill figures: end -->"


@dataclass
class ClusterReport(Outcome):
    back_after: dict[str, list[float]] = field(default_factory=dict)  # kind -> seconds

    @property
    def passed(self) -> bool:
        return (
            bool(self.differences)
            and all(
                d.startswith("0 missing, 0 extra, 0 different") for d in self.differences.values()
            )
            and not self.unexpected_exits
            and self.dead_letters == 0
        )


class ClusterDrill:
    def __init__(
        self,
        p: Pipeline,
        rabbit: RabbitCluster,
        galera: Galera,
        faults: int,
        seed: int,
        rate: float,
        pause: tuple[float, float] = (1.0, 4.0),
    ) -> None:
        self.p, self.rabbit, self.galera = p, rabbit, galera
        self.faults, self.rate, self.pause = faults, rate, pause
        self.rng = random.Random(seed)
        self.workload = p.workload(seed)
        self.report = ClusterReport()

    def _victim(self, kind: str) -> RabbitMQ | MariaDB:
        if kind == "kill_rabbitmq_leader":
            return self.rabbit.leader(self.p.queue)
        if kind == "kill_rabbitmq_node":
            leader = self.rabbit.leader(self.p.queue)
            return self.rng.choice([n for n in self.rabbit.nodes if n is not leader])
        used = serving(self.galera)
        if kind == "kill_galera_serving":
            return used
        return self.rng.choice([n for n in self.galera.nodes if n is not used])

    def _fault(self, kind: str) -> None:
        node = self._victim(kind)
        node.kill()
        killed = time.monotonic()
        mark(self.p, timeout=120)
        self.report.back_after.setdefault(kind, []).append(time.monotonic() - killed)
        if isinstance(node, RabbitMQ):
            self.rabbit.start()
        else:
            self.galera.restart(node)
        mark(self.p, timeout=120)

    def run(self) -> ClusterReport:
        started = time.monotonic()
        # Galera needs a key on every table: the workload's keyless one gets one.
        self.p.sql("ALTER TABLE events ADD COLUMN id bigserial PRIMARY KEY", MARKS)
        extractor, applier = self.p.start_pipeline()
        self.workload.start(transactions=10**9, rate=self.rate)
        mark(self.p)
        kinds = list(KINDS)
        self.rng.shuffle(kinds)
        for n in range(self.faults):
            kind = kinds[n] if n < len(kinds) else self.rng.choice(KINDS)
            self._fault(kind)
            self.report.faults[kind] += 1
            for proc in (extractor, applier):
                if not proc.alive():
                    self.report.unexpected_exits.append(
                        f"{proc.module} exited with {proc.popen.returncode}: "
                        + proc.output()[-1000:]
                    )
            time.sleep(self.rng.uniform(*self.pause))
        self.workload.stop()
        self.report.transactions = self.workload.transactions
        self.report.changes = self.workload.changes
        converge_from = time.monotonic()
        tables = [*TABLES, "marks"]
        self.p.wait_converged(tables, timeout=300)
        self.report.converge_seconds = time.monotonic() - converge_from
        self.report.tally(self.p, tables, started)
        return self.report


def markdown(report: ClusterReport, command: str) -> str:
    lines = [
        "### Figures of the last cluster drill",
        "",
        "On one 2-core machine that also ran PostgreSQL, the 3 RabbitMQ nodes and the 3 Galera",
        'nodes. "Back after": from the kill to a row written after it being in the target.',
        "",
        f"Command: `{command}`.",
        "",
        "| fault | count | back after (median, max) |",
        "| --- | --- | --- |",
    ]
    for kind in KINDS:
        took = report.back_after.get(kind, [])
        shown = f"{statistics.median(took):.1f} s, {max(took):.1f} s" if took else "-"
        lines.append(f"| {kind} | {report.faults[kind]} | {shown} |")
    lines += [
        f"| **total** | **{sum(report.faults.values())}** | |",
        "",
        *report.figure_rows(),
        "",
        "| table | rows | missing, extra, different |",
        "| --- | --- | --- |",
    ]
    for table, diff in report.differences.items():
        lines.append(f"| {table} | {report.rows.get(table, 0)} | {diff} |")
    lines += ["", f"Result: **{'passed' if report.passed else 'FAILED'}**.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m drill --cluster", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--faults", type=int, default=12)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--rate", type=float, default=60.0, help="source transactions per second")
    parser.add_argument("--report", type=Path, help="write the figures here (markdown)")
    args = parser.parse_args(argv)
    report, text = run_cluster_drill(args)
    print(text)
    for line in report.unexpected_exits:
        print("unexpected exit:", line, file=sys.stderr)
    if args.report:
        write_report(args.report, text, FIGURES_BEGIN, FIGURES_END)
    return 0 if report.passed else 1


def run_cluster_drill(args: argparse.Namespace) -> tuple[ClusterReport, str]:
    """The drill on the drill's stack (.stack/drill) and its clusters; its report text."""
    stack = Stack.load(default_dir() / "drill")
    rabbit, galera = rabbit_cluster_of(stack), galera_of(stack)
    servers = ClusterServers(stack, rabbit_cluster=rabbit, galera=galera)
    servers.start()
    logdir = stack.root / "logs"
    logdir.mkdir(exist_ok=True)
    pipeline = new_pipeline(servers, logdir)
    pipeline.settings["CDC_BROKER_QUEUE_TYPE"] = "quorum"
    try:
        report = ClusterDrill(pipeline, rabbit, galera, args.faults, args.seed, args.rate).run()
    finally:
        pipeline.destroy()
        servers.stop()
        stack.stop()
    command = (
        f"python -m drill --cluster --faults {args.faults} --seed {args.seed} --rate {args.rate:g}"
    )
    return report, markdown(report, command)
