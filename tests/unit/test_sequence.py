from __future__ import annotations

import random
from collections.abc import Callable

from applier.sequence import Sequencer, follows
from shared.envelope import Change, Envelope
from shared.lsn import format_lsn
from shared.position import Position


def change(lsn: int, n: int = 0) -> Change:
    return Change(
        "insert", format_lsn(lsn), "public", "t", ["id"], ["integer"], [lsn], ["id"], None, n
    )


def env(
    commit: int,
    after: Position | None,
    changes: list[tuple[int, int]],
    *,
    last: bool = True,
    copy: bool = False,
    resumed: bool = False,
    chunk: int = 0,
) -> Envelope:
    return Envelope(
        slot="s",
        xid=1,
        commit_lsn=commit,
        commit_time="",
        copy=copy,
        chunk=chunk,
        last=last,
        after=after,
        resumed=resumed,
        changes=[change(lsn, n) for lsn, n in changes],
    )


def end(commit: int, copy: bool = False) -> Position:
    return Position.end_of(commit, copy)


def at(commit: int, lsn: int, n: int = 0, copy: bool = False) -> Position:
    return Position(commit, copy, (lsn, n))


# A session that resumed at 100 and published transactions 200, 300 (in 3 chunks), 400.
STREAM = [
    env(200, end(100), [(150, 0)], resumed=True),
    env(300, end(200), [(210, 0)], last=False),
    env(300, at(300, 210), [(220, 0)], last=False, chunk=1),
    env(300, at(300, 220), [(230, 0)], chunk=2),
    env(400, end(300), [(310, 0)]),
]
ORDER = ["200.0", "300.0", "300.1", "300.2", "400.0"]


class Ordered:
    """The sequencer and the position it releases from, moved past what it releases as the
    applier's checkpoint keeper moves it (applier/checkpoint_keeper.py)."""

    def __init__(
        self, checkpoint: Position | None, settled: Callable[[str], bool] = lambda _: False
    ) -> None:
        self.sequencer: Sequencer[str] = Sequencer(settled)
        self.checkpoint = checkpoint

    def __len__(self) -> int:
        return len(self.sequencer)

    def add(self, e: Envelope, item: str) -> None:
        self.sequencer.add(e, item)

    def take(self) -> tuple[list[tuple[Envelope, str]], list[str]]:
        ready, duplicates = self.sequencer.take(self.checkpoint)
        if ready:
            self.checkpoint = ready[-1][0].end
        return ready, duplicates

    def waiting_for(self) -> str:
        return self.sequencer.waiting_for()

    def reset(self, checkpoint: Position | None, items: list[tuple[Envelope, str]]) -> None:
        self.checkpoint = checkpoint
        self.sequencer.put_back(items)


def released(seq: Ordered, items: list[tuple[Envelope, str]]) -> tuple[list[str], list[str]]:
    out: list[str] = []
    dups: list[str] = []
    for e, name in items:
        seq.add(e, name)
        ready, duplicates = seq.take()
        out += [n for _, n in ready]
        dups += duplicates
    return out, dups


def names(stream: list[Envelope] = STREAM) -> list[tuple[Envelope, str]]:
    return [(e, f"{e.commit_lsn}{'c' if e.copy else ''}.{e.chunk}") for e in stream]


def test_in_order_is_released_at_once() -> None:
    seq = Ordered(end(100))
    out, dups = released(seq, names())
    assert out == ORDER
    assert dups == [] and len(seq) == 0
    assert seq.checkpoint == end(400)


def test_any_arrival_order_is_released_in_source_order() -> None:
    for seed in range(50):
        items = names()
        random.Random(seed).shuffle(items)
        seq = Ordered(end(100))
        out, dups = released(seq, items)
        assert out == ORDER, seed
        assert dups == []


def test_duplicates_are_recognised_in_any_order() -> None:
    seq = Ordered(at(300, 220))  # chunks 0 and 1 of 300 applied
    out, dups = released(seq, list(reversed(names())))
    assert out == ["300.2", "400.0"]
    assert sorted(dups) == ["200.0", "300.0", "300.1"]


def test_a_missing_message_holds_everything_after_it() -> None:
    seq = Ordered(end(100))
    items = [i for i in names() if i[1] != "300.1"]
    out, _ = released(seq, items)
    assert out == ["200.0", "300.0"]
    assert len(seq) == 2
    assert seq.waiting_for() == f"position {at(300, 220)}"
    seq.add(STREAM[2], "300.1")
    ready, _ = seq.take()
    assert [n for _, n in ready] == ["300.1", "300.2", "400.0"]


