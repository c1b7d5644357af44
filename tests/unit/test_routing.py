"""The extractor's split into partitions (extractor/routing.py): each change on its key's
partition, one chain per partition, barriers with every partition's ``after`` (in the middle of
a streamed transaction too), copies as barriers, and the slot moved only past what every
partition has confirmed."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from extractor.assemble import Assembler
from extractor.decode import Begin
from extractor.metrics import ExtractorMetrics
from shared.envelope import Envelope
from shared.lsn import format_lsn, parse_lsn
from shared.partitioning import partition_of
from shared.position import Position
from shared.wire import decode
from tests.support.partition_fakes import PartitionSink, Timers, check_chain, outbox

N = 4
RESUME = Position.before(parse_lsn("0/1000"))
LINGER = 0.025


def begin(i: int, end: int = 0) -> Begin:
    lsn = parse_lsn(f"{i}/0")
    return Begin(
        xid=700 + i,
        commit_lsn=lsn,
        commit_time="2026-01-01 00:00:00+00",
        commit_end=end or lsn + 0x30,
    )


def keys_on(partition: int, count: int = 1, start: int = 0) -> list[int]:
    """Keys of table t that land on ``partition`` of N."""
    found = (k for k in itertools.count(start) if partition_of("public", "t", [k], N) == partition)
    return list(itertools.islice(found, count))


_lsn = itertools.count(0x100)


def insert(key: int, lsn: str | None = None) -> dict[str, Any]:
    return {
        "op": "insert",
        "lsn": lsn or f"0/{next(_lsn):X}",
        "schema": "public",
        "table": "t",
        "columns": ["id", "v"],
        "types": ["integer", "text"],
        "values": [key, "x"],
        "key": ["id"],
    }


def update(old: int, new: int) -> dict[str, Any]:
    change = insert(new)
    change["op"] = "update"
    change["old_key"] = {"columns": ["id"], "types": ["integer"], "values": [old]}
    return change


def truncate() -> dict[str, Any]:
    return {"op": "truncate", "lsn": f"0/{next(_lsn):X}", "schema": "public", "table": "t"}


def ddl() -> dict[str, Any]:
    return {
        "op": "ddl",
        "lsn": f"0/{next(_lsn):X}",
        "schema": "public",
        "table": "t",
        "columns": ["id", "v"],
        "types": ["integer", "text"],
        "values": [None, None],
        "key": ["id"],
        "ddl": {"action": "alter", "relid": 1, "attnums": [1, 2], "recopy": False},
    }


def idents(envs: list[Envelope]) -> list[tuple[int, int]]:
    return [c.ident for e in envs for c in e.changes]


def all_queues(sink: PartitionSink) -> list[list[Envelope]]:
    return [sink.queue(p) for p in range(N)]


def confirm_all(box: Any, sink: PartitionSink) -> None:
    box.confirm(len(sink.sent), True, True)


# ---------------------------------------------------------------- the split and the chains


def test_each_change_goes_to_its_keys_partition_and_each_partition_chains() -> None:
    box, sink, _tracker = outbox(N, resume=RESUME)
    keys = {p: keys_on(p, 3) for p in range(N)}
    box.begin(begin(1))
    for p in (1, 3):
        for k in keys[p]:
            box.add(insert(k), 10)
    box.commit()
    confirm_all(box, sink)
    box.begin(begin(2))
    for k in keys[3] + keys[0]:
        box.add(insert(k), 10)
    box.commit()
    queues = all_queues(sink)
    for p, envs in enumerate(queues):
        check_chain(envs, RESUME)
        for env in envs:
            assert env.partition == p and env.partitions == N
            assert all(partition_of("public", "t", [c.values[0]], N) == p for c in env.changes)
    assert [e.commit_lsn for e in queues[3]] == [parse_lsn("1/0"), parse_lsn("2/0")]
    assert queues[3][1].after == Position.end_of(parse_lsn("1/0"))  # its own predecessor
    assert queues[0][0].after == RESUME and queues[0][0].resumed  # quiet until now: the claim
    assert queues[2] == []
    assert [m.message_id for m in sink.sent[:2]] == ["1/0.0@p1", "1/0.0@p3"]


def test_positions_do_not_depend_on_the_split() -> None:
    """A WAL record of many rows (COPY) spread over partitions keeps its ordinals: the
    changes of all queues together are the ones one partition would carry."""
    changes = [insert(k, "0/50") for k in range(12)] + [insert(k) for k in range(12, 20)]
    one = Assembler("cdc", 1000, 1 << 20, RESUME)
    one.begin(begin(1))
    for c in changes:
        assert one.add(dict(c), 10) is None
    whole = decode(one.commit().body)  # type: ignore[union-attr]
    box, sink, _tracker = outbox(N, resume=RESUME, max_changes=2)
    box.begin(begin(1))
    for c in changes:
        box.add(dict(c), 10)
    box.commit()
    split = sorted(idents([e for q in all_queues(sink) for e in q]))
    assert split == idents([whole])


# ---------------------------------------------------------------- barriers


def test_a_truncate_in_the_middle_of_a_streamed_transaction() -> None:
    """Chunks of a long transaction are out on every partition when a truncate comes: each
    partition's pending rows are cut first, so the afters are exact; partition 0 holds the
    truncate, the others a marker that ends at it; every chain continues from there."""
    box, sink, tracker = outbox(N, resume=RESUME, max_changes=3, start_lsn=0x10)
    box.begin(begin(1))
    for k in range(40):
        box.add(insert(k), 10)
    cut = len(sink.sent)
    tails = {p: (sink.queue(p)[-1].end if sink.queue(p) else RESUME) for p in range(N)}
    trunc = truncate()
    box.add(trunc, 10)
    for k in range(40, 50):
        box.add(insert(k), 10)
    box.commit()
    barrier_end = Position(parse_lsn("1/0"), False, (parse_lsn(trunc["lsn"]), 0))
    queues = all_queues(sink)
    copies = [e for q in queues for e in q if e.barrier]
    assert len(copies) == N
    afters = copies[0].afters
    assert afters is not None
    for env in copies:
        assert env.afters == afters and env.end == barrier_end and not env.last
        assert env.after == afters[env.partition]
        assert env.marker == (env.partition != 0)
    assert [c.op for c in copies[0].changes] == ["truncate"] and copies[0].partition == 0
    # Every partition's rows before the truncate went out before it (cut at the barrier),
    # so each after is the end of that partition's last chunk, exact, not a claim.
    for p, q in enumerate(queues):
        before = [e for e in q if e.end < barrier_end]
        assert all(c.ident < barrier_end.change for e in before for c in e.changes)
        assert afters[p] == (before[-1].end if before else tails[p])
        assert afters[p] is not None and afters[p] != RESUME  # 40 keys reach every partition
        check_chain(q, RESUME)
        assert q[-1].last  # every partition ends the transaction
        after_barrier = q[q.index(next(e for e in q if e.barrier)) + 1]
        assert after_barrier.after == barrier_end
    assert all(s.partition != -1 for s in sink.sent[cut:])
    # The slot moves past the transaction only when every message of it is confirmed.
    marker = next(s for s in sink.sent if s.envelopes[0].marker and s.partition == 2)
    for s in sink.sent:
        if s is not marker:
            box.confirm(s.seq, False, True)
    assert tracker.flush_lsn == 0x10
    box.confirm(marker.seq, False, True)
    assert tracker.flush_lsn == begin(1).commit_end


def test_a_barrier_that_ends_its_transaction_goes_with_last() -> None:
    box, sink, _tracker = outbox(N, resume=RESUME)
    box.begin(begin(1))
    box.add(insert(keys_on(2)[0]), 10)
    box.commit()
    box.begin(begin(2))
    box.add(truncate(), 10)
    box.add(truncate(), 10)  # a TRUNCATE of two tables: one barrier
    box.commit()
    confirm_all(box, sink)
    end = Position.end_of(parse_lsn("2/0"))
    copies = [e for q in all_queues(sink) for e in q if e.barrier]
    assert [e.partition for e in copies] == list(range(N))
    assert all(e.last and e.end == end for e in copies)
    assert len(copies[0].changes) == 2
    assert copies[0].afters == (RESUME, RESUME, Position.end_of(parse_lsn("1/0")), RESUME)
    for q in all_queues(sink):
        check_chain(q, RESUME)


def test_a_key_moved_to_another_partition_is_a_barrier_and_a_kept_key_is_not() -> None:
    box, sink, _tracker = outbox(N, resume=RESUME)
    a, b = keys_on(1)[0], keys_on(3)[0]
    box.begin(begin(1))
    box.add(update(a, a), 10)
    box.add(update(a, b), 10)
    box.add(update(b, b), 10)
    box.commit()
    queues = all_queues(sink)
    assert [c.values[0] for e in queues[1] for c in e.changes] == [a]
    moved = [e for e in queues[0] if e.barrier]
    assert [c.values[0] for c in moved[0].changes] == [b]
    assert [c.values[0] for e in queues[3] for c in e.changes] == [b]
    for q in queues:
        check_chain(q, RESUME)


def test_a_table_whose_key_changed_is_a_barrier_once() -> None:
    """A primary key added without a schema change in the stream (no DDL capture): the rows
    of the table went to one partition by its name, now they go by key; the first change
    under the new key is a barrier, so what waits on the table's partition goes first."""
    box, sink, _tracker = outbox(N, resume=RESUME)
    keyless = insert(1)
    keyless["key"] = []
    keyed = [insert(k) for k in keys_on(2, 2)]
    box.begin(begin(1))
    box.add(keyless, 10)
    box.commit()
    box.begin(begin(2))
    for change in keyed:
        box.add(change, 10)
    box.commit()
    queues = all_queues(sink)
    barriers = [e for q in queues for e in q if e.barrier]
    assert len(barriers) == N  # the first keyed change: on partition 0, a marker elsewhere
    assert [c.values[0] for c in barriers[0].changes] == [keys_on(2)[0]]
    assert [c.values[0] for e in queues[2] for c in e.changes] == [keys_on(2, 2)[1]]
    for q in queues:
        check_chain(q, RESUME)


