"""What the applier is made of on the outside, passed to it whole.

MariaDB (as the batch applier sees it), RabbitMQ (as the consumer sees it) and the clock: each
is a small protocol here, so that the applier's real loop runs just as well against in-memory
fakes (tests/support/applier_fakes.py). ``connect`` makes the real ones (nothing is connected
before the service runs).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from applier.apply import Applier, BatchResult, Prepared
from applier.consumer import Consumer, Delivery
from shared.config import ApplierConfig
from shared.envelope import Envelope
from shared.errors import CdcError
from shared.position import Position
from shared.topology import topology_for


class Target(Protocol):
    """MariaDB: batches applied with the checkpoint, in one transaction each (apply.py)."""

    def checkpoint(self) -> Position | None: ...

    def prepare(self, batch: list[Envelope]) -> Prepared:
        """The batch's statements, made without the target; its faults already classified."""
        ...

    def execute(
        self, prepared: Prepared, expect: Position | None, *, replay: bool = False
    ) -> BatchResult: ...

    def skip(self, env: Envelope, expect: Position | None, at: Position | None = None) -> None:
        """This partition's checkpoint past ``env`` (or to ``at``), checked against ``expect``."""
        ...

    def checkpoints(self) -> list[Position | None]:
        """Every partition's checkpoint row (target.partitions of them)."""
        ...

    def forget(self) -> None:
        """Look the target's tables up again (another partition changed them)."""
        ...

    def refused(self) -> list[tuple[str, str, str]]: ...

    def close(self) -> None: ...


class Broker(Protocol):
    """RabbitMQ: deliveries, acks, the dead-letter queue, the prefetch window (consumer.py)."""

    prefetch: int  # what the current consumer started with

    @property
    def unacked(self) -> int: ...

    def connect(self) -> None: ...

    def poll(self, timeout: float, limit: int) -> list[Delivery]: ...

    def ack(self, tags: list[int]) -> None: ...

    def park(self, delivery: Delivery, error: CdcError, body: bytes | None = None) -> None: ...

    def sleep(self, seconds: float) -> None:
        """Wait while keeping the connection alive (heartbeats)."""
        ...

    def widen(self) -> bool: ...

    def narrow(self) -> None: ...

    def queue_depth(self) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Lane:
    """One partition's outside: its checkpoint row in MariaDB, its queue in RabbitMQ."""

    partition: int
    target: Target
    broker: Broker


@dataclass(frozen=True)
class Collaborators:
    lanes: tuple[Lane, ...]  # one per partition this process consumes
    clock: Callable[[], float] = field(default=time.monotonic)

    @classmethod
    def one(
        cls, target: Target, broker: Broker, clock: Callable[[], float] = time.monotonic
    ) -> Collaborators:
        """A single partition's (target.partitions = 1)."""
        return cls((Lane(0, target, broker),), clock)


def connect(cfg: ApplierConfig) -> Collaborators:
    """The real collaborators (they connect when first used): a MariaDB applier and a
    RabbitMQ connection per partition this process consumes."""
    topology = topology_for(cfg.broker, cfg.source.slot, cfg.target.partitions)
    return Collaborators(
        tuple(Lane(p, Applier(cfg, p), Consumer(cfg.broker, topology, p)) for p in cfg.target.mine)
    )
