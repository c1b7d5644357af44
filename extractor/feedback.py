"""When the flush position goes to PostgreSQL: the only place the slot moves.

The position is the confirm tracker's flush LSN (confirms.py): everything before it is in
RabbitMQ. It is sent when confirms move it (at most every 0.2 s, so a restart resends as little
as possible without a status message per confirm), at every tick of the feedback interval as
a keepalive for the walsender, and once more at a graceful stop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from shared.lsn import format_lsn

log = logging.getLogger(__name__)

# Least time between two feedback messages sent because confirms arrived.
_FEEDBACK_MIN_GAP = 0.2


class Feedback:
    def __init__(
        self,
        send: Callable[[int], None],
        flush_lsn: Callable[[], int],
        streaming: Callable[[], bool],
        resume_lsn: int,
        clock: Callable[[], float],
    ) -> None:
        """``send``: standby status to PostgreSQL; ``flush_lsn``: what is safe to confirm;
        ``streaming``: START_REPLICATION is done (before it there is nothing to confirm)."""
        self._send = send
        self._flush_lsn = flush_lsn
        self._streaming = streaming
        self._clock = clock
        self._sent_lsn = resume_lsn
        self._last_feedback = 0.0

    def send(self) -> None:
        """Standby status now: the flush position, and a keepalive."""
        if not self._streaming():
            return
        lsn = self._flush_lsn()
        self._send(lsn)
        if lsn != self._sent_lsn:
            log.debug("feedback flush_lsn=%s", format_lsn(lsn))
            self._sent_lsn = lsn
        self._last_feedback = self._clock()

    def confirms_arrived(self) -> None:
        """Confirm promptly (but not per message) once confirms moved the flush position."""
        if (
            self._flush_lsn() != self._sent_lsn
            and self._clock() - self._last_feedback > _FEEDBACK_MIN_GAP
        ):
            self.send()
