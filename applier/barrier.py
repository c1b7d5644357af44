"""What one partition's applier does next at a barrier (``target.partitions`` N > 1).

A barrier (a truncate, a schema change, a copy, a key moved into another partition: see
shared/partitioning.py) reaches every partition's queue; partition ``DESIGNATED`` applies it,
the others step past it once that is done (ARCHITECTURE.md, "Parallel apply"). Each step
reads and writes checkpoint rows only — one per partition, in MariaDB, so appliers in
different processes see each other — and every write is monotone, so after a crash anywhere
the step that was cut is simply decided again from the rows as they are.

This is the decision alone, a pure function of the barrier and the checkpoint rows; the
applier's loop does what it says (write, apply, or poll again).

Carried out by applier/barrier_steps.py.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from shared.position import Position

DESIGNATED = 0


class Step(enum.Enum):
    DONE = "done"  # this partition's checkpoint is past the barrier: ack it unapplied
    ARRIVE = "arrive"  # write this partition's checkpoint up to its ``after`` of the barrier
    WAIT = "wait"  # poll the other partitions' checkpoints again
    APPLY = "apply"  # (the designated partition) apply the barrier, checkpoint to its end
    STEP_PAST = "step_past"  # write this partition's checkpoint to the barrier's end, ack


@dataclass(frozen=True, slots=True)
class Barrier:
    end: Position  # where the barrier ends, the same on every partition
    # Each partition's ``after`` of the barrier: where its chain stood before it (an exact
    # position, a resumed claim "everything committed before R", or None: nothing before).
    afters: tuple[Position | None, ...]


def reached(checkpoint: Position | None, point: Position | None) -> bool:
    """Whether a checkpoint is at or past a point (None: nothing applied / nothing before)."""
    if point is None:
        return True
    return checkpoint is not None and checkpoint >= point


def next_step(partition: int, barrier: Barrier, checkpoints: Sequence[Position | None]) -> Step:
    """What ``partition`` does next at ``barrier``, given every partition's checkpoint row."""
    if len(checkpoints) != len(barrier.afters):
        raise ValueError("a checkpoint row per partition is needed")
    own = checkpoints[partition]
    if reached(own, barrier.end):
        return Step.DONE
    if not reached(own, barrier.afters[partition]):
        # Released by the sequencer, so nothing of this partition before the barrier is left
        # unapplied; the checkpoint says so for the others to see (a quiet partition after a
        # resumed claim is behind its ``after`` without missing anything).
        return Step.ARRIVE
    if partition == DESIGNATED:
        arrived = all(reached(c, a) for c, a in zip(checkpoints, barrier.afters, strict=True))
        return Step.APPLY if arrived else Step.WAIT
    return Step.STEP_PAST if reached(checkpoints[DESIGNATED], barrier.end) else Step.WAIT