def test_resumed_message_waits_until_nothing_older_can_come() -> None:
    # The slot resumed at 150, past the last message (100) the applier has: no message ends
    # at 150, so only "everything older was delivered" can release it.
    settled = {"yes": False}
    seq = Ordered(end(100), lambda _: settled["yes"])
    seq.add(env(200, end(150), [(160, 0)], resumed=True), "200")
    assert seq.take() == ([], [])
    settled["yes"] = True
    ready, _ = seq.take()
    assert [n for _, n in ready] == ["200"]


def test_resumed_message_after_an_older_one_still_to_apply() -> None:
    seq = Ordered(end(100), lambda _: True)
    seq.add(env(300, end(250), [(260, 0)], resumed=True), "300")
    seq.add(env(200, end(100), [(150, 0)]), "200")
    ready, _ = seq.take()
    assert [n for _, n in ready] == ["200", "300"]


def test_resumed_message_does_not_skip_the_rest_of_a_split_transaction() -> None:
    # 100 was confirmed whole (the slot resumed past it), so its rest must be in the queue.
    seq = Ordered(at(100, 50), lambda _: True)
    seq.add(env(200, end(150), [(160, 0)], resumed=True), "200")
    assert seq.take() == ([], [])


def test_an_empty_checkpoint_waits_for_the_first_messages_predecessor() -> None:
    # Messages 2-5 redelivered before 1, nothing applied yet: nothing may pass before 1.
    seq = Ordered(None)
    for e, n in names()[1:]:
        seq.add(e, n)
    assert seq.take() == ([], [])
    seq.add(STREAM[0], "200.0")  # resumed, but everything older was not delivered yet
    assert seq.take() == ([], [])


def test_a_new_slots_first_message_needs_nothing_before_it() -> None:
    first = env(200, None, [(150, 0)])
    seq = Ordered(None)
    out, _ = released(seq, [*names()[1:], (first, "200.0")])
    assert out == ORDER


def test_an_empty_checkpoint_releases_a_resumed_message_once_settled() -> None:
    seq = Ordered(None, lambda _: True)
    for e, n in reversed(names()):
        seq.add(e, n)
    ready, _ = seq.take()
    assert [n for _, n in ready] == ORDER


def test_reset_puts_released_messages_back() -> None:
    seq = Ordered(end(100))
    for e, n in names():
        seq.add(e, n)
    ready, _ = seq.take()
    seq.reset(end(300), ready)
    again, dups = seq.take()
    assert [n for _, n in again] == ["400.0"]
    assert sorted(dups) == ["200.0", "300.0", "300.1", "300.2"]


def test_follows() -> None:
    assert follows(None, env(5, None, [(1, 0)]))
    assert not follows(None, env(5, end(1), [(3, 0)]))
    assert follows(at(300, 210), env(300, at(300, 210), [(220, 0)]))
    assert follows(at(300, 220), env(300, at(300, 210), [(220, 0)]))  # overlap: trimmed
    assert not follows(at(300, 210), env(300, at(300, 220), [(230, 0)]))
    assert follows(end(300), env(400, end(300), [(310, 0)]))
    assert not follows(at(300, 230), env(400, end(300), [(310, 0)]))
    assert not follows(end(200), env(400, end(300), [(310, 0)]))


# ---------------------------------------------------------------- copies

# A copy at 500 in 3 chunks (tables a, a, b), then a transaction committed after it.
COPY = [
    env(500, end(400), [(0, 0), (0, 1)], copy=True, last=False),
    env(500, at(500, 0, 1, copy=True), [(0, 2), (0, 3)], copy=True, last=False, chunk=1),
    env(500, at(500, 0, 3, copy=True), [(0, 4)], copy=True, chunk=2),
    env(600, end(500, copy=True), [(550, 0)]),
]


def test_a_late_copy_chunk_is_applied_before_what_follows_the_copy() -> None:
    # Redelivered as chunk 0, the insert after the copy, then chunks 1-2 (as after a requeue).
    items = names(COPY)
    seq = Ordered(end(400))
    out, dups = released(seq, [items[0], items[3], items[1], items[2]])
    assert out == ["500c.0", "500c.1", "500c.2", "600.0"]
    assert dups == []


def test_a_copy_at_the_commit_point_of_a_transaction_comes_before_it() -> None:
    # The copy's snapshot holds what committed before 500; the commit record at 500 is after.
    copy = env(500, end(400), [(0, 0)], copy=True)
    txn = env(500, end(500, copy=True), [(450, 0)])
    seq = Ordered(end(400))
    out, _ = released(seq, [(txn, "txn"), (copy, "copy")])
    assert out == ["copy", "txn"]
    assert seq.checkpoint == end(500)


