"""An in-memory RabbitMQ for the extractor's split into partitions (extractor/routing.py):
what was published to each partition's queue, confirmed on command, and each queue's chain
read back as the applier would."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from extractor.confirms import ConfirmTracker
from extractor.metrics import ExtractorMetrics
from extractor.routing import PartitionedOutbox, assemblers
from shared.envelope import Envelope
from shared.position import Position
from shared.wire import decode_all


@dataclass
class Sent:
    seq: int
    body: bytes
    message_id: str
    headers: dict[str, Any]
    partition: int

    @property
    def envelopes(self) -> list[Envelope]:
        return decode_all(self.body)


class PartitionSink:
    """Publishing without a broker: each message kept with its partition; confirms are the
    test's to give (``Outbox.confirm``)."""

    def __init__(self) -> None:
        self.sent: list[Sent] = []
        self.states: list[bytes] = []

    def publish(
        self, body: bytes, message_id: str, headers: dict[str, Any], partition: int = 0
    ) -> int:
        self.sent.append(Sent(len(self.sent) + 1, body, message_id, headers, partition))
        return len(self.sent)

    def publish_state(self, body: bytes) -> int:
        self.states.append(body)
        self.sent.append(Sent(len(self.sent) + 1, body, "state", {}, -1))
        return len(self.sent)

    def queue(self, partition: int) -> list[Envelope]:
        """One partition's queue, its messages' envelopes in order."""
        return [e for s in self.sent if s.partition == partition for e in s.envelopes]


def outbox(
    partitions: int,
    *,
    resume: Position | None,
    start_lsn: int = 0,
    max_changes: int = 1000,
    max_bytes: int = 1 << 20,
    max_inflight: int = 100,
    linger: float = 0.0,
    later: Callable[[float, Callable[[], None]], None] | None = None,
    metrics: ExtractorMetrics | None = None,
) -> tuple[PartitionedOutbox, PartitionSink, ConfirmTracker]:
    sink = PartitionSink()
    tracker = ConfirmTracker(start_lsn)
    parts = assemblers("cdc", max_changes, max_bytes, resume, partitions)
    box = PartitionedOutbox(
        parts,
        sink,
        tracker,
        metrics or ExtractorMetrics(),
        max_inflight,
        max_changes=max_changes,
        max_bytes=max_bytes,
        linger=linger,
        later=later,
    )
    return box, sink, tracker


class Timers:
    """A loop's timers on command: what was asked to run later, run when the test says (an
    outbox's linger)."""

    def __init__(self) -> None:
        self.pending: list[tuple[float, Callable[[], None]]] = []

    def later(self, delay: float, callback: Callable[[], None]) -> None:
        self.pending.append((delay, callback))

    def fire(self, index: int = 0) -> None:
        """Run that timer (the oldest by default), as the loop would once its delay passed."""
        _delay, callback = self.pending.pop(index)
        callback()


def check_chain(envs: list[Envelope], first_after: Position | None) -> None:
    """A partition's queue as its applier orders it: each message continues from the one
    before it on that partition, the first from the session's claim."""
    after = first_after
    for env in envs:
        assert env.after == after, f"{env.message_id} continues from {env.after}, not {after}"
        if env.barrier:
            assert env.afters is not None and env.afters[env.partition] == env.after
        after = env.end
