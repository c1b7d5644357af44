"""The session's scheduler on a loop that may have dropped a descriptor already."""

from __future__ import annotations

from extractor.loop import Scheduler
from shared.errors import CdcError
from tests.support.stream_fakes import VirtualLoop


def test_unwatching_a_descriptor_the_loop_already_dropped_is_no_failure() -> None:
    # libpq closes the replication socket itself when the server goes away; pika's poller
    # may drop it before the reader unwatches it (seen as KeyError in a fault drill).
    loop = VirtualLoop()
    failures: list[CdcError] = []
    sched = Scheduler(loop, failures.append)
    sched.watch(7, lambda: None)
    loop.remove_handler(7)
    sched.unwatch(7)
    assert failures == []
    sched.watch(7, lambda: None)  # and the number may be watched again
    sched.unwatch(7)
