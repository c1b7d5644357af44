"""The barrier across partitions (applier/barrier.py): each step, then a model of N appliers
run in random interleavings with crashes, checking the order the barrier promises."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest

from applier.barrier import DESIGNATED, Barrier, Step, next_step
from shared.position import Position

B_LSN = 500  # the barrier's transaction
END = Position.end_of(B_LSN)


def _at(lsn: int) -> Position:
    return Position.end_of(lsn)


def test_designated_waits_for_every_partition_then_applies() -> None:
    b = Barrier(END, (_at(100), _at(200), None))
    assert next_step(DESIGNATED, b, [_at(100), _at(150), None]) is Step.WAIT
    assert next_step(DESIGNATED, b, [_at(100), _at(200), None]) is Step.APPLY
    assert next_step(DESIGNATED, b, [END, _at(200), None]) is Step.DONE


def test_the_others_arrive_wait_and_step_past() -> None:
    b = Barrier(END, (_at(100), _at(200)))
    assert next_step(1, b, [_at(100), _at(150)]) is Step.ARRIVE
    assert next_step(1, b, [_at(100), _at(200)]) is Step.WAIT
    assert next_step(1, b, [END, _at(200)]) is Step.STEP_PAST
    assert next_step(1, b, [END, END]) is Step.DONE


def test_a_quiet_partition_behind_a_resumed_claim_arrives_instead_of_blocking() -> None:
    # Partition 1 was quiet: its checkpoint is old; the barrier's copy says "everything
    # committed before 0/1C2" (the session's resumed claim). It arrives (writes the claim):
    # no false gap, and partition 0 can apply.
    claim = Position.before(450)
    b = Barrier(END, (_at(400), claim))
    checkpoints: list[Position | None] = [_at(400), _at(20)]
    assert next_step(DESIGNATED, b, checkpoints) is Step.WAIT
    assert next_step(1, b, checkpoints) is Step.ARRIVE
    checkpoints[1] = claim
    assert next_step(DESIGNATED, b, checkpoints) is Step.APPLY


def test_a_row_per_partition_is_needed() -> None:
    with pytest.raises(ValueError):
        next_step(0, Barrier(END, (None, None)), [None])


# ---------------------------------------------------------------- a model of N appliers


@dataclass
class Model:
    """N partitions' queues (chains of transactions' ends, the barrier among them), their
    checkpoint rows (which survive crashes) and the log of what was applied, in order."""

    chains: list[list[Position]]
    barrier: Barrier
    checkpoints: list[Position | None]
    log: list[tuple[str, int, Position]] = field(default_factory=list)
    pointer: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pointer = [self._redelivered(p) for p in range(len(self.chains))]

    def _redelivered(self, p: int) -> int:
        """After a crash: the first message the checkpoint does not cover comes first."""
        ckpt = self.checkpoints[p]
        chain = self.chains[p]
        return next((i for i, e in enumerate(chain) if ckpt is None or e > ckpt), len(chain))

    def done(self) -> bool:
        return all(self.pointer[p] == len(c) for p, c in enumerate(self.chains))

    def crash(self, p: int) -> None:
        self.pointer[p] = self._redelivered(p)

    def tick(self, p: int) -> None:
        chain = self.chains[p]
        if self.pointer[p] == len(chain):
            return
        end = chain[self.pointer[p]]
        if end != self.barrier.end:
            self.log.append(("row", p, end))
            self.checkpoints[p] = end  # committed with the rows
            self.pointer[p] += 1
            return
        step = next_step(p, self.barrier, self.checkpoints)
        if step is Step.ARRIVE:
            self.checkpoints[p] = self.barrier.afters[p]
        elif step is Step.APPLY:
            self.log.append(("barrier", p, end))
            self.checkpoints[p] = end  # committed with the barrier's rows
        elif step is Step.STEP_PAST:
            self.checkpoints[p] = end
        elif step is Step.DONE:
            self.pointer[p] += 1


def _model(rng: random.Random, n: int) -> Model:
    lsns = list(range(100, 1000, 50))
    chains: list[list[Position]] = []
    afters: list[Position | None] = []
    checkpoints: list[Position | None] = []
    for _ in range(n):
        mine = sorted(rng.sample(lsns, rng.randint(0, 8)))
        before = [lsn for lsn in mine if lsn < B_LSN]
        start = rng.choice([None, 50])  # a new slot's empty checkpoint, or one from before
        checkpoints.append(None if start is None else _at(start))
        if before:
            afters.append(_at(before[-1]))
        elif start is not None and rng.random() < 0.5:
            # Quiet since its checkpoint, and the barrier published by a session that
            # resumed after it: its `after` is that session's claim, ahead of the checkpoint.
            afters.append(Position.before(rng.choice([120, 300, 480])))
        else:
            afters.append(None if start is None else _at(start))
        chains.append([_at(lsn) for lsn in mine if lsn <= B_LSN] + [END])
        chains[-1] += [_at(lsn) for lsn in mine if lsn > B_LSN]
        chains[-1] = sorted(set(chains[-1]))
    return Model(chains, Barrier(END, tuple(afters)), checkpoints)


@pytest.mark.parametrize("seed", range(300))
def test_any_interleaving_with_crashes_keeps_the_barrier_in_order(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(2, 5)
    m = _model(rng, n)
    for _ in range(5000):
        if m.done():
            break
        p = rng.randrange(n)
        if rng.random() < 0.15:
            m.crash(p)  # kill -9: what was in memory is gone, the rows stay
        else:
            m.tick(p)
    assert m.done(), (m.pointer, m.checkpoints)
    applied = [i for i, (kind, _, _) in enumerate(m.log) if kind == "barrier"]
    assert len(applied) == 1, "the barrier is applied exactly once"
    at = applied[0]
    assert m.log[at][1] == DESIGNATED
    # Every partition's rows before the barrier are applied before it, those after it after.
    for i, (kind, p, end) in enumerate(m.log):
        if kind == "row":
            assert (end < END) == (i < at), (p, end)
    # Each row applied once: a crash repeats nothing that was committed.
    rows = [(p, end) for kind, p, end in m.log if kind == "row"]
    assert len(rows) == len(set(rows))
    assert all(c == chain[-1] for c, chain in zip(m.checkpoints, m.chains, strict=True))