def test_many_key_moves_are_barriers_within_the_chunk_limits() -> None:
    box, sink, _tracker = outbox(N, resume=RESUME, max_changes=3)
    moves = [(k, k + 1) for k in range(0, 40, 2)]
    moves = [
        m
        for m in moves
        if partition_of("public", "t", [m[0]], N) != partition_of("public", "t", [m[1]], N)
    ]
    box.begin(begin(1))
    for old, new in moves:
        box.add(update(old, new), 10)
    box.commit()
    full = [e for e in sink.queue(0) if e.barrier]
    assert all(len(e.changes) <= 3 for e in full)
    assert sum(len(e.changes) for e in full) == len(moves)
    for q in all_queues(sink):
        check_chain(q, RESUME)
        assert len([e for e in q if e.barrier]) == len(full)


def test_a_schema_change_is_a_barrier_alone() -> None:
    box, sink, _tracker = outbox(N, resume=RESUME)
    box.begin(begin(1))
    box.add(insert(keys_on(0)[0]), 10)
    box.alone(ddl())
    box.add(insert(keys_on(0, 1, 1000)[0]), 10)
    box.commit()
    q0 = sink.queue(0)
    assert [len(e.changes) for e in q0] == [1, 1, 1]
    assert q0[1].schema_change is not None and q0[1].barrier and not q0[1].last
    for q in all_queues(sink):
        check_chain(q, RESUME)


