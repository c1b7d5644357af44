"""Release messages in the source's order, whatever order RabbitMQ delivers them in.

Every message says where it continues from (``after``, a position: shared/position.py): the
end of the message its extractor session published before it, or, for a session's first
message (``resumed``), the slot position the session resumed from. It carries every captured
change after that position up to its own end. A message is released when the checkpoint (the
position of the last change applied) is at or past its ``after``; the changes it carries that
the checkpoint already covers are trimmed off, and a message it covers entirely is a duplicate.
Anything else waits: an older message may still come (RabbitMQ requeues unacked messages after
a crash, not always in their first order). If it never comes, the messages wait and the
applier reports the gap; it never applies past a missing message.

Consequences worth knowing:
- a copy's chunks are applied in order and all of them before what follows the copy, whatever
  the delivery order, because what follows continues from the copy's end;
- an empty checkpoint releases only a new slot's first message (``after`` null), or a session's
  first message once nothing older can arrive (below);
- a copy or transaction left unfinished by an extractor that stopped is passed by the next
  session's messages, which continue from a position before it (the slot never moved past
  it): that session copies the tables again, or (a transaction) no longer captures it. Such a
  message passes only once nothing older can still arrive (``settled``, below): if the rest
  of the copy or transaction was published after all, it sorts first and is applied first.

A session's first message continues from the slot's position, which can lie past the last
message published (the slot also moves past transactions with nothing captured), so its
``after`` may never be reached. It is released once nothing older can still arrive: every
older message was delivered before it (RabbitMQ delivers requeued messages before new ones),
and none of them is still waiting here. ``settled`` tells, for an item, whether everything
older was delivered.

The position the released messages continue from is not kept here: the caller passes it to
``take`` (applier/checkpoint_keeper.py owns it).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Generic, TypeVar

from shared.envelope import Envelope
from shared.position import Position

T = TypeVar("T")


def follows(checkpoint: Position | None, env: Envelope) -> bool:
    """True if ``env`` may be applied after ``checkpoint`` (None: nothing applied yet)."""
    if env.after is None:
        return True  # a new slot's first message: nothing exists before it
    return checkpoint is not None and env.after <= checkpoint


# What the heap holds: (where the message starts, arrival number, envelope, item). A plain
# tuple, compared in C (several comparisons per message); the arrival number is unique, so
# the envelope and the item are never compared.
_Held = tuple[Position, int, Envelope, T]  # [2]: the envelope, [3]: the item


class Sequencer(Generic[T]):
    """Holds ``(envelope, item)`` pairs and gives them back in order; ``item`` is opaque."""

    def __init__(self, settled: Callable[[T], bool] = lambda _: False) -> None:
        self._settled = settled
        self._heap: list[_Held[T]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, env: Envelope, item: T) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (env.sort_key, self._seq, env, item))

    def take(self, after: Position | None) -> tuple[list[tuple[Envelope, T]], list[T]]:
        """(messages to apply now, in order; duplicates to acknowledge without applying), the
        first continuing from ``after`` (the checkpoint, or the end of what was released
        before). The caller applies them or, if it cannot, puts them back (``put_back``).
        """
        ready: list[tuple[Envelope, T]] = []
        duplicates: list[T] = []
        ckpt = after
        while self._heap:
            head = self._heap[0]
            held, item = head[2], head[3]
            env: Envelope | None = held
            if ckpt is not None:
                env = held.trimmed(ckpt)
                if env is None:
                    duplicates.append(heapq.heappop(self._heap)[3])
                    continue
            assert env is not None
            if not (follows(ckpt, held) or self._resumes(ckpt, held, item)):
                break
            if self._abandons(ckpt, env) and not self._settled(item):
                # It would pass a copy or transaction its own session left unfinished: only
                # once nothing older can still come (the rest of it would sort first).
                break
            heapq.heappop(self._heap)
            ready.append((env, item))
            ckpt = env.end
        return ready, duplicates

    @staticmethod
    def _abandons(ckpt: Position | None, env: Envelope) -> bool:
        return (
            ckpt is not None
            and not ckpt.complete
            and not ckpt.same_transaction(env.commit_lsn, env.copy)
        )

    def _resumes(self, ckpt: Position | None, env: Envelope, item: T) -> bool:
        return env.resumed and (ckpt is None or ckpt.complete) and self._settled(item)

    def waiting_for(self) -> str:
        """What the oldest held message needs, for the gap report."""
        if not self._heap:
            return "-"
        return f"position {self._heap[0][2].after}"

    def put_back(self, items: list[tuple[Envelope, T]]) -> None:
        """Hold again ``items``, released but not applied, to be ordered afresh."""
        for env, item in items:
            self.add(env, item)

    def clear(self) -> None:
        self._heap = []
