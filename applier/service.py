"""The applier's main loop: take deliveries, put them in order, apply, ack after the commit.

The process consumes one partition (``target.partitions`` = 1: the queue ``<queue>``) or
several (N > 1: those of ``target.partition_set``, each on ``<queue>.p<i>``); each has its own
pipeline (applier/partition.py: consumer, sequencer, checkpoint keeper, batches), made here
from the collaborators passed in (applier/collaborators.py), and this one loop turns them all,
so that none waits on another: a partition waiting at a barrier for the others, or with a
batch in flight, leaves the loop to the rest.

This loop connects (again, after RabbitMQ or MariaDB was lost: unacked messages come back and
the checkpoints skip what was applied), and feeds deliveries through the parts. Every wait
(a retry's backoff, a batch in flight) services every partition's RabbitMQ connection.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import FIRST_COMPLETED, wait

from applier.collaborators import Collaborators
from applier.metrics import ApplierMetrics
from applier.ordering import GAP_GRACE_SECONDS
from applier.partition import Partition
from applier.progress import Progress
from shared.config import ApplierConfig
from shared.errors import TransientError
from shared.observe import Endpoint
from shared.retry import retrying

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.5
_SAMPLE_SECONDS = 5.0
# While a partition waits at a barrier, the loop turns at least this often.
_BARRIER_TURN_SECONDS = 0.02
# How long the loop waits for a batch in flight before it looks at RabbitMQ again.
_AWAIT_BATCH_SECONDS = 0.05


class ApplierService:
    def __init__(self, cfg: ApplierConfig, parts: Collaborators) -> None:
        self._cfg = cfg
        self._stop = threading.Event()
        self._clock = parts.clock
        self.metrics = ApplierMetrics()
        self._endpoint = Endpoint(self.metrics.registry, self.readiness, lambda: (True, "alive"))
        self._connected = False
        self._sampled_at = 0.0
        self.stats = Progress()
        self.partitions = [
            Partition(
                cfg,
                lane,
                stop=self._stop,
                sleep=self._sleep,
                clock=self._clock,
                stats=self.stats,
                metrics=self.metrics,
                patient=len(parts.lanes) == 1,
            )
            for lane in parts.lanes
        ]
        for p in self.partitions:
            self.metrics.watch_refusals(p.target.refused)

    def request_stop(self) -> None:
        self._stop.set()

    def _sleep(self, seconds: float) -> None:
        """Wait while keeping every partition's RabbitMQ connection alive (heartbeats)."""
        share = seconds / len(self.partitions)
        for p in self.partitions:
            p.broker.sleep(share)

    def readiness(self) -> tuple[bool, str]:
        """For /readyz: whether it is applying, and if not, why."""
        if not self._connected:
            return False, "not connected (RabbitMQ or MariaDB)"
        many = len(self.partitions) > 1
        for p in self.partitions:
            trouble = p.trouble()
            since = p.runner.waiting_since
            if trouble is None and since is not None and self._clock() - since > GAP_GRACE_SECONDS:
                trouble = p.runner.waiting
            if trouble is not None:
                return False, f"partition {p.number}: {trouble}" if many else trouble
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
                    for p in self.partitions:
                        p.runner.abandon()
                    if self._stop.is_set():
                        return
                    self.metrics.reconnects.inc()
                    log.warning("session_lost error=%s (reconnecting)", e)
                    for p in self.partitions:
                        p.broker.close()
        finally:
            self._connected = False
            for p in self.partitions:
                p.runner.close()
                p.broker.close()
                p.target.close()
            self._endpoint.stop()
            log.info("stopped checkpoint=%s", self._checkpoints())

    def _checkpoints(self) -> str:
        if len(self.partitions) == 1:
            return str(self.partitions[0].checkpoint.committed)
        return ",".join(f"p{p.number}:{p.checkpoint.committed}" for p in self.partitions)

    def _connect(self) -> None:
        for p in self.partitions:
            p.connect()
        log.info("resuming checkpoint=%s", self._checkpoints())

    def _consume(self) -> None:
        n = len(self.partitions)
        arrived = True
        while not self._stop.is_set():
            # Waits are shared out: a partition must not sleep while another has work.
            if arrived or any(p.runner.busy for p in self.partitions):
                timeout = 0.0
            elif any(p.runner.waiting for p in self.partitions):
                timeout = _BARRIER_TURN_SECONDS / n
            else:
                timeout = _POLL_SECONDS / n
            arrived = False
            for p in self.partitions:
                arrived = p.turn(timeout) or arrived
            if not arrived:
                self._await_a_batch()
            self.stats.maybe_report()
            self._sample()
        # A requested stop: what is in flight is committed and acked before leaving.
        for p in self.partitions:
            p.runner.settle()

    def _await_a_batch(self) -> None:
        """Nothing arrived: rather than turn again at once, wait (a little) for a batch in
        flight to finish, the next thing likely to let a partition go on."""
        flying = [f for f in (p.runner.in_flight for p in self.partitions) if f is not None]
        if flying:
            wait(flying, timeout=_AWAIT_BATCH_SECONDS, return_when=FIRST_COMPLETED)

    def _sample(self) -> None:
        now = self._clock()
        if now - self._sampled_at < _SAMPLE_SECONDS:
            return
        self._sampled_at = now
        self.metrics.queue_depth.set(sum(p.broker.queue_depth() for p in self.partitions))
        self.metrics.held.set(sum(len(p.ordering) for p in self.partitions))
