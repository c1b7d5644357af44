"""The applier's main loop: take deliveries, put them in order, apply, ack after the commit.

The parts, each with one job, made here from the collaborators passed in
(applier/collaborators.py):

- ``Intake`` (intake.py): each delivery decoded and held for its turn;
- ``Ordering`` (ordering.py): released in source order, duplicates acked, gaps watched;
- ``BatchRunner`` (batches.py): batches applied one at a time, one way, and their outcome
  settled (acked, retried, parked);
- ``CheckpointKeeper`` (checkpoint_keeper.py): the checkpoint, owned there alone.

This loop connects (again, after RabbitMQ or MariaDB was lost: unacked messages come back and
the checkpoint skips what was applied), and feeds deliveries through the parts.
"""

from __future__ import annotations

import logging
import threading

from applier.acks import Acks
from applier.batches import BatchRunner
from applier.checkpoint_keeper import CheckpointKeeper
from applier.collaborators import Collaborators
from applier.consumer import Delivery
from applier.intake import Intake
from applier.metrics import ApplierMetrics
from applier.ordering import Ordering
from applier.progress import Progress
from shared.config import ApplierConfig
from shared.errors import TransientError
from shared.observe import Endpoint
from shared.retry import retrying

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.5
_SAMPLE_SECONDS = 5.0


class ApplierService:
    def __init__(self, cfg: ApplierConfig, parts: Collaborators) -> None:
        self._cfg = cfg
        self._stop = threading.Event()
        self._broker = parts.broker
        self._target = parts.target
        self._clock = parts.clock
        self.metrics = ApplierMetrics()
        self.metrics.watch_refusals(self._target.refused)
        self._endpoint = Endpoint(self.metrics.registry, self.readiness, lambda: (True, "alive"))
        self._connected = False
        self._sampled_at = 0.0
        self._budget = cfg.target.max_batch_changes
        self.stats = Progress()
        self._acks = Acks(self._broker.ack)
        self.checkpoint = CheckpointKeeper(
            self._target, self._stop, self._broker.sleep, self._clock
        )
        self._ordering = Ordering(
            self._broker,
            self.checkpoint,
            self._acks,
            clock=self._clock,
            stats=self.stats,
            metrics=self.metrics,
        )
        self._runner = BatchRunner(
            self._target,
            self._broker,
            self.checkpoint,
            self._ordering.sequencer,
            self._acks,
            budget=self._budget,
            stop=self._stop,
            stats=self.stats,
            metrics=self.metrics,
        )
        self._intake = Intake(
            self._broker,
            self._ordering,
            self._runner,
            self._acks,
            stats=self.stats,
            metrics=self.metrics,
        )

    def request_stop(self) -> None:
        self._stop.set()

    def readiness(self) -> tuple[bool, str]:
        """For /readyz: whether it is applying, and if not, why."""
        if not self._connected:
            return False, "not connected (RabbitMQ or MariaDB)"
        if self._runner.trouble is not None:
            return False, self._runner.trouble
        blocked = self._ordering.blocked()
        if blocked is not None:
            return False, blocked
        return True, "applying"

    def run(self) -> None:
        """Returns after a requested stop; raises a PermanentError that needs a person."""
        self._endpoint.start(self._cfg.metrics_port, self._cfg.metrics_host)
        try:
            while not self._stop.is_set():
                try:
                    for attempt in retrying("applier_connect", log, stop_event=self._stop):
                        with attempt:
                            self._connect()
                    self._connected = True
                    self._consume()
                except TransientError as e:
                    self._connected = False
                    self._runner.abandon()
                    if self._stop.is_set():
                        return
                    self.metrics.reconnects.inc()
                    log.warning("session_lost error=%s (reconnecting)", e)
                    self._broker.close()
        finally:
            self._connected = False
            self._runner.close()
            self._broker.close()
            self._target.close()
            self._endpoint.stop()
            log.info("stopped checkpoint=%s", self.checkpoint.committed)

    def _connect(self) -> None:
        self._broker.close()
        self.checkpoint.load()
        # Deliveries of a lost connection come back; nothing held survives a reconnect.
        self._ordering.restart()
        self._acks.clear()
        self._broker.connect()
        log.info("resuming checkpoint=%s", self.checkpoint.committed)

    def _consume(self) -> None:
        limit = self._cfg.broker.prefetch
        while not self._stop.is_set():
            # With a batch in flight, take only what has already arrived: nothing to read
            # means the batch is finished (and acked) now rather than after a wait.
            busy = self._runner.busy
            deliveries = self._broker.poll(0 if busy else _POLL_SECONDS, limit)
            if busy and not deliveries:
                self._runner.settle()
            accepted, released = self._take(deliveries, 0)
            if busy and accepted and not released and not self._ordering.rewind:
                # Less than a batch came while one is in flight. Made into a batch of its own
                # now, it would wait for that one, and what comes meanwhile would wait for
                # both: instead it waits unapplied, and goes with what came meanwhile in one
                # batch as soon as the one in flight is done.
                self._runner.settle()
                self._take(self._broker.poll(0, limit), accepted)
            self._release()
            if self._ordering.rewind:
                self._ordering.rewind = False
                if self._runner.settle():
                    self._connect()  # what is held is requeued and comes back in queue order
                continue
            self.stats.maybe_report()
            self._sample()
        # A requested stop: what is in flight is committed and acked before leaving.
        self._runner.settle()

    def _take(self, deliveries: list[Delivery], accepted: int) -> tuple[int, bool]:
        """Decode and hold ``deliveries``; ``accepted``: changes held but not yet released.
        Returns the changes held unreleased after them, and whether a batch was released."""
        released = False
        for d in deliveries:
            accepted += self._intake.accept(d)
            # Decoded changes take far more memory than message bodies: decode and apply in
            # slices of about one batch, not the whole prefetch window at once.
            if accepted >= self._budget:
                self._release()
                accepted, released = 0, True
            if self._ordering.rewind:
                break
        return accepted, released

    def _release(self) -> None:
        ready = self._ordering.release(self._runner.settle)
        self._runner.run(ready)
        self._ordering.watch(progressed=bool(ready))

    def _sample(self) -> None:
        now = self._clock()
        if now - self._sampled_at < _SAMPLE_SECONDS:
            return
        self._sampled_at = now
        self.metrics.queue_depth.set(self._broker.queue_depth())
        self.metrics.held.set(len(self._ordering))
