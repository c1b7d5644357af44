"""The benchmark's figures, and docs/performance.md made of them.

A figure either depends on the decoder (``source.decoder``: measured once per decoder, each
with its own pipeline) or not (measured once); the table has a value column per decoder, and
a figure that does not depend on it has one value, in the first.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.measure import SERVERS

NOTES_MARKER = "<!-- notes: kept by python -m bench; write below -->"
NOT_MEASURED = "not run"

Tag = str | None  # the decoder a figure was measured with; None: it does not depend on one


@dataclass
class Figures:
    # (part, figure) -> decoder -> value, in the order first added
    values: dict[tuple[str, str], dict[Tag, str]] = field(default_factory=dict)
    memory: dict[tuple[str, Tag], dict[str, float]] = field(default_factory=dict)  # -> MB
    cpu: dict[tuple[str, Tag], dict[str, float]] = field(default_factory=dict)  # -> cores
    # What the figures being added now depend on: the run sets it before each part.
    decoder: Tag = None

    def add(self, part: str, figure: str, value: str) -> None:
        self.add_for(self.decoder, part, figure, value)

    def add_for(self, decoder: Tag, part: str, figure: str, value: str) -> None:
        self.values.setdefault((part, figure), {})[decoder] = value
        tag = f" [{decoder}]" if decoder else ""
        print(f"bench: {part}{tag}: {figure} = {value}", flush=True)


@dataclass
class Results:
    """The rates the targets are judged on: those no decoder changes (copy, the stage limits
    but decoding) and each decoder's own (bulk, cpu_per_row, p99, drain_ratio, decoding)."""

    common: dict[str, float] = field(default_factory=dict)
    by_decoder: dict[str, dict[str, float]] = field(default_factory=dict)

    def of(self, decoder: str) -> dict[str, float]:
        return self.by_decoder.setdefault(decoder, {})


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


def _table_rows(figures: Figures, decoders: list[str]) -> list[str]:
    """One row per figure: a value per decoder (NOT_MEASURED where a part did not run with
    one), or one value (the first column) where the figure does not depend on the decoder. A figure measured with a decoder that has no column
    (the "decoders" part of a one-decoder run) gets a row per decoder, named after it."""
    lines = []
    # Grouped by part, in the order the parts came: a part's figure added later (the slowest
    # stage, once every pipeline ran) stays with its part.
    order = list(dict.fromkeys(part for part, _ in figures.values))
    rows = sorted(figures.values.items(), key=lambda row: order.index(row[0][0]))
    for (part, figure), values in rows:
        if None in values:
            cells = [values[None]] + [""] * (len(decoders) - 1)
            lines.append(f"| {part} | {figure} | " + " | ".join(cells) + " |")
        elif set(values) <= set(decoders):
            cells = [values.get(d, NOT_MEASURED) for d in decoders]
            lines.append(f"| {part} | {figure} | " + " | ".join(cells) + " |")
        else:
            for d, value in values.items():
                cells = [value] + [""] * (len(decoders) - 1)
                lines.append(f"| {part} | {d}: {figure} | " + " | ".join(cells) + " |")
    return lines


def _label(part: str, decoder: Tag, decoders: list[str]) -> str:
    return part if decoder is None or len(decoders) == 1 else f"{part} ({decoder})"


def _judge(
    decoders: list[str],
    values: dict[str, float],
    fmt: Callable[[float], str],
    ok: Callable[[float], bool],
) -> str:
    """``values`` per decoder -> "wal2json 6.1x, pgoutput 6.4x — met" (one decoder: "6.1x —
    met"); a target met with one decoder only says which."""
    measured = [d for d in decoders if d in values]
    if len(decoders) == 1:
        shown = fmt(values[measured[0]])
    else:
        shown = ", ".join(f"{d} {fmt(values[d])}" for d in measured)
    met = [d for d in measured if ok(values[d])]
    if len(met) == len(measured):
        verdict = "met"
    elif not met:
        verdict = "NOT met"
    else:
        verdict = ", ".join(f"{'met' if d in met else 'NOT met'} with {d}" for d in measured)
    return f"{shown} — {verdict}"