def test_a_copy_is_one_barrier() -> None:
    box, sink, tracker = outbox(N, resume=RESUME, max_changes=2)
    box.begin(begin(1))
    box.add(insert(keys_on(3)[0]), 10)
    box.commit()
    copy = Begin(xid=0, commit_lsn=parse_lsn("2/0"), commit_time="", commit_end=parse_lsn("2/0"))
    box.begin(copy, copy=True)
    rows = [insert(k, "0/0") for k in range(5)]
    for row in rows:
        box.add(row, 10)
    seq = box.commit()
    assert seq == len(sink.sent)  # the copy's last message: all of it confirmed with it
    q0 = sink.queue(0)
    assert [e.copy for e in q0] == [True] * 3
    assert q0[0].barrier and not q0[1].barrier
    assert [c.values[0] for e in q0 for c in e.changes] == list(range(5))
    end = Position.end_of(parse_lsn("2/0"), copy=True)
    for p in range(1, N):
        (marker,) = [e for e in sink.queue(p) if e.copy]
        assert marker.marker and marker.last and marker.end == end
        assert marker.afters == q0[0].afters
    assert q0[0].afters == (RESUME, RESUME, RESUME, Position.end_of(parse_lsn("1/0")))
    confirm_all(box, sink)
    assert box.confirmed(seq) and tracker.flush_lsn == parse_lsn("2/0")


