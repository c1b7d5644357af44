from __future__ import annotations

import itertools
from typing import Any

import pytest

from extractor.assemble import Assembler, Outgoing
from extractor.decode import Begin
from shared.errors import DecodeError
from shared.lsn import parse_lsn
from shared.position import Position
from shared.wire import decode

RESUME = Position.end_of(parse_lsn("0/1000"))
T1 = Begin(xid=701, commit_lsn=parse_lsn("0/2000"), commit_time="2026-01-01 00:00:01+00")
T2 = Begin(xid=702, commit_lsn=parse_lsn("0/3000"), commit_time="2026-01-01 00:00:02+00")
T3 = Begin(xid=703, commit_lsn=parse_lsn("1/0"), commit_time="2026-01-01 00:00:03+00")


def change(i: int) -> dict[str, Any]:
    return {
        "op": "insert",
        "lsn": f"0/{0x1000 + i:X}",
        "schema": "public",
        "table": "t",
        "columns": ["id"],
        "types": ["integer"],
        "values": [i],
        "key": ["id"],
    }


def run(asm: Assembler, begin: Begin, sizes: list[int], first: int = 0) -> list[Outgoing]:
    """One whole transaction; the messages it produced, in order."""
    out: list[Outgoing] = []
    asm.begin(begin)
    for i, size in enumerate(sizes):
        msg = asm.add(change(first + i), size)
        if msg is not None:
            out.append(msg)
    last = asm.commit()
    if last is not None:
        out.append(last)
    return out


def assembler(max_changes: int = 1000, max_bytes: int = 1 << 20) -> Assembler:
    return Assembler("cdc", max_changes, max_bytes, RESUME)


def ids_in(msg: Outgoing) -> list[int]:
    return [c.values[0] for c in decode(msg.body).changes]


# ---------------------------------------------------------------- chunking


def test_small_transaction_is_one_message() -> None:
    (msg,) = run(assembler(), T1, [10, 10, 10])
    assert msg.chunk == 0
    assert msg.last is True
    assert msg.changes == 3
    assert ids_in(msg) == [0, 1, 2]


def test_chunks_by_change_count() -> None:
    msgs = run(assembler(max_changes=2), T1, [10] * 5)
    assert [m.changes for m in msgs] == [2, 2, 1]
    assert [m.chunk for m in msgs] == [0, 1, 2]
    assert [ids_in(m) for m in msgs] == [[0, 1], [2, 3], [4]]


def test_exact_multiple_of_the_change_count() -> None:
    msgs = run(assembler(max_changes=2), T1, [10] * 4)
    assert [m.changes for m in msgs] == [2, 2]
    assert [m.last for m in msgs] == [False, True]


def test_chunks_by_bytes() -> None:
    msgs = run(assembler(max_bytes=100), T1, [40, 40, 40, 100, 1])
    # 40+40 fit, +40 would not; 40 then +100 would not; 100 then +1 would not
    assert [ids_in(m) for m in msgs] == [[0, 1], [2], [3], [4]]


def test_bytes_limit_is_inclusive() -> None:
    msgs = run(assembler(max_bytes=100), T1, [50, 50, 50])
    assert [ids_in(m) for m in msgs] == [[0, 1], [2]]


def test_a_change_larger_than_the_limit_gets_its_own_chunk() -> None:
    msgs = run(assembler(max_bytes=100), T1, [10, 500, 10])
    assert [ids_in(m) for m in msgs] == [[0], [1], [2]]


def test_add_returns_the_previous_chunk_when_a_new_one_starts() -> None:
    asm = assembler(max_changes=2)
    asm.begin(T1)
    assert asm.add(change(0), 1) is None
    assert asm.add(change(1), 1) is None
    first = asm.add(change(2), 1)
    assert first is not None
    assert ids_in(first) == [0, 1]
    last = asm.commit()
    assert last is not None
    assert ids_in(last) == [2]


def test_last_flag_only_on_the_final_chunk() -> None:
    msgs = run(assembler(max_changes=3), T1, [1] * 10)
    assert [m.last for m in msgs] == [False, False, False, True]
    assert [decode(m.body).last for m in msgs] == [False, False, False, True]
    assert [decode(m.body).chunk for m in msgs] == [0, 1, 2, 3]


def test_every_chunk_carries_the_transaction() -> None:
    msgs = run(assembler(max_changes=1), T1, [1, 1, 1])
    for m in msgs:
        env = decode(m.body)
        assert (env.slot, env.xid, env.commit_lsn) == ("cdc", 701, T1.commit_lsn)
        assert env.commit_time == T1.commit_time
        assert m.commit_lsn == T1.commit_lsn
        assert m.commit_time == T1.commit_time


# ---------------------------------------------------------------- empty transactions


def test_transaction_without_changes_gives_nothing() -> None:
    asm = assembler()
    asm.begin(T1)
    assert asm.in_transaction
    assert asm.commit() is None
    assert not asm.in_transaction


def test_empty_transaction_does_not_move_after() -> None:
    asm = assembler()
    assert run(asm, T1, []) == []
    (msg,) = run(asm, T2, [1])
    env = decode(msg.body)
    assert env.after == RESUME
    assert env.resumed is True


def test_heartbeat_transaction_is_published_without_changes() -> None:
    asm = assembler()
    asm.begin(T1)
    asm.mark()
    out = asm.commit()
    assert out is not None and out.last and out.changes == 0
    assert decode(out.body).changes == []


