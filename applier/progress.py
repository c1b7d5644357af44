"""Running totals of the applier, logged every few seconds instead of a line per message."""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import UTC, datetime

from applier.apply import BatchResult
from shared.envelope import Envelope
from shared.lsn import format_lsn

log = logging.getLogger(__name__)

_REPORT_SECONDS = 10.0


class Progress:
    """Messages and rows applied, duplicates and dead letters, the last position."""

    def __init__(self) -> None:
        self.messages = 0
        self.rows = 0
        self.skipped = 0
        self.dead_lettered = 0
        self.last: Envelope | None = None
        self._reported_at = time.monotonic()
        self._reported_messages = 0

    def record(self, result: BatchResult, last: Envelope) -> None:
        self.messages += result.applied
        self.rows += sum(result.rows.values())
        self.last = dataclasses.replace(last, changes=[])
        log.debug("batch_applied messages=%d seconds=%.3f", result.applied, result.seconds)

    def maybe_report(self) -> None:
        now = time.monotonic()
        if now - self._reported_at < _REPORT_SECONDS or self.messages == self._reported_messages:
            return
        lag = "-"
        if self.last is not None:
            try:
                committed = datetime.fromisoformat(self.last.commit_time)
                lag = f"{(datetime.now(UTC) - committed).total_seconds():.3f}s"
            except ValueError:
                pass
        log.info(
            "progress messages=%d rows=%d duplicates=%d dead_lettered=%d last_lsn=%s lag=%s",
            self.messages,
            self.rows,
            self.skipped,
            self.dead_lettered,
            format_lsn(self.last.commit_lsn) if self.last else "-",
            lag,
        )
        self._reported_at = now
        self._reported_messages = self.messages