def test_a_heartbeat_reaches_every_partition() -> None:
    box, sink, _tracker = outbox(N, resume=RESUME)
    box.begin(begin(1))
    box.mark()
    box.commit()
    assert sorted(s.partition for s in sink.sent) == list(range(N))
    assert all(s.envelopes[0].changes == [] and s.envelopes[0].last for s in sink.sent)


# ---------------------------------------------------------------- confirms and batches


def test_batches_per_partition_move_the_slot_only_when_all_are_confirmed() -> None:
    box, sink, tracker = outbox(N, resume=RESUME, start_lsn=0x10)
    k1, k2 = keys_on(1, 3), keys_on(2, 3)
    box.begin(begin(1))
    box.add(insert(k1[0]), 10)
    box.commit()  # nothing awaits a confirm: goes at once
    assert len(sink.sent) == 1
    for i, key in ((2, k1[1]), (3, k2[0]), (4, k1[2]), (5, k2[1])):
        box.begin(begin(i))
        box.add(insert(key), 10)
        assert box.commit() == 0  # waits for the confirm
    box.pass_empty(parse_lsn("6/0"))  # nothing captured: goes with the batches
    assert len(sink.sent) == 1
    box.confirm(1, False, True)  # the batches go now, one message per partition
    assert tracker.flush_lsn == begin(1).commit_end
    batch1, batch2 = sink.sent[1:]
    assert (batch1.partition, batch2.partition) == (1, 2)
    assert [e.commit_lsn for e in batch1.envelopes] == [parse_lsn("2/0"), parse_lsn("4/0")]
    box.confirm(batch1.seq, False, True)
    assert tracker.flush_lsn == begin(1).commit_end  # partition 2's batch is not confirmed
    box.confirm(batch2.seq, False, True)
    assert tracker.flush_lsn == parse_lsn("6/0")
    for p in range(N):
        check_chain(sink.queue(p), RESUME)


def test_a_transaction_on_several_partitions_is_passed_only_once_all_are_confirmed() -> None:
    box, sink, tracker = outbox(N, resume=RESUME, start_lsn=0x10)
    box.begin(begin(1))
    for p in range(N):
        box.add(insert(keys_on(p)[0]), 10)
    box.commit()
    assert len(sink.sent) == N
    for s in sink.sent[:-1]:  # in the order published, all but the last
        box.confirm(s.seq, False, True)
        assert tracker.flush_lsn == 0x10
    box.confirm(N, False, True)
    assert tracker.flush_lsn == begin(1).commit_end


def small(box: Any, i: int, *keys: int) -> None:
    """A small transaction ``i`` with a change of each key."""
    box.begin(begin(i))
    for key in keys:
        box.add(insert(key), 10)
    box.commit()


def test_batches_wait_for_confirms_at_most_the_linger() -> None:
    timers = Timers()
    box, sink, tracker = outbox(N, resume=RESUME, start_lsn=0x10, linger=LINGER, later=timers.later)
    k1, k2 = keys_on(1, 2), keys_on(2, 2)
    small(box, 1, k1[0])  # nothing awaits a confirm: goes at once, nothing to time
    assert len(sink.sent) == 1 and timers.pending == []
    for i, key in ((2, k1[1]), (3, k2[0]), (4, k2[1])):
        small(box, i, key)
    assert len(sink.sent) == 1  # waiting for message 1's confirm
    # One linger for all the partitions' batches, from the first transaction that waits.
    assert [delay for delay, _ in timers.pending] == [LINGER]
    timers.fire()  # message 1's confirm is late: the batches go without it
    one, two = sink.sent[1:]
    assert (one.partition, two.partition) == (1, 2)
    assert [e.commit_lsn for e in one.envelopes] == [parse_lsn("2/0")]
    assert [e.commit_lsn for e in two.envelopes] == [parse_lsn("3/0"), parse_lsn("4/0")]
    assert tracker.flush_lsn == 0x10  # gone out is not confirmed
    confirm_all(box, sink)
    assert tracker.flush_lsn == begin(4).commit_end
    for p in range(N):
        check_chain(sink.queue(p), RESUME)