def test_an_abandoned_copy_is_passed_by_the_next_session() -> None:
    # The extractor stopped after chunk 0 of the copy at 500; the next session resumed at 400
    # (the slot never moves past an unfinished copy), and copies again at 700.
    seq = Ordered(end(400), lambda _: True)
    seq.add(*names(COPY)[0])
    seq.take()
    assert seq.checkpoint == at(500, 0, 1, copy=True)
    later = [
        env(450, end(400), [(420, 0)], resumed=True),
        env(650, end(450), [(620, 0)]),
        env(700, end(650), [(0, 0)], copy=True),
    ]
    out, dups = released(seq, names(later))
    assert dups == ["450.0"]  # before the copy at 500: covered by it
    assert out == ["650.0", "700c.0"]


def test_an_abandoned_initial_copy_is_passed_by_the_next_session() -> None:
    # A new slot at 100 copied its tables at 100 and stopped; the next session resumes at 100.
    seq = Ordered(None, lambda _: True)
    seq.add(env(100, None, [(0, 0), (0, 1)], copy=True, last=False), "100c.0")
    seq.take()
    nxt = env(300, Position.before(100), [(0, 0)], copy=True, resumed=True)
    out, _ = released(seq, [(nxt, "300c.0")])
    assert out == ["300c.0"]


def test_a_copy_is_not_passed_by_a_message_of_its_own_session() -> None:
    seq = Ordered(end(400), lambda _: True)
    seq.add(*names(COPY)[0])
    seq.take()
    seq.add(*names(COPY)[3])
    assert seq.take() == ([], [])


# ---------------------------------------------------------------- trimming by identity


def test_resent_with_other_chunk_boundaries() -> None:
    # Six changes, first sent in chunks of two; the applier has changes 0 and 1. After a
    # restart with other settings they come in chunks of three: the overlap is trimmed.
    lsns = [(310 + i, 0) for i in range(6)]
    seq = Ordered(at(300, 311))
    seq.add(env(300, end(200), lsns[:3], last=False), "new0")
    seq.add(env(300, at(300, 312), lsns[3:], chunk=1), "new1")
    ready, dups = seq.take()
    assert dups == []
    assert [([c.ident[0] for c in e.changes], n) for e, n in ready] == [
        ([312], "new0"),
        ([313, 314, 315], "new1"),
    ]
    assert seq.checkpoint == end(300)


def test_resent_with_a_narrower_filter() -> None:
    # Changes 310..315 of tables a and b; the applier has everything up to 313. After a
    # restart without table b, only a's changes come: those past 313 are applied, no more.
    seq = Ordered(at(300, 313))
    seq.add(env(300, end(200), [(310, 0), (312, 0), (314, 0)]), "a")
    ready, _ = seq.take()
    assert [[c.ident[0] for c in e.changes] for e, _ in ready] == [[314]]
    assert seq.checkpoint == end(300)


def test_resent_with_a_wider_filter() -> None:
    # The applier has 310..313 of table a; a restart that also captures table b sends b's
    # changes of the same transaction: only those past what is applied come through.
    seq = Ordered(at(300, 313))
    seq.add(env(300, end(200), [(310, 0), (311, 0), (313, 0), (314, 0), (315, 0)]), "ab")
    ready, _ = seq.take()
    assert [[c.ident[0] for c in e.changes] for e, _ in ready] == [[314, 315]]


def test_changes_of_one_record_are_trimmed_by_their_ordinal() -> None:
    seq = Ordered(at(300, 310, 2))
    seq.add(env(300, end(200), [(310, i) for i in range(5)]), "copy-from")
    ready, _ = seq.take()
    assert [[c.n for c in e.changes] for e, _ in ready] == [[3, 4]]


def test_passing_an_unfinished_copy_waits_until_nothing_older_can_come() -> None:
    # Redelivered after a reconnect: the next session's message may not pass the copy before
    # every older message was delivered (the copy's rest, if any, would sort first).
    settled = {"yes": False}
    seq = Ordered(end(400), lambda _: settled["yes"])
    seq.add(*names(COPY)[0])
    seq.take()
    seq.add(env(650, Position.before(450), [(620, 0)], resumed=True), "650.0")
    assert seq.take() == ([], [])
    seq.add(*names(COPY)[1])  # older, delivered late: applied first
    ready, _ = seq.take()
    assert [n for _, n in ready] == ["500c.1"]
    settled["yes"] = True
    ready, _ = seq.take()
    assert [n for _, n in ready] == ["650.0"]
