"""Each delivery decoded and handed on: held for its turn, replayed, or parked at once.

- a message of one or more envelopes (small transactions travel together): each envelope is
  held for its turn (applier/ordering.py), and the delivery is acked once all of them are
  settled (applier/acks.py);
- an undecodable message whose headers say where it stands: a stand-in waits for its turn
  like the others, then goes to the dead-letter queue and the checkpoint steps over it;
- an undecodable message that does not say where it stands (not from an extractor), or one
  replayed by hand: it has no place in the order; parked (or replayed) at once, then acked;
- a message of another partition layout (its ``partitions`` is not target.partitions, or it
  is on another partition's queue): the applier stops with one line, applying nothing of it
  (a key's partition depends on the count: both processes must agree).
"""

from __future__ import annotations

from applier.acks import Acks
from applier.batches import BatchRunner
from applier.collaborators import Broker
from applier.consumer import Delivery
from applier.metrics import ApplierMetrics
from applier.ordering import Ordering
from applier.progress import Progress
from shared import envelope, wire
from shared.envelope import Envelope
from shared.errors import DecodeError, SetupError


class Intake:
    def __init__(
        self,
        broker: Broker,
        ordering: Ordering,
        runner: BatchRunner,
        acks: Acks,
        *,
        stats: Progress,
        metrics: ApplierMetrics,
        partition: int = 0,
        partitions: int = 1,
    ) -> None:
        self._broker = broker
        self._ordering = ordering
        self._runner = runner
        self._acks = acks
        self._stats = stats
        self._metrics = metrics
        self._partition = partition
        self._partitions = partitions

    def accept(self, d: Delivery) -> int:
        """Decode and hold a delivery; returns how many changes it brought."""
        self._ordering.delivered(d)
        try:
            envs = wire.decode_all(d.body)
        except DecodeError as e:
            stand_in = envelope.stub(getattr(d.properties, "headers", None), str(e))
            if stand_in is None or d.replay:
                # Not from an extractor (or replayed by hand): it has no place in the order.
                self._broker.park(d, e)
                self._broker.ack([d.tag])
                self._stats.dead_lettered += 1
                self._metrics.dead_lettered.inc()
            else:
                # Its headers say where it stands: it waits for its turn like the others,
                # then goes to the dead-letter queue and the checkpoint steps over it.
                self._check_layout(stand_in, d)
                self._ordering.hold(stand_in, d)
            return 0
        for env in envs:
            self._check_layout(env, d)
        if d.replay:
            self._runner.settle()  # nothing else runs against the target while a batch is
            self._runner.replay(d, envs)
            return 0
        self._acks.expect(d, len(envs))
        if envs and not envs[0].copy:
            self._metrics.delivered(envs[0].commit_time)
        for env in envs:
            self._ordering.hold(env, d)
        return sum(len(env.changes) for env in envs)

    def _check_layout(self, env: Envelope, d: Delivery) -> None:
        if env.partitions != self._partitions or env.partition != self._partition:
            raise SetupError(
                f"message {d.message_id} on partition {self._partition}'s queue says it is "
                f"partition {env.partition} of {env.partitions}, but target.partitions is "
                f"{self._partitions} here: run both processes with the same "
                "target.partitions (changing it needs the pipeline drained first: README, "
                "Parallel apply)"
            )
