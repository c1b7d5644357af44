"""What the drill reports: its figures, as markdown, written into docs/reliability.md.

The faults it injects are named here (``KINDS``, in the order the report lists them), with
the drill's own tables, which the report describes.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.pipeline import Pipeline

KINDS = (
    "kill_extractor",
    "kill_applier",
    "kill_both",
    "sigterm_extractor",
    "sigterm_applier",
    "restart_rabbitmq",
    "mariadb_down",
    "restart_postgres",
    "tcp_cut",
    "backfill_kill_extractor",
    "backfill_sigterm_extractor",
    "backfill_kill_applier",
    "filter_change_in_large_transaction",
)
# The drill's own tables beside the workload's: one that copies take a while to read, and one
# without a key (a row applied twice would show) that large transactions write with it.
COPIED, AUDIT = "copied", "audit"


@dataclass
class Outcome:
    """What every drill (this one, the cluster drill) finds at its end."""

    faults: Counter[str] = field(default_factory=Counter)
    transactions: int = 0
    changes: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    differences: dict[str, str] = field(default_factory=dict)
    unexpected_exits: list[str] = field(default_factory=list)
    seconds: float = 0.0
    converge_seconds: float = 0.0
    dead_letters: int = 0

    def tally(self, p: Pipeline, tables: list[str], started: float) -> None:
        """Each table compared with the source and counted; the dead letters; the duration."""
        for table, diff in p.differences(tables).items():
            self.differences[table] = diff.summary()
        with p.pg() as conn, conn.cursor() as cur:
            for table in tables:
                cur.execute(f"SELECT count(*) FROM {table}")
                self.rows[table] = int(cur.fetchone()[0])
        self.dead_letters = p.queue_depth(p.queue + ".dead")
        self.seconds = time.monotonic() - started

    def figure_rows(self) -> list[str]:
        return [
            "| figure | value |",
            "| --- | --- |",
            f"| source transactions committed | {self.transactions} |",
            f"| source row changes | {self.changes} |",
            f"| rows compared at the end | {sum(self.rows.values())} |",
            f"| time to converge after the last fault | {self.converge_seconds:.1f} s |",
            f"| drill duration | {self.seconds / 60:.1f} min |",
            f"| processes that exited by themselves | {len(self.unexpected_exits)} |",
            f"| messages dead-lettered | {self.dead_letters} |",
        ]


@dataclass
class Report(Outcome):
    cuts: Counter[str] = field(default_factory=Counter)
    big_rows: int = 0
    copies_cut: int = 0
    peak_rss_mb: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return (
            all(d.startswith("0 missing, 0 extra, 0 different") for d in self.differences.values())
            and not self.unexpected_exits
            and self.dead_letters == 0
        )


def markdown(report: Report, command: str, seed: int) -> str:
    lines = [
        "# Reliability",
        "",
        "Figures of the last full fault drill (`make drill`), on one 2-core machine that also ran",
        "PostgreSQL, RabbitMQ and MariaDB. The drill writes random DML on four tables (one with a",
        "composite key, one without any key, one with large TOASTed values) while it injects",
        "faults in random order, then compares the target with the source row by row.",
        f"Two more tables serve the faults in copies: `{COPIED}` (copied initially and by",
        f"backfills, which kill -9 or SIGTERM then cut short) and the key-less `{AUDIT}`, which large",
        "transactions write together with it, row by row, before a restart with another table",
        "filter (a row applied twice or missed would show there).",
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
    lines += report.figure_rows()
    lines += [
        f"| one transaction of (rows) | {report.big_rows or '-'} |",
        f"| copies cut short by a fault | {report.copies_cut} |",
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


def write_report(
    path: Path, figures: str, begin: str = FIGURES_BEGIN, end: str = FIGURES_END
) -> None:
    block = f"{begin}\n{figures.rstrip()}\n{end}"
    old = path.read_text() if path.exists() else ""
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        tail = rest.split(end, 1)[1]
        path.write_text(head + block + tail)
    else:
        path.write_text(block + "\n")
