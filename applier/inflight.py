"""One batch at a time applied on a worker thread, while the main thread reads the next.

While MariaDB works on this batch (the connector lets go of the GIL meanwhile), the main
thread decodes the next messages and builds their statements (docs/performance.md). Depth
one keeps every rule of the synchronous loop: a batch is submitted only after the one before
it is finished (its outcome known, its messages acked), each batch is checked against the
checkpoint the one before left, and nothing but building statements (which needs no
connection) happens beside the batch in flight.

Every batch goes the same way, whether pipelined or applied again after a fault: its plan is
made on the caller's thread (``Target.prepare``), then executed here. A plan that could not be
made is a batch that failed at once, with its fault, and is settled like any other.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Generic, TypeVar

from applier.apply import BatchResult, Prepared
from applier.collaborators import Target
from shared.envelope import Envelope
from shared.position import Position

log = logging.getLogger(__name__)

T = TypeVar("T")

# While waiting for a batch, the main thread services its RabbitMQ connection this often, so
# heartbeats go out even when one batch takes minutes.
_SERVICE_SECONDS = 0.5


@dataclass
class Done(Generic[T]):
    """A finished batch: its items, and the result or the exception it raised."""

    items: list[tuple[Envelope, T]]
    expect: Position | None
    result: BatchResult | None
    error: BaseException | None


class InFlight(Generic[T]):
    def __init__(self, target: Target) -> None:
        self._target = target
        self._pool: ThreadPoolExecutor | None = None
        self._items: list[tuple[Envelope, T]] = []
        self._expect: Position | None = None
        self._future: Future[BatchResult] | None = None

    @property
    def busy(self) -> bool:
        return self._future is not None

    @property
    def done(self) -> bool:
        """A batch is in flight and has finished (``finish`` returns without waiting)."""
        return self._future is not None and self._future.done()

    @property
    def future(self) -> Future[BatchResult] | None:
        return self._future

    def submit(
        self,
        items: list[tuple[Envelope, T]],
        prepared: Prepared | BaseException,
        expect: Position | None,
        *,
        replay: bool = False,
    ) -> None:
        """Execute ``items``' plan on the worker, against the checkpoint ``expect``; a plan
        that could not be made (its exception) makes a batch that failed already."""
        if self._future is not None:
            raise RuntimeError("a batch is already in flight; finish it first")
        self._items, self._expect = items, expect
        if isinstance(prepared, BaseException):
            failed: Future[BatchResult] = Future()
            failed.set_exception(prepared)
            self._future = failed
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="apply")
        self._future = self._pool.submit(self._target.execute, prepared, expect, replay=replay)

    def finish(self, service: Callable[[float], None]) -> Done[T] | None:
        """Wait for the batch in flight (None if there is none); ``service(seconds)`` keeps
        the caller's connection alive meanwhile. Exceptions of the batch are returned, not
        raised; one raised by ``service`` leaves the batch in flight for ``abandon``."""
        future = self._future
        if future is None:
            return None
        while not wait([future], timeout=_SERVICE_SECONDS).done:
            service(0)
        self._future = None
        items, self._items = self._items, []
        error = future.exception()
        return Done(items, self._expect, None if error else future.result(), error)

    def abandon(self) -> None:
        """Wait for the batch in flight and forget it: the session is lost, its messages come
        back, and whatever it committed is in the checkpoint read on reconnecting."""
        future, self._future, self._items = self._future, None, []
        if future is not None:
            wait([future])
            if future.exception() is not None:
                log.debug("abandoned batch failed error=%s", future.exception())

    def close(self) -> None:
        self.abandon()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
