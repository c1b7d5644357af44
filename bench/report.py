"""The benchmark's figures, and docs/performance.md made of them."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from bench.measure import SERVERS

NOTES_MARKER = "<!-- notes: kept by python -m bench; write below -->"


@dataclass
class Figures:
    rows: list[tuple[str, str, str]] = field(default_factory=list)  # part, figure, value
    memory: dict[str, dict[str, float]] = field(default_factory=dict)  # part -> process -> MB
    cpu: dict[str, dict[str, float]] = field(default_factory=dict)  # part -> group -> cores

    def add(self, part: str, figure: str, value: str) -> None:
        self.rows.append((part, figure, value))
        print(f"bench: {part}: {figure} = {value}", flush=True)


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {mem:.0f} GiB RAM, {platform.platform()}"


def markdown(figures: Figures, results: dict[str, float], command: str) -> str:
    """``results``: the rates the targets are judged on (copy, bulk, slowest, p99)."""
    lines = [
        "# Performance",
        "",
        "Measured by `make bench` in one run on the local stack: the three servers, the",
        "extractor and the applier all on the same machine.",
        "",
        f"Machine: {machine()}.",
        f"Command: `{command}`.",
        "",
        "| part | figure | value |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {part} | {figure} | {value} |" for part, figure, value in figures.rows]
    lines += ["", "Peak resident memory (MB) while each part ran:", ""]
    lines += ["| part | extractor | applier |", "| --- | --- | --- |"]
    for part, peak_mb in figures.memory.items():
        lines.append(
            f"| {part} | {peak_mb.get('extractor', 0):.0f} | {peak_mb.get('applier', 0):.0f} |"
        )
    lines += ["", f"CPU while each part ran, in cores busy (the machine has {os.cpu_count()}):", ""]
    groups = ["extractor", "applier", *SERVERS, "benchmark"]
    lines += ["| part | " + " | ".join(groups) + " | total |", "|" + " --- |" * (len(groups) + 2)]
    for part, cores in figures.cpu.items():
        cells = " | ".join(f"{cores.get(g, 0.0):.2f}" for g in groups)
        lines.append(f"| {part} | {cells} | {sum(cores.get(g, 0.0) for g in groups):.2f} |")
    lines += ["", "Targets (issue 13: drain at least 5x the naive pipeline; bulk at least 0.6 of",
              "MariaDB's batched upserts alone; p99 at most 100 ms at 1,000 transactions/s;",
              "extractor + applier CPU at most 17 µs per bulk row; each process under 200 MB):",
              ""]  # fmt: skip
    if "bulk_vs_mariadb" in results:
        ratio = results["bulk_vs_mariadb"]
        lines.append(
            f"- bulk / MariaDB batched upserts alone: {ratio:.2f} — "
            f"{'met' if ratio >= 0.6 else 'NOT met'}"
        )
    if "p99" in results:
        p99 = results["p99"] * 1000
        lines.append(f"- latency p99: {p99:.0f} ms — {'met' if p99 <= 100 else 'NOT met'}")
    if "cpu_per_row" in results:
        us = results["cpu_per_row"]
        lines.append(
            f"- extractor + applier CPU per bulk row: {us:.1f} µs — "
            f"{'met' if us <= 17 else 'NOT met'}"
        )
    if "drain_ratio" in results:
        r = results["drain_ratio"]
        lines.append(
            f"- drain of queued single-row transactions, this pipeline / naive: {r:.1f}x — "
            f"{'met' if r >= 5 else 'NOT met'} (target 5x, goal 8x)"
        )
    peaks = [v for m in figures.memory.values() for v in m.values()]
    peak = max(peaks) if peaks else 0.0
    lines.append(f"- highest resident memory: {peak:.0f} MB — {'met' if peak < 200 else 'NOT met'}")
    if "copy" in results and "bulk" in results:
        ok = results["copy"] >= results["bulk"]
        lines.append(
            f"- snapshot copy {results['copy']:,.0f} rows/s vs bulk streaming "
            f"{results['bulk']:,.0f} rows/s — {'met' if ok else 'NOT met'}"
        )
    return "\n".join(lines) + "\n"


def write(path: Path, text: str) -> None:
    """The report, keeping what people wrote below NOTES_MARKER in the one it replaces."""
    notes = ""
    if path.exists():
        old = path.read_text()
        if NOTES_MARKER in old:
            notes = old[old.index(NOTES_MARKER) :]
    path.write_text(text + "\n" + (notes or NOTES_MARKER + "\n"))