# ---------------------------------------------------------------- the chain of positions


def test_each_message_continues_from_the_end_of_the_one_before() -> None:
    asm = assembler(max_changes=2)
    msgs = run(asm, T1, [1, 1, 1]) + run(asm, T2, [1]) + run(asm, T3, [1, 1, 1])
    envs = [decode(m.body) for m in msgs]
    assert envs[0].after == RESUME
    for before, env in itertools.pairwise(envs):
        assert env.after == before.end
    # Only a session's first message continues from the slot's position.
    assert [e.resumed for e in envs] == [True] + [False] * (len(envs) - 1)
    assert envs[1].end == Position.end_of(T1.commit_lsn)
    assert envs[0].end == Position(T1.commit_lsn, False, (parse_lsn("0/1001"), 0))


def test_a_new_slots_first_message_continues_from_nothing() -> None:
    asm = Assembler("cdc", 1000, 1 << 20, None)
    (first,) = run(asm, T1, [1])
    (second,) = run(asm, T2, [1])
    assert decode(first.body).after is None
    assert decode(first.body).resumed is False
    assert decode(second.body).after == Position.end_of(T1.commit_lsn)


def test_changes_of_one_record_are_numbered() -> None:
    asm = assembler(max_changes=2)
    asm.begin(T1)
    out: list[Outgoing | None] = []
    for i in range(5):
        out.append(asm.add(dict(change(i), lsn="0/1500"), 1))
    out.append(asm.add(change(9), 1))
    last = asm.commit()
    envs = [decode(m.body) for m in [*out, last] if m is not None]
    assert [[c.n for c in e.changes] for e in envs] == [[0, 1], [2, 3], [4, 0]]
    assert envs[1].after == Position(T1.commit_lsn, False, (parse_lsn("0/1500"), 1))


def test_a_copy_never_mixes_tables_in_one_chunk() -> None:
    asm = assembler(max_changes=100)
    copy = Begin(xid=0, commit_lsn=parse_lsn("0/5000"), commit_time="2026-01-01 00:00:05+00")
    asm.begin(copy, copy=True)
    out = []
    for i, table in enumerate(["a", "a", "b", "c", "c"]):
        msg = asm.add(dict(change(i), table=table, lsn="0/5000"), 1)
        if msg:
            out.append(msg)
    last = asm.commit()
    envs = [decode(m.body) for m in [*out, last] if m is not None]
    assert [[c.table for c in e.changes] for e in envs] == [["a", "a"], ["b"], ["c", "c"]]
    assert all(e.copy for e in envs)
    assert [m.message_id for m in [*out, last] if m] == ["0/5000c.0", "0/5000c.1", "0/5000c.2"]
    # A transaction mixes tables freely.
    (msg,) = run(asm, T2, [1, 1])
    assert decode(msg.body).copy is False


# ---------------------------------------------------------------- ids and determinism


def test_message_ids() -> None:
    msgs = run(assembler(max_changes=1), T3, [1, 1, 1])
    assert [m.message_id for m in msgs] == ["1/0.0", "1/0.1", "1/0.2"]
    assert [decode(m.body).message_id for m in msgs] == ["1/0.0", "1/0.1", "1/0.2"]


def test_chunk_numbers_restart_with_each_transaction() -> None:
    asm = assembler(max_changes=1)
    run(asm, T1, [1, 1])
    msgs = run(asm, T2, [1, 1])
    assert [m.message_id for m in msgs] == ["0/3000.0", "0/3000.1"]


def test_same_input_same_bodies() -> None:
    def session() -> list[Outgoing]:
        asm = Assembler("cdc", 3, 100, RESUME)
        return run(asm, T1, [30, 30, 30, 30, 90, 5]) + run(asm, T2, [1, 1], first=10)

    first, again = session(), session()
    assert [m.body for m in first] == [m.body for m in again]
    assert [m.message_id for m in first] == [m.message_id for m in again]
    assert first == again


# ---------------------------------------------------------------- misuse


def test_add_outside_a_transaction() -> None:
    with pytest.raises(DecodeError, match="outside a transaction"):
        assembler().add(change(0), 1)


def test_add_after_commit() -> None:
    asm = assembler()
    run(asm, T1, [1])
    with pytest.raises(DecodeError):
        asm.add(change(1), 1)


def test_commit_outside_a_transaction() -> None:
    with pytest.raises(DecodeError):
        assembler().commit()


def test_begin_inside_a_transaction() -> None:
    asm = assembler()
    asm.begin(T1)
    with pytest.raises(DecodeError, match="inside xid 701"):
        asm.begin(T2)


def test_commit_end() -> None:
    asm = assembler()
    with pytest.raises(DecodeError):
        asm.commit_end()
    asm.begin(Begin(xid=9, commit_lsn=0x3000, commit_time="", commit_end=0x3030))
    assert asm.commit_end() == 0x3030
    out = asm.commit()
    assert out is None
    # A decoder that learns the end only at the commit (pgoutput) gives it there.
    asm.begin(Begin(xid=10, commit_lsn=0x4000, commit_time=""))
    asm.mark()
    last = asm.commit(end=0x4040)
    assert last is not None and last.commit_end == 0x4040 and last.commit_lsn == 0x4000
