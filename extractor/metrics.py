"""The extractor's metrics (served by shared/observe.py)."""

from __future__ import annotations

import time
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.observe import LATENCY_BUCKETS
from shared.tables import TableRef


class ExtractorMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.messages = Counter(
            "cdc_extractor_messages_published", "Messages published", registry=r
        )
        self.changes = Counter(
            "cdc_extractor_changes_published", "Row changes published (copies included)", registry=r
        )
        self.transactions = Counter(
            "cdc_extractor_transactions_published", "Source transactions published", registry=r
        )
        self.confirm_seconds = Histogram(
            "cdc_extractor_confirm_seconds", "Publish to RabbitMQ confirm, per message",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.publish_delay = Histogram(
            "cdc_extractor_publish_delay_seconds",
            "Source commit to publish, per message of the stream (its first transaction)",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.slot_lag_bytes = Gauge(
            "cdc_extractor_slot_lag_bytes",
            "WAL the slot keeps: current WAL LSN minus the slot's confirmed flush LSN (sampled)",
            registry=r,
        )
        self.unidentified_tables = Gauge(
            "cdc_extractor_unidentified_tables",
            "Captured tables whose updates and deletes PostgreSQL cannot identify (checked"
            " every 30 s)",
            registry=r,
        )
        self.reconnects = Counter(
            "cdc_extractor_reconnects", "Sessions started again after a fault", registry=r
        )
        self.copied_rows = Counter(
            "cdc_extractor_copied_rows",
            "Rows read by table copies (snapshot, backfill)",
            registry=r,
        )
        self.schema_changes = Counter(
            "cdc_extractor_schema_changes",
            "Schema changes of captured tables reported by the DDL capture (sql/ddl-capture.sql)",
            registry=r,
        )
        self.unreported_schema_changes = Counter(
            "cdc_extractor_unreported_schema_changes",
            "Captured tables whose columns or types changed without a DDL capture message; each"
            " is copied again (install sql/ddl-capture.sql for exact schema changes)",
            registry=r,
        )
        # What the catalog check last reported (catalog.py), kept across sessions so that a
        # session started again (a reconnect, a standby's next try) does not repeat it.
        self.identity_reported: dict[tuple[TableRef, TableRef], tuple[str, str]] = {}
        self._last_commit_seen = 0.0
        since = Gauge(
            "cdc_extractor_seconds_since_last_commit",
            "Seconds since the last source transaction (heartbeats included) was decoded",
            registry=r,
        )
        since.set_function(
            lambda: time.monotonic() - self._last_commit_seen if self._last_commit_seen else -1.0
        )
        self.streaming = False

    def published(self, commit_time: str) -> None:
        """A message of the stream went out whose first transaction committed at
        ``commit_time`` (one observation per message: a cost per message, not per row)."""
        try:
            committed = datetime.fromisoformat(commit_time).timestamp()
        except ValueError:
            return
        self.publish_delay.observe(max(0.0, time.time() - committed))

    def commit_seen(self) -> None:
        self._last_commit_seen = time.monotonic()
