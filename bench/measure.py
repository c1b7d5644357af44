"""What the benchmark watches while a part runs: resident memory and CPU time per process.

CPU time is read from /proc for the extractor, the applier, each server of the stack (every
process descending from one whose command line names the stack's folder, plus what its
reaped children used) and the benchmark itself with the tools it ran (pgbench, pg_recvlogical).
"""

from __future__ import annotations

import contextlib
import os
import re
import resource
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from harness.pipeline import Proc

_TICK = os.sysconf("SC_CLK_TCK")
SERVERS = ("PostgreSQL", "MariaDB", "RabbitMQ")


def percentile(cumulative: dict[float, float], q: float) -> float:
    """The q-quantile of a Prometheus histogram (cumulative bucket counts), interpolated
    linearly inside the bucket it falls in, as Prometheus' histogram_quantile does."""
    bounds = sorted(cumulative)
    total = cumulative[bounds[-1]] if bounds else 0.0
    if not total:
        return 0.0
    rank, lower, below = q * total, 0.0, 0.0
    for le in bounds:
        count = cumulative[le]
        if count >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = le, count
    return lower


def histogram(port: int, name: str) -> dict[float, float]:
    """The cumulative bucket counts of the histogram ``name`` a process serves on ``port``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    pattern = rf'^{name}_bucket\{{le="([^"]+)"\}} ([0-9.e+]+)$'
    return {float(m.group(1)): float(m.group(2)) for m in re.finditer(pattern, text, re.M)}


def _proc_stat(pid: int) -> tuple[int, float, float]:
    """(parent pid, own CPU seconds, reaped children's CPU seconds)."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2 :].split()
    # fields[0] is the state (field 3 of proc(5)); utime, stime, cutime, cstime are 14-17.
    own = (int(fields[11]) + int(fields[12])) / _TICK
    children = (int(fields[13]) + int(fields[14])) / _TICK
    return int(fields[1]), own, children


def _cmdline(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        return f.read().replace(b"\0", b" ").decode(errors="replace")


def _server_of(cmdline: str) -> str | None:
    words = cmdline.split()
    if words and words[0].endswith("/postgres"):
        return "PostgreSQL"
    if "mariadbd" in cmdline:
        return "MariaDB"
    if "rabbitmq" in cmdline or "beam.smp" in cmdline:
        return "RabbitMQ"
    return None


def cpu_seconds(stack_root: Path, procs: dict[str, Proc]) -> dict[str, float]:
    """CPU seconds used so far, per process group; differences over a part give its use."""
    marker = str(stack_root)
    ours = {proc.popen.pid: name for name, proc in procs.items()}
    table: dict[int, tuple[int, float, float]] = {}
    roots: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            table[pid] = _proc_stat(pid)
            if pid not in ours:
                cmd = _cmdline(pid)
                server = _server_of(cmd) if marker in cmd else None
                if server is not None:
                    roots[pid] = server
        except (OSError, ValueError, IndexError):
            continue
    totals = {name: 0.0 for name in (*procs, *SERVERS)}
    for pid, (_, own, children) in table.items():
        group = ours.get(pid)
        if group is not None:
            totals[group] += own + children
            continue
        ancestor, hops = pid, 0
        while ancestor not in roots and ancestor in table and hops < 64:
            ancestor, hops = table[ancestor][0], hops + 1
        server = roots.get(ancestor)
        if server is None:
            continue
        # A root's reaped children (e.g. PostgreSQL backends that ended) count too; its live
        # children are counted on their own. Only the topmost root adds them, not twice.
        parent_is_root = table[pid][0] in roots
        totals[server] += own + (0.0 if parent_is_root and pid not in roots else children)
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    totals["benchmark"] = me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime
    return totals


def machine_busy() -> tuple[float, float]:
    """Total and idle jiffies of all cores, from /proc/stat."""
    fields = [float(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields), fields[3] + fields[4]  # idle + iowait


_DIRTY_PAGES_LEFT = 50  # of InnoDB's 16 KiB pages: what a quiet server keeps dirty


def wait_for_quiet(max_seconds: float, busy_cores: float = 0.25, window: float = 2.0) -> float:
    """Wait until the whole machine uses less than ``busy_cores`` over ``window`` seconds (the
    servers' own clean-up of the part before: autovacuum, InnoDB purge, checkpoints), at most
    ``max_seconds``. Returns the seconds waited."""
    cores = os.cpu_count() or 1
    started = time.monotonic()
    while time.monotonic() - started < max_seconds:
        total0, idle0 = machine_busy()
        time.sleep(window)  # a sampling interval, not a wait for a condition
        total1, idle1 = machine_busy()
        if total1 > total0 and (1 - (idle1 - idle0) / (total1 - total0)) * cores < busy_cores:
            break
    return time.monotonic() - started


def flush_innodb(sql: Callable[[str], str], max_seconds: float) -> float:
    """Have InnoDB write out its dirty pages before a part (after a million-row part its page
    cleaner writes for a while: little CPU, which ``wait_for_quiet`` does not see, but disk
    flushes that slow every commit of the next part). At most ``max_seconds``; returns the
    seconds waited."""
    started = time.monotonic()
    before = sql("SELECT @@GLOBAL.innodb_max_dirty_pages_pct").strip()
    sql("SET GLOBAL innodb_max_dirty_pages_pct = 0")
    try:
        dirty = (
            "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS"
            " WHERE VARIABLE_NAME = 'INNODB_BUFFER_POOL_PAGES_DIRTY'"
        )
        while time.monotonic() - started < max_seconds:
            if int(sql(dirty).strip() or 0) <= _DIRTY_PAGES_LEFT:
                break
            time.sleep(0.5)  # polled: the page cleaner reports no event to wait on
    finally:
        sql(f"SET GLOBAL innodb_max_dirty_pages_pct = {float(before)}")
    return time.monotonic() - started


class Watch:
    """While a part runs: peak resident memory of our processes, CPU used per group."""

    def __init__(
        self,
        stack_root: Path,
        procs: dict[str, Proc],
        backlog: Callable[[], int] | None = None,
    ) -> None:
        self._root = stack_root
        self._backlog = backlog
        self.backlog: list[int] = []  # messages ready in the queue, sampled each half second
        self._procs = dict(procs)
        self.peak: dict[str, float] = {}
        self.cpu: dict[str, float] = {}  # group -> share of one core over the part
        self.wall = 0.0  # seconds the part took
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._started = 0.0
        self._cpu_before: dict[str, float] = {}

    def watch(self, procs: dict[str, Proc]) -> None:
        """Processes started during the part (the initial copy starts the pipeline); sampled
        at once, as a part shorter than a sampling interval (a tiny drain) has them too."""
        self._procs = dict(procs)
        self._sample_memory()

    def __enter__(self) -> Watch:
        self._started = time.monotonic()
        self._cpu_before = cpu_seconds(self._root, self._procs)
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join()
        wall = self.wall = max(time.monotonic() - self._started, 1e-9)
        after = cpu_seconds(self._root, self._procs)
        self.cpu = {
            name: max(0.0, used - self._cpu_before.get(name, 0.0)) / wall
            for name, used in after.items()
        }

    def _run(self) -> None:
        ticks = 0
        while not self._stop.wait(0.25):
            ticks += 1
            if self._backlog is not None and ticks % 2 == 0:
                # A missed sample is no reason to stop measuring.
                with contextlib.suppress(Exception):
                    self.backlog.append(self._backlog())
            self._sample_memory()

    def _sample_memory(self) -> None:
        for name, proc in list(self._procs.items()):
            try:
                with open(f"/proc/{proc.popen.pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            mb = int(line.split()[1]) / 1024
                            self.peak[name] = max(self.peak.get(name, 0.0), mb)
            except OSError:
                pass
