from __future__ import annotations

import random

from applier.checkpoint import Checkpoint
from applier.sequence import Sequencer, follows
from shared.envelope import Envelope


def env(
    lsn: int,
    prev: int,
    chunk: int = 0,
    last: bool = True,
    resumed: bool = False,
    n: int = 1,
    first: int | None = None,
) -> Envelope:
    """One change per chunk unless told otherwise."""
    return Envelope(
        slot="s",
        xid=1,
        commit_lsn=lsn,
        commit_time="",
        prev_lsn=prev,
        resumed=resumed,
        chunk=chunk,
        first=chunk if first is None else first,
        last=last,
        changes=[f"c{i}" for i in range(n)],  # type: ignore[misc]
    )


# A session that resumed at 100 and published transactions 200, 300 (in 3 chunks), 400.
STREAM = [
    env(200, 100, resumed=True),
    env(300, 200, 0, last=False),
    env(300, 200, 1, last=False),
    env(300, 200, 2, last=True),
    env(400, 300),
]


def released(seq: Sequencer[str], items: list[tuple[Envelope, str]]) -> tuple[list[str], list[str]]:
    out: list[str] = []
    dups: list[str] = []
    for e, name in items:
        seq.add(e, name)
        ready, duplicates = seq.take()
        out += [n for _, n in ready]
        dups += duplicates
    return out, dups


def names() -> list[tuple[Envelope, str]]:
    return [(e, f"{e.commit_lsn}.{e.chunk}") for e in STREAM]


def test_in_order_is_released_at_once() -> None:
    seq: Sequencer[str] = Sequencer(Checkpoint(100, 0, True))
    out, dups = released(seq, names())
    assert out == ["200.0", "300.0", "300.1", "300.2", "400.0"]
    assert dups == [] and len(seq) == 0
    assert seq.checkpoint == Checkpoint(400, 1, True)


def test_any_arrival_order_is_released_in_source_order() -> None:
    for seed in range(50):
        items = names()
        random.Random(seed).shuffle(items)
        seq: Sequencer[str] = Sequencer(Checkpoint(100, 0, True))
        out, dups = released(seq, items)
        assert out == ["200.0", "300.0", "300.1", "300.2", "400.0"], seed
        assert dups == []


def test_duplicates_are_recognised_in_any_order() -> None:
    seq: Sequencer[str] = Sequencer(Checkpoint(300, 2, False))  # chunks 0 and 1 applied
    out, dups = released(seq, list(reversed(names())))
    assert out == ["300.2", "400.0"]
    assert sorted(dups) == ["200.0", "300.0", "300.1"]


def test_a_missing_message_holds_everything_after_it() -> None:
    seq: Sequencer[str] = Sequencer(Checkpoint(100, 0, True))
    items = [i for i in names() if i[1] != "300.1"]
    out, _ = released(seq, items)
    assert out == ["200.0", "300.0"]
    assert len(seq) == 2
    assert "change 1 of" in seq.waiting_for()
    seq.add(STREAM[2], "300.1")
    ready, _ = seq.take()
    assert [n for _, n in ready] == ["300.1", "300.2", "400.0"]


def test_resumed_message_waits_until_nothing_older_can_come() -> None:
    # The slot resumed at 150, past the last message (100) the applier has: no message has
    # commit LSN 150, so only "everything older was delivered" can release it.
    settled = {"yes": False}
    seq: Sequencer[str] = Sequencer(Checkpoint(100, 0, True), lambda _: settled["yes"])
    seq.add(env(200, 150, resumed=True), "200")
    assert seq.take() == ([], [])
    settled["yes"] = True
    ready, _ = seq.take()
    assert [n for _, n in ready] == ["200"]


def test_resumed_message_after_an_older_one_still_to_apply() -> None:
    seq: Sequencer[str] = Sequencer(Checkpoint(100, 0, True), lambda _: True)
    seq.add(env(300, 250, resumed=True), "300")
    seq.add(env(200, 100), "200")
    ready, _ = seq.take()
    assert [n for _, n in ready] == ["200", "300"]


def test_resumed_message_does_not_skip_the_rest_of_a_split_transaction() -> None:
    seq: Sequencer[str] = Sequencer(Checkpoint(100, 1, False), lambda _: True)
    seq.add(env(200, 150, resumed=True), "200")
    assert seq.take() == ([], [])


def test_nothing_applied_yet_takes_the_oldest_first() -> None:
    seq: Sequencer[str] = Sequencer(None)
    for e, n in reversed(names()):
        seq.add(e, n)
    ready, _ = seq.take()
    assert [n for _, n in ready] == ["200.0", "300.0", "300.1", "300.2", "400.0"]


def test_reset_puts_released_messages_back() -> None:
    seq: Sequencer[str] = Sequencer(Checkpoint(100, 0, True))
    for e, n in names():
        seq.add(e, n)
    ready, _ = seq.take()
    seq.reset(Checkpoint(300, 3, True), ready)
    again, dups = seq.take()
    assert [n for _, n in again] == ["400.0"]
    assert sorted(dups) == ["200.0", "300.0", "300.1", "300.2"]


def test_follows() -> None:
    assert follows(None, env(5, 1))
    assert follows(Checkpoint(300, 1, False), env(300, 200, 1))
    assert not follows(Checkpoint(300, 1, False), env(300, 200, 2))
    assert not follows(Checkpoint(300, 2, True), env(300, 200, 2))
    assert follows(Checkpoint(300, 3, True), env(400, 300))
    assert not follows(Checkpoint(300, 2, False), env(400, 300))
    assert not follows(Checkpoint(200, 1, True), env(400, 300))


def test_resent_with_other_chunk_boundaries() -> None:
    # Six changes, first sent in chunks of two; the applier has changes 0 and 1. After a
    # restart with other settings they come in chunks of three: the overlap is trimmed.
    seq: Sequencer[str] = Sequencer(Checkpoint(300, 2, False))
    seq.add(env(300, 200, chunk=0, last=False, n=3, first=0), "new0")
    seq.add(env(300, 200, chunk=1, last=True, n=3, first=3), "new1")
    ready, dups = seq.take()
    assert dups == []
    assert [(e.first, len(e.changes), n) for e, n in ready] == [(2, 1, "new0"), (3, 3, "new1")]
    assert [str(c) for e, _ in ready for c in e.changes] == ["c2", "c0", "c1", "c2"]
    assert seq.checkpoint == Checkpoint(300, 6, True)
