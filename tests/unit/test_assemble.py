from __future__ import annotations

from typing import Any

import pytest

from extractor.assemble import Assembler, Outgoing
from extractor.decode import Begin
from shared.envelope import decode
from shared.errors import DecodeError
from shared.lsn import parse_lsn

RESUME = parse_lsn("0/1000")
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


def test_empty_transaction_does_not_move_prev_lsn() -> None:
    asm = assembler()
    assert run(asm, T1, []) == []
    (msg,) = run(asm, T2, [1])
    env = decode(msg.body)
    assert env.prev_lsn == RESUME
    assert env.resumed is True


def test_heartbeat_transaction_is_published_without_changes() -> None:
    asm = assembler()
    asm.begin(T1)
    asm.mark()
    out = asm.commit()
    assert out is not None and out.last and out.changes == 0
    assert decode(out.body).changes == []


# ---------------------------------------------------------------- prev_lsn chain


def test_prev_lsn_chain() -> None:
    asm = assembler(max_changes=2)
    first = run(asm, T1, [1, 1, 1])
    second = run(asm, T2, [1])
    third = run(asm, T3, [1, 1, 1])
    for m in first:
        env = decode(m.body)
        assert env.prev_lsn == RESUME
        assert env.resumed is True
    (only,) = second
    assert decode(only.body).prev_lsn == T1.commit_lsn
    assert decode(only.body).resumed is False
    for m in third:
        env = decode(m.body)
        assert env.prev_lsn == T2.commit_lsn
        assert env.resumed is False


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


def test_commit_lsn() -> None:
    asm = assembler()
    with pytest.raises(DecodeError):
        asm.commit_lsn()
    asm.begin(T2)
    assert asm.commit_lsn() == T2.commit_lsn
