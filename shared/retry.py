"""Retrying transient faults: exponential backoff with jitter, one log line per retry."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential_jitter

from shared.errors import SlotBusy, TransientError


def retrying(
    what: str,
    logger: logging.Logger,
    *,
    stop_event: threading.Event | None = None,
    sleep: Callable[[float], None] | None = None,
    max_wait: float = 10.0,
    first_wait: float = 0.2,
) -> Retrying:
    """Retry TransientError forever (or until ``stop_event`` is set); re-raise anything else.

    ``sleep`` lets a caller keep other work alive while it waits (the applier services its
    RabbitMQ connection while MariaDB is down). Without one, the wait ends early on stop.
    """
    event = stop_event or threading.Event()

    def log_retry(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0.0
        # A standby waiting for its turn is normal operation, not a warning.
        level = logging.INFO if isinstance(exc, SlotBusy) else logging.WARNING
        logger.log(
            level,
            "retrying what=%s attempt=%d wait=%.1fs error=%s",
            what,
            state.attempt_number,
            wait,
            exc,
        )

    def stopped(_: RetryCallState) -> bool:
        return event.is_set()

    def interruptible_sleep(seconds: float) -> None:
        event.wait(seconds)

    return Retrying(
        retry=retry_if_exception_type(TransientError),
        # 0.2 s, 0.4 s, 0.8 s ... up to max_wait, each plus up to half a second of jitter so
        # that many clients of a restarted server do not come back in lockstep.
        wait=wait_exponential_jitter(multiplier=first_wait, max=max_wait, jitter=0.5),
        stop=stopped,
        sleep=sleep or interruptible_sleep,
        before_sleep=log_retry,
        reraise=True,
    )
