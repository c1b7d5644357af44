"""``python -m devstack.demo``: the whole pipeline on the local stack, with sql/demo.sql.

Starts the stack, both processes, runs the demo SQL on the source, waits until MariaDB holds
the same rows, prints both side by side, and stops the processes. Run it from .venv (make demo).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import mariadb
import psycopg2
from sqlalchemy.engine import make_url

from applier.compare import Difference, compare_table, read_source, read_target, source_columns
from devstack.stack import Stack
from devstack.system import TimedOut, wait_until

ROOT = Path(__file__).resolve().parent.parent
TABLES = ("customers", "order_lines")
SHOW_ROWS = 8


def main() -> int:
    stack = Stack.load()
    stack.start()
    env = {**os.environ, **stack.env()}
    logs = stack.root / "logs"
    logs.mkdir(exist_ok=True)
    offsets = {n: _size(logs / f"{n}.log") for n in ("extractor", "applier")}
    procs = {name: _start(name, env, logs) for name in ("extractor", "applier")}
    try:
        _wait_for_log(
            logs / "extractor.log", offsets["extractor"], "streaming slot=", procs["extractor"]
        )
        _wait_for_log(
            logs / "applier.log", offsets["applier"], "consuming queue=", procs["applier"]
        )
        print("== running sql/demo.sql on the source", flush=True)
        subprocess.run(
            [
                "psql",
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                # As the application that owns the tables: the pipeline's role only reads.
                env["DEVSTACK_SOURCE_APP_DSN"],
                "-f",
                str(ROOT / "sql/demo.sql"),
            ],
            check=True,
        )
        pg = psycopg2.connect(env["DEVSTACK_SOURCE_APP_DSN"])
        pg.autocommit = True
        url = make_url(env["CDC_TARGET_URL"])
        maria = mariadb.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            database=url.database,
        )
        maria.autocommit = True
        diffs: dict[str, Difference] = {}

        def converged() -> bool:
            diffs.update({t: compare_table(pg, maria, "public", t, t) for t in TABLES})
            return all(d.equal for d in diffs.values())

        try:
            wait_until(converged, "the target to converge", timeout=90, interval=0.5)
        except TimedOut:
            for t, d in diffs.items():
                print(f"{t}: {d.summary()}")
            print("demo: the target did not converge in 90 s; see .stack/logs/", file=sys.stderr)
            return 1
        for t in TABLES:
            _side_by_side(pg, maria, t)
        print("\nconverged: " + ", ".join(f"{t} {d.summary()}" for t, d in diffs.items()))
        print(f"logs: {logs}/extractor.log, {logs}/applier.log; stop the servers: make stack-stop")
        return 0
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _start(name: str, env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    log = (logs / f"{name}.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", name], env=env, stdout=log, stderr=log, cwd=ROOT)


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _wait_for_log(
    path: Path, start: int, needle: str, proc: subprocess.Popen[bytes], timeout: float = 60
) -> None:
    def started() -> bool:
        if proc.poll() is not None:
            raise SystemExit(f"demo: {path.stem} exited with code {proc.returncode}; see {path}")
        return path.exists() and needle in path.read_text(errors="replace")[start:]

    try:
        wait_until(started, f"{path.stem} to start", timeout, interval=0.2)
    except TimedOut:
        raise SystemExit(f"demo: {path.stem} did not start in {timeout:.0f}s; see {path}") from None


def _side_by_side(pg: Any, maria: Any, table: str) -> None:
    names, types, key = source_columns(pg, "public", table)
    _, _, source_rows = read_source(pg, "public", table)
    index = [names.index(k) for k in key]
    source = {tuple(r[i] for i in index): r for r in source_rows}
    target = {tuple(r[i] for i in index): r for r in read_target(maria, table, names, types)}
    print(f"\n== {table}: {len(source)} rows in PostgreSQL, {len(target)} rows in MariaDB")
    width = 70
    print(f"{'PostgreSQL':<{width}} | MariaDB")
    for k in sorted(source)[:SHOW_ROWS]:
        left = _fmt(source[k])
        right = _fmt(target.get(k))
        print(f"{left[:width]:<{width}} | {right[:width]}")
    if len(source) > SHOW_ROWS:
        print(f"... and {len(source) - SHOW_ROWS} more")


def _fmt(row: tuple[Any, ...] | None) -> str:
    if row is None:
        return "(missing)"
    return ", ".join("NULL" if v is None else str(v) for v in row)


if __name__ == "__main__":
    sys.exit(main())
