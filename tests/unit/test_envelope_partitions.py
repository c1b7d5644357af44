"""The wire contract for ``target.partitions`` N > 1 (shared/envelope.py, shared/wire.py):
each envelope's partition, a barrier's afters, a marker's end, the headers that say the same,
and N = 1 exactly as before partitions existed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import pytest

from shared import envelope
from shared.errors import DecodeError
from shared.lsn import parse_lsn
from shared.position import Position
from shared.topology import Topology, other_layout, partition_queue
from shared.wire import decode, decode_all, encode

COMMIT = parse_lsn("16/B374D848")
BEFORE = Position.end_of(parse_lsn("16/B374C000"))
INSERT = {
    "op": "insert",
    "lsn": "16/B374D000",
    "schema": "public",
    "table": "t",
    "columns": ["id"],
    "types": ["integer"],
    "values": [5],
    "key": ["id"],
}
TRUNCATE = {"op": "truncate", "lsn": "16/B374D300", "schema": "public", "table": "t"}
# The truncate inside the transaction, after rows already published in chunks.
MID = Position(COMMIT, False, (parse_lsn("16/B374D300"), 0))


def body(changes: list[dict[str, Any]], **fields: Any) -> bytes:
    args: dict[str, Any] = {
        "slot": "cdc",
        "xid": 9,
        "commit_lsn": COMMIT,
        "commit_time": "2026-11-22 06:57:26+00",
        "copy": False,
        "chunk": 0,
        "last": True,
        "after": BEFORE,
        "resumed": False,
        "changes": changes,
    }
    args.update(fields)
    return encode(**args)


def test_one_partition_is_version_2_as_before() -> None:
    doc = orjson.loads(body([INSERT]))
    assert doc["v"] == 2
    assert not {"partition", "partitions", "barrier", "afters", "end"} & doc.keys()
    env = decode(body([INSERT]))
    assert (env.partition, env.partitions, env.barrier, env.marker) == (0, 1, False, False)
    assert env.message_id == "16/B374D848.0"
    headers = envelope.headers_for(
        commit_lsn=COMMIT,
        copy=False,
        chunk=0,
        last=True,
        after=BEFORE,
        end=env.end,
        resumed=False,
        count=1,
    )
    assert set(headers) == {
        "commit_lsn",
        "copy",
        "chunk",
        "last",
        "after",
        "end",
        "resumed",
        "changes",
    }


def test_a_partition_travels_as_version_3() -> None:
    raw = body([INSERT], partition=2, partitions=4)
    assert orjson.loads(raw)["v"] == 3
    env = decode(raw)
    assert (env.partition, env.partitions, env.barrier) == (2, 4, False)
    assert env.message_id == "16/B374D848.0@p2"


def test_a_barrier_in_the_middle_of_a_transaction() -> None:
    """Partition 0 holds the truncate; the others a marker that ends where it ends, inside the
    transaction, though it carries no change to say so."""
    afters = (Position(COMMIT, False, (parse_lsn("16/B374D200"), 4)), BEFORE, None)
    full = decode(
        body(
            [TRUNCATE],
            last=False,
            after=afters[0],
            partition=0,
            partitions=3,
            afters=afters,
            end=MID,
        )
    )
    assert full.barrier and not full.marker
    assert full.afters == afters and full.end == MID
    for p in (1, 2):
        marker = decode(
            body(
                [],
                last=False,
                chunk=7,
                after=afters[p],
                partition=p,
                partitions=3,
                afters=afters,
                end=MID,
            )
        )
        assert marker.marker and marker.barrier
        assert marker.end == MID and marker.sort_key == MID
        assert marker.after == afters[p]
        assert marker.trimmed(afters[0]) is marker  # nothing to trim off a marker
        assert marker.trimmed(MID) is None  # and a checkpoint at its end covers it


def test_a_barrier_at_the_end_of_its_transaction() -> None:
    afters = (BEFORE, BEFORE)
    end = Position.end_of(COMMIT)
    marker = decode(body([], partition=1, partitions=2, afters=afters, end=end))
    assert marker.marker and marker.last and marker.end == end


@pytest.mark.parametrize(
    ("changes", "fields", "why"),
    [
        ([], {"last": False, "partition": 1, "partitions": 2}, "without changes"),
        ([INSERT], {"partition": 2, "partitions": 2}, "partition is not one of"),
        (
            [TRUNCATE],
            {"partition": 0, "partitions": 2, "afters": (BEFORE,), "end": MID},
            "one after",
        ),
        (
            [TRUNCATE],
            {"partition": 0, "partitions": 2, "afters": (None, BEFORE), "end": MID, "last": False},
            "not its partition's",
        ),
        (
            [TRUNCATE],
            {"partition": 0, "partitions": 2, "afters": (BEFORE, None), "end": BEFORE},
            "not its changes' end",
        ),
        (
            [],
            {"partition": 0, "partitions": 2, "afters": (BEFORE, None), "end": MID, "last": False},
            "partition 0 holds",
        ),
    ],
)
def test_malformed_partitioned_envelopes(
    changes: list[dict[str, Any]], fields: dict[str, Any], why: str
) -> None:
    with pytest.raises(DecodeError, match=why):
        decode(body(changes, **fields))


def test_a_batch_on_one_partition_chains() -> None:
    first = body([INSERT], partition=1, partitions=2)
    second = body(
        [INSERT],
        commit_lsn=COMMIT + 0x100,
        after=Position.end_of(COMMIT),
        partition=1,
        partitions=2,
    )
    envs = decode_all(b"[" + first + b"," + second + b"]")
    assert [e.partition for e in envs] == [1, 1]


def test_a_marker_unreadable_still_has_its_place_from_its_headers() -> None:
    afters = (BEFORE, None, BEFORE)
    headers = envelope.headers_for(
        commit_lsn=COMMIT,
        copy=False,
        chunk=3,
        last=False,
        after=None,
        end=MID,
        resumed=False,
        count=0,
        partition=1,
        partitions=3,
        afters=afters,
    )
    stub = envelope.stub(headers, "unreadable")
    assert stub is not None
    assert (stub.partition, stub.partitions, stub.afters, stub.end) == (1, 3, afters, MID)
    assert envelope.stub({**headers, "partition": 3}, "x") is None
    plain = envelope.stub({**headers, "barrier": False}, "x")
    assert plain is not None and not plain.barrier


def test_partition_queues() -> None:
    t = Topology("cdc", "slot", "cdc.slot", "cdc.dead", "cdc.slot.dead", "classic", partitions=3)
    assert t.queues == [partition_queue("cdc.slot", i) for i in range(3)]
    assert t.route(2) == "cdc.slot.p2"
    binds = [a for m, a in t.declarations() if m == "queue_bind" and a["exchange"] == "cdc"]
    assert [(b["queue"], b["routing_key"]) for b in binds] == [(q, q) for q in t.queues]
    one = Topology("cdc", "slot", "cdc.slot", "cdc.dead", "cdc.slot.dead", "classic")
    assert one.queues == ["cdc.slot"] and one.route() == "slot"


def test_queues_of_another_layout_with_messages_are_refused() -> None:
    def layout(n: int) -> Topology:
        return Topology("cdc", "slot", "q", "cdc.dead", "q.dead", "classic", partitions=n)

    def depths(**queues: int) -> Callable[[str], int | None]:
        named = {k.replace("_", "."): v for k, v in queues.items()}
        return named.get

    assert other_layout(layout(1), depths(q=5)) is None
    assert other_layout(layout(1), depths(q=5, q_p0=0)) is None
    assert "q.p0 holds 3 messages" in (other_layout(layout(1), depths(q_p0=3)) or "")
    assert other_layout(layout(4), depths(q_p0=2, q_p3=0)) is None  # its own, as it left them
    assert "queue q holds" in (other_layout(layout(4), depths(q=1, q_p3=0)) or "")
    assert "q.p4" in (other_layout(layout(4), depths(q_p0=2, q_p3=0, q_p4=1)) or "")
    # Two partitions left messages; four were never declared: a smaller layout's.
    assert "q.p1" in (other_layout(layout(4), depths(q_p0=0, q_p1=7)) or "")
    assert other_layout(layout(4), depths(q_p0=0, q_p1=0)) is None  # drained: fine


def test_every_queue_of_a_larger_layout_must_be_empty() -> None:
    """From eight partitions back to four, or from four to one: a message left in any queue
    above the new N (not only in ``<queue>.p<N>``) would never be consumed by anyone."""

    def layout(n: int) -> Topology:
        return Topology("cdc", "slot", "q", "cdc.dead", "q.dead", "classic", partitions=n)

    def depths(**queues: int) -> Callable[[str], int | None]:
        named = {k.replace("_", "."): v for k, v in queues.items()}
        return named.get

    eight = {f"q_p{i}": 0 for i in range(8)}
    assert "q.p5 holds 2" in (other_layout(layout(4), depths(**{**eight, "q_p5": 2})) or "")
    assert "q.p7 holds 1" in (other_layout(layout(4), depths(**{**eight, "q_p7": 1})) or "")
    four = {f"q_p{i}": 0 for i in range(4)}
    assert "q.p2 holds 4" in (other_layout(layout(1), depths(q=0, **{**four, "q_p2": 4})) or "")
    assert other_layout(layout(1), depths(q=0, **four)) is None  # drained: fine
    assert other_layout(layout(4), depths(**eight)) is None
