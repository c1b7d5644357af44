"""The applier's checkpoint, owned here alone.

The checkpoint is the position of the last change applied, committed in MariaDB with the rows
(applier/checkpoint.py writes it inside each batch's transaction). This process keeps two
positions of it, and only this class changes them:

- ``committed``: what MariaDB holds, as this applier last read or wrote it; every batch is
  applied against it (``expect``), and MariaDB refuses the batch if it moved meanwhile;
- ``released``: where the next message released in order must continue from: ``committed``
  plus the batches released but not yet committed (the sequencer, applier/sequence.py,
  releases from it and holds no position of its own).

Both are read from MariaDB on connecting, and set again from it when it says another applier
moved the checkpoint (a standby that was active): the messages released since then are ordered
again from there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from applier.collaborators import Target
from shared.envelope import Envelope
from shared.errors import BrokerUnavailable, CheckpointMoved
from shared.position import Position
from shared.retry import retrying

log = logging.getLogger(__name__)

# How often a blocked applier reads its checkpoint again (a standby that took over).
_REFRESH_SECONDS = 1.0


class CheckpointKeeper:
    def __init__(
        self,
        target: Target,
        stop: threading.Event,
        sleep: Callable[[float], None],
        clock: Callable[[], float],
    ) -> None:
        self._target = target
        self._stop = stop
        self._sleep = sleep
        self._clock = clock
        self.committed: Position | None = None
        self.released: Position | None = None
        self._refreshed_at = 0.0

    def load(self) -> None:
        """On connecting: start from what MariaDB holds (what was released is gone)."""
        self.committed = self.released = self._target.checkpoint()

    def release(self, ready: Sequence[tuple[Envelope, object]]) -> None:
        """Messages were released in order: the next continues from the last one's end."""
        if ready:
            self.released = ready[-1][0].end

    def commit(self, position: Position | None) -> None:
        """A batch committed: MariaDB holds its end now."""
        self.committed = position

    def moved(self, actual: Position | None) -> None:
        """MariaDB holds another checkpoint than ours: both positions start again from it."""
        log.warning("checkpoint_moved from=%s to=%s", self.committed, actual)
        self.committed = self.released = actual

    def refresh(self) -> bool:
        """Reads the checkpoint again, at most once a second; True if it had moved."""
        now = self._clock()
        if now - self._refreshed_at < _REFRESH_SECONDS:
            return False
        self._refreshed_at = now
        for attempt in retrying("checkpoint", log, stop_event=self._stop, sleep=self._sleep):
            with attempt:
                actual = self._target.checkpoint()
        if actual == self.committed:
            return False
        log.info("checkpoint_refreshed from=%s to=%s", self.committed, actual)
        self.committed = self.released = actual
        return True

    def step_over(self, env: Envelope, at: Position | None = None) -> None:
        """Commit the checkpoint past a message parked in the dead-letter queue or a
        barrier's marker, or (``at``) to where this partition stood before a barrier."""
        try:
            for attempt in retrying("skip", log, stop_event=self._stop, sleep=self._sleep):
                with attempt:
                    self._target.skip(env, self.committed, at)
        except CheckpointMoved as e:
            # Another applier wrote meanwhile: we are not the active one any more.
            raise BrokerUnavailable(f"checkpoint moved under us ({e.actual}); reconnecting") from e
        self.committed = env.end if at is None else at
