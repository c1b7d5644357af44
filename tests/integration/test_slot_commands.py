"""``python -m extractor status`` and ``drop-slot`` against the real servers."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

from devstack.system import wait_until
from harness.pipeline import ROOT, Pipeline


def cli(pipeline: Pipeline, *args: str, tty_input: str | None = None) -> tuple[int, str]:
    """Run ``python -m extractor ARGS``; with ``tty_input``, stdin is a terminal that types it."""
    argv = [sys.executable, "-m", "extractor", *args]
    if tty_input is None:
        proc = subprocess.run(
            argv, env=pipeline.env, cwd=ROOT, capture_output=True, text=True, timeout=60,
            stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
        return proc.returncode, proc.stdout + proc.stderr
    controller, terminal = pty.openpty()
    try:
        with subprocess.Popen(
            argv, env=pipeline.env, cwd=ROOT, stdin=terminal, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True,
        ) as popen:  # fmt: skip
            os.write(controller, tty_input.encode())
            out, _ = popen.communicate(timeout=60)
            return popen.returncode, out
    finally:
        os.close(controller)
        os.close(terminal)


def test_status_and_drop_slot(pipeline: Pipeline) -> None:
    code, out = cli(pipeline, "status")
    assert code == 1 and "does not exist" in out, out

    pipeline.sql("CREATE TABLE t (id int PRIMARY KEY)", "INSERT INTO t VALUES (1)")
    extractor = pipeline.start("extractor")
    extractor.wait_for("streaming slot=")
    wait_until(lambda: pipeline.queue_depth() >= 1, "the copy to be published")

    code, out = cli(pipeline, "status")
    assert code == 0, out
    assert f"slot            {pipeline.name} (plugin wal2json" in out
    assert "active          yes (walsender pid" in out
    assert f"queue           {pipeline.queue}: " in out
    code, out = cli(pipeline, "status", "--json")
    doc = json.loads(out)
    assert doc["exists"] is True and doc["active"] is True and doc["plugin"] == "wal2json"
    assert isinstance(doc["lag_bytes"], int) and doc["lag_bytes"] >= 0
    assert doc["retained_bytes"] >= doc["lag_bytes"]
    assert doc["queue_messages"] >= 1
    assert doc["dead_letter_messages"] == 0

    code, out = cli(pipeline, "drop-slot", "--yes")
    assert code == 1 and "is in use" in out and "stop the extractor first" in out, out

    assert extractor.stop() == 0
    # Not a terminal and no --yes: nothing is asked, nothing dropped.
    code, out = cli(pipeline, "drop-slot")
    assert code == 1 and "pass --yes" in out, out
    # At a terminal, the wrong answer keeps it.
    code, out = cli(pipeline, "drop-slot", tty_input="no\n")
    assert code == 1 and "not dropped" in out, out
    assert "Type the slot name" in out
    code, _ = cli(pipeline, "status")
    assert code == 0
    # The slot's own name drops it.
    code, out = cli(pipeline, "drop-slot", tty_input=f"{pipeline.name}\n")
    assert code == 0 and f"slot {pipeline.name} dropped" in out, out
    code, out = cli(pipeline, "status")
    assert code == 1 and "does not exist" in out, out
