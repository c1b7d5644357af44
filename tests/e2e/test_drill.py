"""A short fault drill in CI; ``make drill`` runs the long one (docs/reliability.md)."""

from __future__ import annotations

import os
import time

import pytest

from drill.report import KINDS, markdown
from drill.run import Drill
from harness.pipeline import Pipeline


@pytest.mark.decoders
@pytest.mark.slow
def test_short_fault_drill(pipeline: Pipeline) -> None:
    seed = int(os.environ.get("CDC_DRILL_SEED", time.time()))
    drill = Drill(
        pipeline,
        faults=14,
        seed=seed,
        rate=100,
        pause=(1.0, 2.5),
        mariadb_down=(3.0, 6.0),
        copy_rows=30_000,
    )
    report = drill.run()
    summary = markdown(report, "tests/e2e/test_drill.py", seed)
    assert sum(report.faults.values()) == 14
    # The first fault hits the initial copy; then one of each kind.
    assert set(report.faults) >= set(KINDS) - {
        "kill_extractor",
        "sigterm_extractor",
        "kill_applier",
    }
    assert not report.unexpected_exits, report.unexpected_exits
    assert report.passed, summary
    assert report.transactions > 100