def test_a_linger_after_its_batches_went_does_nothing() -> None:
    timers = Timers()
    box, sink, _tracker = outbox(N, resume=RESUME, linger=LINGER, later=timers.later)
    k1, k2 = keys_on(1, 2), keys_on(2, 2)
    small(box, 1, k1[0])
    small(box, 2, k1[1])  # waits: a linger from now
    box.confirm(1, False, True)  # the confirm came first: the batch goes
    assert len(sink.sent) == 2
    small(box, 3, k2[0])  # waits for message 2: a linger of its own
    assert len(timers.pending) == 2
    timers.fire()  # the first batch's linger: that batch went already
    assert len(sink.sent) == 2  # transaction 3 still waits (its 25 ms have not passed)
    timers.fire()
    assert [e.commit_lsn for e in sink.sent[2].envelopes] == [parse_lsn("3/0")]
    small(box, 4, k2[1])  # waits for the confirms
    box.fail()
    timers.fire()  # the session failed meanwhile: nothing more goes out
    assert len(sink.sent) == 3


def test_a_lingered_group_moves_the_slot_only_past_what_every_partition_confirmed() -> None:
    timers = Timers()
    box, sink, tracker = outbox(N, resume=RESUME, start_lsn=0x10, linger=LINGER, later=timers.later)
    k1, k2 = keys_on(1, 2), keys_on(2, 2)
    small(box, 1, k1[0])
    small(box, 2, k1[1], k2[0])  # one transaction, in both partitions' batches
    small(box, 3, k2[1])
    box.pass_empty(parse_lsn("5/0"))  # nothing captured: goes with the group
    timers.fire()
    one, two = sink.sent[1:]
    assert (one.partition, two.partition) == (1, 2)
    assert [e.commit_lsn for e in two.envelopes] == [parse_lsn("2/0"), parse_lsn("3/0")]
    # Confirms in an order no wait for them would have let happen: the group's last first.
    box.confirm(two.seq, False, True)
    assert tracker.flush_lsn == 0x10  # message 1 is not confirmed
    box.confirm(1, False, True)
    # Transaction 2 is confirmed on partition 2, not yet on partition 1: the slot stops at 1.
    assert tracker.flush_lsn == begin(1).commit_end
    box.confirm(one.seq, False, True)
    assert tracker.flush_lsn == parse_lsn("5/0")
    for p in range(N):
        check_chain(sink.queue(p), RESUME)


@pytest.mark.parametrize("partitions", [2, 3])
def test_queues_hold_every_change_once(partitions: int) -> None:
    box, sink, _tracker = outbox(partitions, resume=None, max_changes=4)
    box.begin(begin(1))
    for k in range(30):
        box.add(insert(k), 10)
        if k % 11 == 10:
            box.add(truncate(), 10)
    box.commit()
    seen = [
        c.values[0] for s in sink.sent for e in s.envelopes for c in e.changes if c.op == "insert"
    ]
    assert sorted(seen) == list(range(30))
    for p in range(partitions):
        check_chain(sink.queue(p), None)
    assert format_lsn(sink.sent[0].envelopes[0].commit_lsn) == "1/0"


def _observed(metrics: ExtractorMetrics) -> float:
    return sum(
        s.value
        for m in metrics.publish_delay.collect()
        for s in m.samples
        if s.name.endswith("_count")
    )


def test_each_stream_message_observes_its_publish_delay() -> None:
    # The latency's first stage (commit to publish) with N > 1 as with one queue: once per
    # message, a batch's from its first transaction.
    metrics = ExtractorMetrics()
    box, sink, _tracker = outbox(N, resume=RESUME, metrics=metrics)
    k1 = keys_on(1, 3)
    small(box, 1, k1[0])  # alone
    small(box, 2, k1[1])  # these two wait for its confirm, then go as one batch
    small(box, 3, k1[2])
    assert _observed(metrics) == 1
    confirm_all(box, sink)
    assert len(sink.sent) == 2
    assert _observed(metrics) == 2
