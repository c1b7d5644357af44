"""Messages held until their turn, released in source order, and gaps watched.

The order itself is applier/sequence.py's; the position it releases from is the checkpoint
keeper's (applier/checkpoint_keeper.py). What this part adds around them:

- whether everything older than a delivery was delivered (RabbitMQ delivers requeued messages
  before new ones, so that holds once a never-delivered message arrived), which lets a
  session's first message, or one passing an unfinished copy, go;
- duplicates (what the checkpoint covers) acked unapplied;
- a wait that may be another applier's doing: while messages wait, the checkpoint is read
  again (a standby that was active may have moved it);
- a gap: a predecessor that does not come. The prefetch window is widened first, in case it
  sits further back in the queue (``rewind``: the service reconnects, since RabbitMQ applies
  a prefetch only to a consumer as it starts); then the gap is reported, and nothing is
  applied past it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from applier.acks import Acks
from applier.checkpoint_keeper import CheckpointKeeper
from applier.collaborators import Broker
from applier.consumer import Delivery
from applier.metrics import ApplierMetrics
from applier.progress import Progress
from applier.sequence import Sequencer
from shared.envelope import Envelope

log = logging.getLogger(__name__)

_GAP_REPORT_SECONDS = 30.0
# How long messages may wait for a predecessor before the wait is reported as a gap.
GAP_GRACE_SECONDS = 10.0

Item = tuple[Envelope, Delivery]


class Ordering:
    def __init__(
        self,
        broker: Broker,
        keeper: CheckpointKeeper,
        acks: Acks,
        *,
        clock: Callable[[], float],
        stats: Progress,
        metrics: ApplierMetrics,
    ) -> None:
        self._broker = broker
        self._keeper = keeper
        self._acks = acks
        self._clock = clock
        self._stats = stats
        self._metrics = metrics
        self.sequencer: Sequencer[Delivery] = Sequencer(self._settled)
        # Set once a delivery arrives that RabbitMQ had not delivered before: requeued messages
        # come before new ones, so by then every older message has been delivered to us.
        self._seen_new = False
        self._blocked_since: float | None = None
        self._gap_reported_at = 0.0
        self.rewind = False  # reconnect to let a wider prefetch take effect

    def __len__(self) -> int:
        return len(self.sequencer)

    def restart(self) -> None:
        """A new connection: deliveries of the lost one come back; nothing held survives."""
        self.sequencer.clear()
        self._seen_new = False

    def delivered(self, d: Delivery) -> None:
        if not d.redelivered:
            self._seen_new = True

    def _settled(self, d: Delivery) -> bool:
        return self._seen_new or not d.redelivered

    def hold(self, env: Envelope, d: Delivery) -> None:
        self.sequencer.add(env, d)

    def release(self, settle: Callable[[], bool]) -> list[Item]:
        """The messages whose turn it is, in order; duplicates acked. ``settle`` finishes the
        batch in flight (False if that found the checkpoint moved)."""
        ready, duplicates = self._take()
        # Messages wait: maybe another applier (this one was its standby) moved the
        # checkpoint meanwhile. Reading it needs the target, so the batch ends first.
        if not ready and len(self.sequencer) and settle() and self._keeper.refresh():
            ready, more = self._take()
            duplicates += more
        if duplicates:
            self._acks.settled(duplicates)
            self._stats.skipped += len(duplicates)
            self._metrics.duplicates.inc(len(duplicates))
            log.info(
                "duplicates_skipped messages=%d checkpoint=%s",
                len(duplicates),
                self._keeper.committed,
            )
        return ready

    def _take(self) -> tuple[list[Item], list[Delivery]]:
        ready, duplicates = self.sequencer.take(self._keeper.released)
        self._keeper.release(ready)
        return ready, duplicates

    def blocked(self) -> str | None:
        """What messages have waited for longer than the grace period, if they have."""
        since = self._blocked_since
        if since is not None and self._clock() - since > GAP_GRACE_SECONDS:
            return f"waiting for {self.sequencer.waiting_for()} (ordering gap)"
        return None

    def watch(self, progressed: bool) -> None:
        """After each release: is anything waiting for a message that does not come?"""
        now = self._clock()
        if progressed or not len(self.sequencer):
            self._blocked_since = None
            if not len(self.sequencer):
                self._broker.narrow()
            return
        if self._broker.unacked >= self._broker.prefetch and self._broker.widen():
            # Every message RabbitMQ will give us is held: the one they wait for is further
            # back in the queue. Without a wider window we would wait for ever. Reconnecting
            # requeues what we hold; it comes back in queue order, with the wider window.
            self.rewind = True
            return
        if self._blocked_since is None:
            self._blocked_since = now
            return
        waited = now - self._blocked_since
        if waited < GAP_GRACE_SECONDS or now - self._gap_reported_at < _GAP_REPORT_SECONDS:
            return
        self._gap_reported_at = now
        log.error(
            "ordering_gap checkpoint=%s waiting_for=%s held=%d waited=%.0fs (nothing is "
            "applied past a missing message; see README, 'Ordering gaps')",
            self._keeper.committed,
            self.sequencer.waiting_for(),
            len(self.sequencer),
            waited,
        )
