"""The applier's metrics (served by shared/observe.py)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared.observe import LATENCY_BUCKETS


class ApplierMetrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.transactions = Counter(
            "cdc_applier_transactions", "Source transactions applied (heartbeats included)",
            registry=r,
        )  # fmt: skip
        self.messages = Counter(
            "cdc_applier_messages", "Envelopes applied (one per transaction or copy chunk)",
            registry=r,
        )  # fmt: skip
        self.rows = Counter(
            "cdc_applier_rows", "Row changes applied, by target table and operation",
            ["table", "op"], registry=r,
        )  # fmt: skip
        self.bulk_rows = Counter(
            "cdc_applier_bulk_rows",
            "Row changes applied through a staging table (LOAD DATA), by target table",
            ["table"], registry=r,
        )  # fmt: skip
        self.duplicates = Counter(
            "cdc_applier_duplicates",
            "Messages acked unapplied: the checkpoint had them",
            registry=r,
        )
        self.dead_lettered = Counter(
            "cdc_applier_dead_lettered", "Messages sent to the dead-letter queue", registry=r
        )
        self.reconnects = Counter(
            "cdc_applier_reconnects", "Sessions started again after a lost connection", registry=r
        )
        self.apply_seconds = Histogram(
            "cdc_applier_apply_seconds", "Time to apply and commit one batch in MariaDB",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.delay = Histogram(
            "cdc_applier_replication_delay_seconds",
            "Source commit to target commit, per source transaction",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.delivery_delay = Histogram(
            "cdc_applier_delivery_delay_seconds",
            "Source commit to delivery to the applier, per message (its first transaction)",
            buckets=LATENCY_BUCKETS, registry=r,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "cdc_applier_queue_depth", "Messages ready in the queue (sampled)", registry=r
        )
        self.held = Gauge(
            "cdc_applier_held_messages", "Messages waiting for their predecessor", registry=r
        )
        self._last_commit = 0.0
        lag = Gauge(
            "cdc_applier_lag_seconds",
            "Now minus the source commit time of the last applied transaction",
            registry=r,
        )
        lag.set_function(lambda: time.time() - self._last_commit if self._last_commit else 0.0)
        self.last_progress = time.monotonic()

    def watch_refusals(self, refused: Callable[[], list[tuple[str, str, str]]]) -> None:
        """Serve ``cdc_applier_refused_tables``: 1 per target table and source table whose
        changes are refused, read from ``refused`` at each scrape."""
        self.registry.register(_Refusals(refused))

    def delivered(self, commit_time: str) -> None:
        """A message whose first transaction committed at ``commit_time`` was delivered
        (one observation per message: a cost per message, not per row)."""
        try:
            committed = datetime.fromisoformat(commit_time).timestamp()
        except ValueError:
            return
        self.delivery_delay.observe(max(0.0, time.time() - committed))

    def applied(self, commit_time: str, snapshot: bool, at: float | None = None) -> None:
        """A source transaction committed in the target at ``at`` (wall clock; None: now)."""
        self.transactions.inc()
        self.last_progress = time.monotonic()
        if snapshot:
            return  # a copy's "commit time" is when it was read: no delay to speak of
        try:
            committed = datetime.fromisoformat(commit_time).timestamp()
        except ValueError:
            return
        self._last_commit = committed
        self.delay.observe(max(0.0, (at or time.time()) - committed))


class _Refusals(Collector):
    def __init__(self, refused: Callable[[], list[tuple[str, str, str]]]) -> None:
        self._refused = refused

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "cdc_applier_refused_tables",
            "Target tables refusing a source table's changes (they go to the dead-letter "
            "queue; the log line table_refused says why)",
            labels=["table", "source", "reason"],
        )
        for table, source, reason in self._refused():
            family.add_metric([table, source, reason], 1)
        yield family
