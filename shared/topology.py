"""Exchange and queue names and arguments: both processes declare the same topology.

A change message goes to a durable direct exchange, routed by the slot name to one durable
queue with a single active consumer (so the applier sees the source's commit order). What the
applier cannot apply goes to a dead-letter exchange and queue beside them. On a cluster the
queues are quorum queues (broker.queue_type): replicated, a confirm meaning a majority of the
nodes has the message.

With ``target.partitions`` N > 1 the one change queue becomes N: ``<queue>.p0`` ..
``<queue>.p<N-1>`` (``partition_queue``), each bound to the exchange by its own name, each
with its single active consumer. The extractor routes every message to its partition's queue
(ARCHITECTURE.md, "Parallel apply"); the queue ``<queue>`` itself is not declared then.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.config import BrokerConfig


def partition_queue(queue: str, partition: int) -> str:
    """The queue of one partition: ``<queue>.p<i>``, bound to the exchange with that name as
    its routing key (direct, so a message's partition is the extractor's decision alone)."""
    return f"{queue}.p{partition}"


@dataclass(frozen=True)
class Topology:
    exchange: str
    routing_key: str
    queue: str
    dead_letter_exchange: str
    dead_letter_queue: str
    queue_type: str
    delivery_limit: int = 1000
    partitions: int = 1

    @property
    def queues(self) -> list[str]:
        """The change queues: ``queue`` alone, or one per partition."""
        if self.partitions == 1:
            return [self.queue]
        return [partition_queue(self.queue, i) for i in range(self.partitions)]

    def route(self, partition: int = 0) -> str:
        """The routing key of a partition's messages (with one partition, the slot's)."""
        if self.partitions == 1:
            return self.routing_key
        if not 0 <= partition < self.partitions:
            raise ValueError(f"partition {partition} of {self.partitions}")
        return partition_queue(self.queue, partition)

    @property
    def queue_arguments(self) -> dict[str, Any]:
        args: dict[str, Any] = {
            "x-queue-type": self.queue_type,
            "x-single-active-consumer": True,
            "x-dead-letter-exchange": self.dead_letter_exchange,
            "x-dead-letter-routing-key": self.routing_key,
        }
        if self.queue_type == "quorum":
            # RabbitMQ 3.10 has no default limit and RabbitMQ 4 sets 20, and a message
            # redelivered that often (an applier restarting in a loop) would be dead-lettered
            # by RabbitMQ itself, out of order; a limit no healthy pipeline reaches (every
            # reconnect of the applier counts one) but that still ends a true poison loop.
            args["x-delivery-limit"] = self.delivery_limit
            # What RabbitMQ dead-letters itself is moved at least once (3.10+): kept in this
            # queue until the dead-letter queue confirms it, never dropped. It needs
            # reject-publish: a full queue refuses a publish (the extractor's confirm fails
            # and it publishes again) rather than dropping the oldest message.
            args["x-overflow"] = "reject-publish"
            args["x-dead-letter-strategy"] = "at-least-once"
        return args

    @property
    def dead_letter_arguments(self) -> dict[str, Any]:
        return {"x-queue-type": self.queue_type}

    @property
    def state_queue(self) -> str:
        """The extractor's memory between runs (see extractor/state.py)."""
        return f"{self.queue}.state"

    @property
    def state_arguments(self) -> dict[str, Any]:
        args: dict[str, Any] = {"x-queue-type": "classic", "x-max-length": 1}
        if self.queue_type == "quorum":
            # On a cluster the state must survive the loss of a node like the changes do (a
            # classic queue lives on one node: while that node is down no session could
            # start). It is read by a get and a requeue at every start, each counting as a
            # delivery: a limit no run reaches (RabbitMQ 4 would drop it after 20).
            args.update({"x-queue-type": "quorum", "x-delivery-limit": 1_000_000})
        args["x-overflow"] = "drop-head"
        return args

    def declarations(self, with_state: bool = False) -> list[tuple[str, dict[str, Any]]]:
        """The channel calls, in order, that declare it all: (pika method, its arguments).
        Both processes run the same list, so they can never disagree on an argument."""
        steps: list[tuple[str, dict[str, Any]]] = [
            ("exchange_declare", {"exchange": self.dead_letter_exchange}),
            (
                "queue_declare",
                {"queue": self.dead_letter_queue, "arguments": self.dead_letter_arguments},
            ),
            (
                "queue_bind",
                {
                    "queue": self.dead_letter_queue,
                    "exchange": self.dead_letter_exchange,
                    "routing_key": self.routing_key,
                },
            ),
            ("exchange_declare", {"exchange": self.exchange}),
        ]
        for i, queue in enumerate(self.queues):
            steps.append(("queue_declare", {"queue": queue, "arguments": self.queue_arguments}))
            steps.append(
                (
                    "queue_bind",
                    {"queue": queue, "exchange": self.exchange, "routing_key": self.route(i)},
                )
            )
        if with_state:
            steps.append(
                ("queue_declare", {"queue": self.state_queue, "arguments": self.state_arguments})
            )
        for method, args in steps:
            if method == "exchange_declare":
                args.update(exchange_type="direct", durable=True)
            elif method == "queue_declare":
                args["durable"] = True
        return steps


def other_layout(topology: Topology, depth: Callable[[str], int | None]) -> str | None:
    """Why the queues say another ``target.partitions`` layout still has messages to apply
    (None: they do not). ``depth``: a queue's message count, None if it is not declared.

    A key's partition changes with N, so a pipeline must be drained before N changes. The
    queues of a layout with more partitions are ``<queue>.p<N>`` and up: every one of them
    is looked at, up to the first never declared (each layout declares all of its own), as
    a message left in ``<queue>.p5`` when N goes from 8 to 4 would be applied by no one. Of
    one partition: ``<queue>``; of fewer partitions, some of ``<queue>.p0`` .. while
    ``<queue>.p<N-1>`` was never declared (the first run with this N declares it)."""
    n, queue = topology.partitions, topology.queue
    candidates = [] if n == 1 else [queue]
    if n > 1 and depth(partition_queue(queue, n - 1)) is None:
        candidates += [partition_queue(queue, i) for i in range(n - 1)]
    for name in candidates:
        count = depth(name)
        if count:
            return _refusal(name, count, n)
    i = 0 if n == 1 else n
    while (count := depth(partition_queue(queue, i))) is not None:
        if count:
            return _refusal(partition_queue(queue, i), count, n)
        i += 1
    return None


def _refusal(name: str, count: int, n: int) -> str:
    return (
        f"queue {name} holds {count} messages of another target.partitions layout than "
        f"this one ({n}): drain the pipeline with the old setting first, or delete the "
        "old queues once they are empty (ARCHITECTURE.md, Parallel apply)"
    )


def topology_for(broker: BrokerConfig, slot: str, partitions: int = 1) -> Topology:
    return Topology(
        partitions=partitions,
        exchange=broker.exchange,
        routing_key=slot,
        queue=broker.queue,
        dead_letter_exchange=broker.dead_letter_exchange,
        dead_letter_queue=broker.dead_letter_queue,
        queue_type=broker.queue_type,
        delivery_limit=broker.delivery_limit,
    )
