"""When a delivery may be acked: once every envelope it carried is settled.

A message may carry several small transactions (extractor/outbox.py batches them). Each
envelope is ordered, applied, skipped as a duplicate or parked on its own; the delivery is
acked once the last of its envelopes is settled, never before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from applier.consumer import Delivery


class Acks:
    def __init__(self, ack: Callable[[list[int]], None]) -> None:
        self._ack = ack
        self._open: dict[int, int] = {}  # delivery tag -> envelopes not settled yet

    def expect(self, delivery: Delivery, envelopes: int) -> None:
        self._open[delivery.tag] = envelopes

    def settled(self, deliveries: Iterable[Delivery]) -> None:
        """One envelope of each of these deliveries is settled (a delivery may come more than
        once: once per envelope); ack those that are done."""
        done: list[int] = []
        for d in deliveries:
            left = self._open.get(d.tag, 1) - 1
            if left > 0:
                self._open[d.tag] = left
            else:
                self._open.pop(d.tag, None)
                done.append(d.tag)
        if done:
            self._ack(done)

    def clear(self) -> None:
        """The connection is gone: its deliveries come back, counted anew."""
        self._open.clear()