def _targets(figures: Figures, results: Results, decoders: list[str]) -> list[str]:
    def each(key: str) -> dict[str, float]:
        return {d: r[key] for d, r in results.by_decoder.items() if key in r}

    lines = []
    if ratios := each("bulk_vs_mariadb"):
        judged = _judge(decoders, ratios, lambda r: f"{r:.2f}", lambda r: r >= 0.6)
        lines.append(f"- bulk / MariaDB batched upserts alone: {judged}")
    if p99 := each("p99"):
        judged = _judge(decoders, p99, lambda s: f"{s * 1000:.0f} ms", lambda s: s <= 0.1)
        lines.append(f"- latency p99: {judged}")
    if cpu := each("cpu_per_row"):
        judged = _judge(decoders, cpu, lambda us: f"{us:.1f} µs", lambda us: us <= 17)
        lines.append(f"- extractor + applier CPU per bulk row: {judged}")
    if drain := each("drain_ratio"):
        judged = _judge(decoders, drain, lambda r: f"{r:.1f}x", lambda r: r >= 5)
        lines.append(
            f"- drain of queued single-row transactions, this pipeline / naive: {judged}"
            " (target 5x, goal 8x)"
        )
    # Each decoder's processes: the parts run with it and those that do not depend on it.
    peaks = {
        d: max(
            (mb for (_, tag), m in figures.memory.items() if tag in (None, d) for mb in m.values()),
            default=0.0,
        )
        for d in decoders
    }
    judged = _judge(decoders, peaks, lambda mb: f"{mb:.0f} MB", lambda mb: mb < 200)
    lines.append(f"- highest resident memory: {judged}")
    if "copy" in results.common and (bulk := each("bulk")):
        copy = results.common["copy"]
        judged = _judge(decoders, bulk, lambda r: f"{r:,.0f}", lambda r: copy >= r)
        lines.append(f"- snapshot copy {copy:,.0f} rows/s vs bulk streaming rows/s: {judged}")
    return lines


def markdown(figures: Figures, results: Results, command: str, decoders: list[str]) -> str:
    """``decoders``: those the pipeline ran with end to end, in order (a column each)."""
    lines = [
        "# Performance",
        "",
        "Measured by `make bench` in one run on the local stack: the three servers, the",
        "extractor and the applier all on the same machine.",
    ]
    if len(decoders) > 1:
        lines += [
            "A figure that depends on the decoder (`source.decoder`) has a value per decoder:",
            "its part ran once per decoder, each with its own pipeline (slot, databases,",
            'queue), one after the other on a settled machine ("not run": not with that one).',
            "A figure with one value does not depend on the decoder; it was measured once,",
            f"with {decoders[0]}'s pipeline.",
        ]
    lines += [
        "",
        f"Machine: {machine()}.",
        f"Command: `{command}`.",
        "",
        "| part | figure | " + " | ".join(decoders) + " |",
        "| --- | --- |" + " --- |" * len(decoders),
    ]
    lines += _table_rows(figures, decoders)
    lines += ["", "Peak resident memory (MB) while each part ran:", ""]
    lines += ["| part | extractor | applier |", "| --- | --- | --- |"]
    for (part, tag), peak_mb in figures.memory.items():
        lines.append(
            f"| {_label(part, tag, decoders)} | {peak_mb.get('extractor', 0):.0f}"
            f" | {peak_mb.get('applier', 0):.0f} |"
        )
    lines += ["", f"CPU while each part ran, in cores busy (the machine has {os.cpu_count()}):", ""]
    groups = ["extractor", "applier", *SERVERS, "benchmark"]
    lines += ["| part | " + " | ".join(groups) + " | total |", "|" + " --- |" * (len(groups) + 2)]
    for (part, tag), cores in figures.cpu.items():
        cells = " | ".join(f"{cores.get(g, 0.0):.2f}" for g in groups)
        total = sum(cores.get(g, 0.0) for g in groups)
        lines.append(f"| {_label(part, tag, decoders)} | {cells} | {total:.2f} |")
    lines += ["", "Targets (issue 13: drain at least 5x the naive pipeline; bulk at least 0.6 of",
              "MariaDB's batched upserts alone; p99 at most 100 ms at 1,000 transactions/s;",
              "extractor + applier CPU at most 17 µs per bulk row; each process under 200 MB):",
              ""]  # fmt: skip
    lines += _targets(figures, results, decoders)
    return "\n".join(lines) + "\n"


def write(path: Path, text: str) -> None:
    """The report, keeping what people wrote below NOTES_MARKER in the one it replaces."""
    notes = ""
    if path.exists():
        old = path.read_text()
        if NOTES_MARKER in old:
            notes = old[old.index(NOTES_MARKER) :]
    path.write_text(text + "\n" + (notes or NOTES_MARKER + "\n"))
