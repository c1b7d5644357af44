"""Release messages in the source's commit order, whatever order RabbitMQ delivers them in.

Every message says which message comes before it: a later chunk of a transaction follows the
chunk that ends where it starts (``first``); chunk 0 follows the transaction whose commit LSN is
``prev_lsn``. A message is released only
when the checkpoint — the last message applied — is that predecessor or later; a message at or
before the checkpoint is a duplicate. Anything else waits: an older message may still come
(RabbitMQ requeues unacked messages after a crash, not always in their first order). If the
predecessor never comes, the messages wait and the applier reports the gap; it never applies
past a missing message.

The first message of an extractor session (``resumed``) names as ``prev_lsn`` the slot position
the session resumed from. That position can lie past the last message published (the slot also
moves past transactions with nothing captured), so no message may ever have that commit LSN.
Such a message is released once nothing older can still arrive: every older message was
delivered before it (RabbitMQ delivers requeued messages before new ones), and none of them is
still waiting here. ``settled`` tells, for an item, whether everything older was delivered.
"""

from __future__ import annotations

import dataclasses
import heapq
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from applier.checkpoint import Checkpoint
from shared.envelope import Envelope
from shared.lsn import format_lsn

T = TypeVar("T")


def follows(checkpoint: Checkpoint | None, env: Envelope) -> bool:
    """True if ``env`` is the next message after ``checkpoint`` (None: nothing applied yet).

    Within a transaction, a message follows if it starts at or before the first change not
    yet applied (chunk boundaries may differ from a first sending: the overlap is trimmed).
    """
    if checkpoint is None:
        return True
    if env.commit_lsn == checkpoint.commit_lsn and not checkpoint.complete:
        return env.first <= checkpoint.done
    if env.first == 0:
        return checkpoint.passable and checkpoint.commit_lsn >= env.prev_lsn
    return False


@dataclass(order=True)
class _Held(Generic[T]):
    position: tuple[int, int]
    seq: int
    env: Envelope = field(compare=False)
    item: T = field(compare=False)


class Sequencer(Generic[T]):
    """Holds ``(envelope, item)`` pairs and gives them back in order; ``item`` is opaque."""

    def __init__(
        self, checkpoint: Checkpoint | None, settled: Callable[[T], bool] = lambda _: False
    ) -> None:
        self.checkpoint = checkpoint
        self._settled = settled
        self._heap: list[_Held[T]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, env: Envelope, item: T) -> None:
        self._seq += 1
        heapq.heappush(self._heap, _Held(env.position, self._seq, env, item))

    def take(self) -> tuple[list[tuple[Envelope, T]], list[T]]:
        """(messages to apply now, in order; duplicates to acknowledge without applying).

        The checkpoint moves past the released messages: the caller applies them or, if it
        cannot, calls ``reset``.
        """
        ready: list[tuple[Envelope, T]] = []
        duplicates: list[T] = []
        ckpt = self.checkpoint
        while self._heap:
            head = self._heap[0]
            if ckpt is not None and ckpt.covers(head.env):
                duplicates.append(heapq.heappop(self._heap).item)
                continue
            if not (follows(ckpt, head.env) or self._resumes(ckpt, head)):
                break
            heapq.heappop(self._heap)
            env = head.env
            skip = ckpt.applied_of(env) if ckpt is not None else 0
            if skip:
                env = dataclasses.replace(env, changes=env.changes[skip:], first=env.first + skip)
            ready.append((env, head.item))
            ckpt = Checkpoint.after(env)
        self.checkpoint = ckpt
        return ready, duplicates

    def _resumes(self, ckpt: Checkpoint | None, head: _Held[T]) -> bool:
        env = head.env
        return (
            env.resumed
            and env.first == 0
            and (ckpt is None or ckpt.passable)
            and self._settled(head.item)
        )

    def waiting_for(self) -> str:
        """What the oldest held message needs, for the gap report."""
        if not self._heap:
            return "-"
        head = self._heap[0].env
        if head.first > 0:
            return f"change {head.first - 1} of commit_lsn={format_lsn(head.commit_lsn)}"
        return f"commit_lsn={format_lsn(head.prev_lsn)}"

    def reset(self, checkpoint: Checkpoint | None, items: list[tuple[Envelope, T]]) -> None:
        """Start again from ``checkpoint`` with ``items`` (released but not applied) held again."""
        self.checkpoint = checkpoint
        for env, item in items:
            self.add(env, item)

    def clear(self, checkpoint: Checkpoint | None) -> None:
        self.checkpoint = checkpoint
        self._heap = []
