"""One partition's pipeline in an applier process: the parts that take its queue's deliveries
to MariaDB, made from the partition's collaborators (applier/collaborators.py, ``Lane``).

- ``Intake`` (intake.py): each delivery decoded and held for its turn;
- ``Ordering`` (ordering.py): released in source order, duplicates acked, gaps watched;
- ``BatchRunner`` (batches.py): batches applied one at a time, one way, and their outcome
  settled (acked, retried, parked); barriers (barrier_steps.py);
- ``CheckpointKeeper`` (checkpoint_keeper.py): the partition's checkpoint row, owned there.

With ``target.partitions`` = 1 the process has one of these, on the queue ``<queue>``; with
N > 1 one per partition it consumes (``target.partition_set``), each on ``<queue>.p<i>``,
all turned by the one loop of applier/service.py.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from applier.acks import Acks
from applier.barrier_steps import BarrierSteps
from applier.batches import BatchRunner
from applier.checkpoint_keeper import CheckpointKeeper
from applier.collaborators import Lane
from applier.consumer import Delivery
from applier.intake import Intake
from applier.metrics import ApplierMetrics
from applier.ordering import Ordering
from applier.progress import Progress
from shared.config import ApplierConfig


class Partition:
    def __init__(
        self,
        cfg: ApplierConfig,
        lane: Lane,
        *,
        stop: threading.Event,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
        stats: Progress,
        metrics: ApplierMetrics,
        patient: bool = True,
    ) -> None:
        """``patient``: wait for a batch in flight when the next is ready (the only partition
        of its process); else leave the loop to the other partitions meanwhile."""
        self.number = lane.partition
        self.broker = lane.broker
        self.target = lane.target
        self.acks = Acks(self.broker.ack)
        self.checkpoint = CheckpointKeeper(self.target, stop, sleep, clock)
        self.ordering = Ordering(
            self.broker, self.checkpoint, self.acks, clock=clock, stats=stats, metrics=metrics
        )
        self.runner = BatchRunner(
            self.target,
            self.broker,
            self.checkpoint,
            self.ordering.sequencer,
            self.acks,
            budget=cfg.target.max_batch_changes,
            stop=stop,
            stats=stats,
            metrics=metrics,
            barriers=BarrierSteps(self.number, self.target, self.checkpoint, self.acks, clock),
            sleep=sleep,
            patient=patient,
        )
        self.intake = Intake(
            self.broker,
            self.ordering,
            self.runner,
            self.acks,
            stats=stats,
            metrics=metrics,
            partition=self.number,
            partitions=cfg.target.partitions,
        )
        self._limit = cfg.broker.prefetch
        self._budget = cfg.target.max_batch_changes

    def connect(self) -> None:
        self.broker.close()
        # Deliveries of a lost connection come back; nothing held survives a reconnect.
        self.ordering.restart()
        self.acks.clear()
        # RabbitMQ first: it refuses to start while queues of another layout hold messages,
        # which must be known before the checkpoint rows are read (and, after a change of
        # target.partitions, moved: applier/checkpoint.py, ``relayout``).
        self.broker.connect()
        self.checkpoint.load()

    def turn(self, timeout: float) -> bool:
        """One turn of the loop for this partition: take what arrived (waiting up to
        ``timeout`` when nothing is in flight), apply what may be; True if anything arrived."""
        runner = self.runner
        # With a batch in flight, take only what has already arrived: nothing to read
        # means the batch is finished (and acked) now rather than after a wait.
        busy = runner.busy
        deliveries = self.broker.poll(0 if busy else timeout, self._limit)
        if busy and not deliveries and (runner.patient or runner.done):
            runner.settle()
        accepted, released = self._take(deliveries, 0)
        if runner.patient and busy and accepted and not released and not self.ordering.rewind:
            # Less than a batch came while one is in flight. Made into a batch of its own
            # now, it would wait for that one, and what comes meanwhile would wait for
            # both: instead it waits unapplied, and goes with what came meanwhile in one
            # batch as soon as the one in flight is done. (With several partitions in the
            # process the loop does not wait here: the runner queues it behind that batch.)
            runner.settle()
            self._take(self.broker.poll(0, self._limit), accepted)
        self._release()
        runner.resume()
        if self.ordering.rewind:
            self.ordering.rewind = False
            if runner.settle():
                self.connect()  # what is held is requeued and comes back in queue order
        return bool(deliveries)

    def _take(self, deliveries: list[Delivery], accepted: int) -> tuple[int, bool]:
        """Decode and hold ``deliveries``; ``accepted``: changes held but not yet released.
        Returns the changes held unreleased after them, and whether a batch was released."""
        released = False
        for d in deliveries:
            accepted += self.intake.accept(d)
            # Decoded changes take far more memory than message bodies: decode and apply in
            # slices of about one batch, not the whole prefetch window at once.
            if accepted >= self._budget:
                self._release()
                accepted, released = 0, True
            if self.ordering.rewind:
                break
        return accepted, released

    def _release(self) -> None:
        ready = self.ordering.release(self.runner.settle)
        self.runner.run(ready)
        self.ordering.watch(progressed=bool(ready))

    def trouble(self) -> str | None:
        """Why this partition is not applying, if it is not (for /readyz)."""
        if self.runner.trouble is not None:
            return self.runner.trouble
        return self.ordering.blocked()
