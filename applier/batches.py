"""Released messages → batches applied one at a time, and what each batch's outcome does.

Every batch goes one way (``_start``): its plan is made on this thread, then executed with
the checkpoint on the worker (applier/inflight.py), whether it is pipelined behind the batch
before, applied again after a fault, applied alone to find a culprit, or replayed from the
dead-letter queue. The outcome, settled here only:

- committed: its deliveries are acked (applier/acks.py) — the only place a message is acked
  after being applied;
- MariaDB unavailable, deadlock: applied again, with backoff, while the connection to
  RabbitMQ is kept alive;
- the checkpoint moved (another applier was active): the batch and everything released after
  it go back to the sequencer, to be ordered again from the checkpoint as it is;
- a message that can never be applied: a batch of several is applied again message by
  message, so that only the culprit is parked in the dead-letter queue; the checkpoint steps
  over it; then it is acked.

A barrier (``target.partitions`` N > 1: a copy of a change that spans partitions) is a batch
of its own, taken once the batches before it are committed; what happens there is
applier/barrier_steps.py's. While it must wait for the other partitions, it and the messages
released after it are held here (``waiting``) and the loop goes on; ``resume`` tries again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future

from applier.acks import Acks
from applier.apply import BatchResult, Prepared, describe
from applier.barrier import Step
from applier.barrier_steps import BarrierSteps
from applier.checkpoint_keeper import CheckpointKeeper
from applier.collaborators import Broker, Target
from applier.consumer import Delivery
from applier.inflight import Done, InFlight
from applier.metrics import ApplierMetrics
from applier.progress import Progress
from applier.sequence import Sequencer
from shared import wire
from shared.envelope import Envelope
from shared.errors import (
    CdcError,
    CheckpointMoved,
    DecodeError,
    RowRejected,
    SchemaMismatch,
    TransientError,
)
from shared.position import Position
from shared.retry import retrying

log = logging.getLogger(__name__)

# Faults of one message's content: it goes to the dead-letter queue and the rest go on.
POISON = (DecodeError, RowRejected, SchemaMismatch)

Item = tuple[Envelope, Delivery]


class BatchRunner:
    def __init__(
        self,
        target: Target,
        broker: Broker,
        keeper: CheckpointKeeper,
        sequencer: Sequencer[Delivery],
        acks: Acks,
        *,
        budget: int,
        stop: threading.Event,
        stats: Progress,
        metrics: ApplierMetrics,
        barriers: BarrierSteps,
        sleep: Callable[[float], None],
        patient: bool = True,
    ) -> None:
        self._target = target
        self._broker = broker
        self._keeper = keeper
        self._sequencer = sequencer
        self._acks = acks
        self._budget = budget  # most changes in one batch
        self._stop = stop
        self._stats = stats
        self._metrics = metrics
        self._barriers = barriers
        # Waits that keep every RabbitMQ connection of the process serviced, not only this
        # partition's.
        self._sleep = sleep
        self._inflight: InFlight[Delivery] = InFlight(target)
        self.trouble: str | None = None  # the fault being retried, for /readyz
        # Released, not yet submitted: behind the batch in flight, or a barrier that waits.
        self._queue: list[Item] = []
        # The head batch's plan, made ahead: its first message, its size, the plan.
        self._next: tuple[Envelope, int, Prepared | CdcError] | None = None
        self._patient = patient

    @property
    def busy(self) -> bool:
        return self._inflight.busy

    @property
    def waiting(self) -> str | None:
        """The barrier this partition waits at, if it does (for /readyz and the loop)."""
        if self._barriers.since is None or not self._queue:
            return None
        return f"waiting at a barrier ending {self._queue[0][0].end} for the other partitions"

    @property
    def waiting_since(self) -> float | None:
        return self._barriers.since

    @property
    def done(self) -> bool:
        """Whether the batch in flight, if any, has finished (to be settled without a wait)."""
        return self._inflight.done

    @property
    def in_flight(self) -> Future[BatchResult] | None:
        """The batch in flight, unfinished (for a loop that waits on several partitions)."""
        future = self._inflight.future
        return None if future is None or future.done() else future

    @property
    def patient(self) -> bool:
        return self._patient

    def run(self, ready: list[Item]) -> None:
        """Apply messages released in order, in batches, each after the one before settled."""
        self._queue += ready
        self.resume()

    def resume(self) -> None:
        """Submit what may go now: batches one after the other, each once the one before
        settled. With ``patient`` (one partition in the process) it waits for the batch in
        flight; else it leaves the rest queued until that batch is done, and the loop turns to
        the other partitions. A barrier that must wait leaves it queued the same way."""
        while self._queue:
            if self._inflight.busy and self._next is None:
                self._prepare_next()  # made while the batch before is still in flight
            if self._inflight.busy and not (self._patient or self._inflight.done):
                return
            # A batch planned ahead is applied exactly as planned, though more has been
            # queued since: its plan holds its messages' statements and no others.
            planned = self._next
            if planned is not None and planned[0] is not self._queue[0][0]:
                planned = None
            size = self._head() if planned is None else planned[1]
            batch = self._queue[:size]
            env = batch[0][0]
            # The batch before must be settled first: its checkpoint is this one's start (and
            # a barrier's step is decided from the checkpoint rows).
            if not self.settle():
                return
            if env.afters is not None:
                step = self._barriers.step(env, batch[0][1])
                if step is Step.WAIT:
                    return
                if step is not Step.APPLY:
                    del self._queue[:size]  # stepped past, or passed already: acked
                    continue
            del self._queue[:size]
            if env.undecodable is not None:
                self._dead_letter(batch[0], DecodeError(env.undecodable))
                continue
            self._next = None
            self._inflight.submit(
                batch,
                self._prepare(batch) if planned is None else planned[2],
                self._keeper.committed,
            )

    def _prepare_next(self) -> None:
        """The next batch's plan, made while the one before is in flight."""
        if not self._queue:
            return
        env = self._queue[0][0]
        if env.afters is None and env.undecodable is None:
            size = self._head()
            self._next = (env, size, self._prepare(self._queue[:size]))

    def _head(self) -> int:
        """How many queued messages the next batch takes: at most ``budget`` changes; an
        undecodable message, a schema change (MariaDB commits DDL by itself) and a barrier
        each on its own."""
        changes = 0
        for i, (env, _) in enumerate(self._queue):
            alone = env.undecodable is not None or env.schema_change is not None or env.barrier
            if alone:
                return i or 1
            if i and changes + len(env.changes) > self._budget:
                return i
            changes += len(env.changes)
        return len(self._queue)

    def _prepare(self, batch: list[Item]) -> Prepared | CdcError:
        """The batch's plan, or the fault that prevents it (settled like a failed batch)."""
        try:
            return self._target.prepare([env for env, _ in batch])
        except CdcError as e:
            return e

    def settle(self) -> bool:
        """Settle the batch in flight, if any: ack it, or deal with its failure here.

        False if the checkpoint moved under us: the sequencer then holds the batch and the
        messages queued after it again, to be ordered afresh.
        """
        done = self._inflight.finish(self._sleep)
        if done is None:
            return True
        if self._outcome(done, self._queue):
            return True
        self._queue, self._next = [], None
        return False

    def _outcome(self, done: Done[Delivery], rest: list[Item]) -> bool:
        batch, error = done.items, done.error
        if error is None:
            assert done.result is not None
            self._applied(batch, done.result)
            return True
        if isinstance(error, CheckpointMoved):
            self._keeper.moved(error.actual)
            self._sequencer.put_back(batch + rest)
            return False
        if isinstance(error, POISON):
            return self._poisoned(batch, error, rest)
        if isinstance(error, TransientError):
            self.trouble = str(error)
            log.warning("apply_failed error=%s (retrying)", error)
            return self._apply_now(batch, rest)
        raise error

    def _apply_now(self, batch: list[Item], rest: list[Item], schema_retried: bool = False) -> bool:
        """Apply ``batch`` and wait, retrying transient faults; the outcome as in ``settle``."""
        try:
            result = self._retrying(batch, self._keeper.committed)
        except CheckpointMoved as e:
            self._keeper.moved(e.actual)
            self._sequencer.put_back(batch + rest)
            return False
        except POISON as e:
            return self._poisoned(batch, e, rest, schema_retried)
        self._applied(batch, result)
        return True

    def _retrying(
        self, batch: list[Item], expect: Position | None, *, replay: bool = False
    ) -> BatchResult:
        for attempt in retrying("apply", log, stop_event=self._stop, sleep=self._sleep):
            # Outside the attempt: RabbitMQ lost while waiting is not the batch's fault to
            # retry; it ends the session (the batch in flight is abandoned, its messages
            # come back).
            self._inflight.submit(batch, self._prepare(batch), expect, replay=replay)
            done = self._inflight.finish(self._sleep)
            assert done is not None
            with attempt:
                if done.error is not None:
                    if isinstance(done.error, TransientError):
                        self.trouble = str(done.error)
                    raise done.error
                assert done.result is not None
                self.trouble = None
                return done.result
        raise AssertionError("unreachable: retrying re-raises")

    def _poisoned(
        self, batch: list[Item], error: CdcError, rest: list[Item], schema_retried: bool = False
    ) -> bool:
        if len(batch) == 1:
            if isinstance(error, SchemaMismatch) and not schema_retried:
                # The target may have changed behind our back: the schema cache is
                # forgotten, one more try before parking the message.
                return self._apply_now(batch, rest, schema_retried=True)
            self._dead_letter(batch[0], error)
            return True
        # Find the culprit: one message per transaction from here (all() stops at the first
        # that finds the checkpoint moved).
        return all(self._apply_now([item], batch[i + 1 :] + rest) for i, item in enumerate(batch))

    def _applied(self, batch: list[Item], result: BatchResult) -> None:
        """After the commit: the only place a message is acknowledged after being applied."""
        self._keeper.commit(result.checkpoint)
        self.trouble = None
        self._acks.settled(d for _, d in batch)
        self._stats.record(result, batch[-1][0])
        m = self._metrics
        m.messages.inc(len(batch))
        m.apply_seconds.observe(result.seconds)
        for (table, op), n in result.rows.items():
            m.rows.labels(str(table), op).inc(n)
        for table, n in result.bulk.items():
            m.bulk_rows.labels(str(table)).inc(n)
        for env, _ in batch:
            if env.last:
                m.applied(env.commit_time, env.copy, result.committed_at)

    def _dead_letter(self, item: Item, error: CdcError) -> None:
        """Park the message (confirmed), step the checkpoint over it, then ack it: in that
        order, a crash anywhere parks it twice at worst, and never leaves a hole that the
        messages after it would wait on for ever."""
        env, d = item
        log.error("apply_failed %s error=%s", describe(env), error)
        self._broker.park(d, error, wire.part_of(d.body, env) if env.changes else None)
        self._keeper.step_over(env)
        self._acks.settled([d])
        self._stats.dead_lettered += 1
        self._metrics.dead_lettered.inc()

    def replay(self, d: Delivery, envs: list[Envelope]) -> None:
        """A dead letter sent back by hand: applied without checking or moving the checkpoint
        (nothing else is in flight), parked again if it still fails, then acked."""
        log.warning("replaying message_id=%s %s", d.message_id, describe(envs[0]))
        try:
            self._retrying([(env, d) for env in envs], None, replay=True)
        except POISON as e:
            self._broker.park(d, e)
            self._stats.dead_lettered += 1
            self._metrics.dead_lettered.inc()
        self._broker.ack([d.tag])

    def abandon(self) -> None:
        """The session is lost: what was in flight may have committed or not; the checkpoint
        read on reconnecting says which, and its messages come back either way."""
        self._inflight.abandon()
        self._queue, self._next = [], None
        self._barriers.reset()

    def close(self) -> None:
        self._inflight.close()
