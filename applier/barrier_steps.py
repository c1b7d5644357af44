"""What one partition's pipeline does at a barrier (``target.partitions`` N > 1): carries out
applier/barrier.py's decision, without ever blocking the process's I/O loop.

``step`` is called with the barrier's copy on this partition, once every batch before it is
committed, and again on every turn of the loop while the answer is to wait:

- ``ARRIVE``: this partition's checkpoint row is written up to its ``after`` of the barrier
  (so the others see that nothing of this partition before it is left), then decided again;
- ``WAIT``: the checkpoint rows are read again on a later turn, at most every ``POLL_SECONDS``
  (the RabbitMQ connections are serviced meanwhile by the loop, which goes on with the other
  partitions);
- ``APPLY`` (partition 0): the caller applies the barrier like any batch;
- ``STEP_PAST`` (the others): the checkpoint row goes to the barrier's end, the marker is
  acked, and what this partition knew of the target's tables is forgotten (partition 0 may
  have changed them: a schema change, a copy);
- ``DONE``: this partition is past the barrier already; it is acked.

Every write is one checkpoint row, checked against what this process last committed there
(a standby that became active moved it: the session starts again, applier/service.py).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from applier.acks import Acks
from applier.barrier import Barrier, Step, next_step
from applier.checkpoint_keeper import CheckpointKeeper
from applier.collaborators import Target
from applier.consumer import Delivery
from shared.envelope import Envelope
from shared.errors import TransientError

log = logging.getLogger(__name__)

# How often a partition waiting at a barrier reads the checkpoint rows again.
POLL_SECONDS = 0.02


class BarrierSteps:
    def __init__(
        self,
        partition: int,
        target: Target,
        keeper: CheckpointKeeper,
        acks: Acks,
        clock: Callable[[], float],
    ) -> None:
        self._partition = partition
        self._target = target
        self._keeper = keeper
        self._acks = acks
        self._clock = clock
        self._polled_at: float | None = None  # the last read that said WAIT
        self.since: float | None = None  # when this partition began waiting at a barrier

    def step(self, env: Envelope, d: Delivery) -> Step:
        """Carry out what can be done now at ``env`` (a barrier's copy); the step it ended
        on: APPLY (the caller applies it), WAIT (call again later), or DONE / STEP_PAST
        (settled: acked)."""
        assert env.afters is not None
        now = self._clock()
        if self._polled_at is not None and now - self._polled_at < POLL_SECONDS:
            return Step.WAIT
        barrier = Barrier(env.end, env.afters)
        try:
            rows = self._target.checkpoints()
        except TransientError as e:
            log.warning("barrier_poll_failed error=%s (polling again)", e)
            return self._wait(now)
        step = next_step(self._partition, barrier, rows)
        if step is Step.ARRIVE:
            at = env.afters[self._partition]
            assert at is not None  # ARRIVE only when behind it
            self._keeper.step_over(env, at)
            log.info("barrier_arrived partition=%d at=%s barrier=%s", self._partition, at, env.end)
            rows[self._partition] = at
            step = next_step(self._partition, barrier, rows)
        if step is Step.WAIT:
            return self._wait(now)
        self._polled_at = self.since = None
        if step is Step.STEP_PAST:
            self._keeper.step_over(env)
            self._target.forget()
            self._acks.settled([d])
            log.debug("barrier_passed partition=%d barrier=%s", self._partition, env.end)
        elif step is Step.DONE:
            self._acks.settled([d])
        return step

    def _wait(self, now: float) -> Step:
        self._polled_at = now
        if self.since is None:
            self.since = now
        return Step.WAIT

    def reset(self) -> None:
        """The session is lost: the barrier comes back and is decided afresh."""
        self._polled_at = self.since = None
