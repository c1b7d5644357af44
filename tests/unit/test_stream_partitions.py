"""The extractor's session with ``target.partitions`` N = 4, on its real loop against the
in-memory PostgreSQL and RabbitMQ of tests/support/stream_fakes.py: a new slot's copy as a
barrier, changes on their keys' partitions, a backfill's copy, and a restart whose quiet
partitions continue from the resumed claim. (N > 1 is still refused when the settings are
read, until the applier side is built: the setting is put in place after reading.)"""

from __future__ import annotations

import dataclasses

from shared.envelope import Envelope
from shared.partitioning import partition_of
from shared.position import Position
from tests.support.partition_fakes import check_chain
from tests.support.stream_fakes import Servers, insert

T = "public.t"
N = 4


def partitioned(s: Servers) -> Servers:
    s.cfg = dataclasses.replace(s.cfg, target=dataclasses.replace(s.cfg.target, partitions=N))
    return s


def queue(s: Servers, p: int) -> list[Envelope]:
    return [e for m in s.broker.published if m.partition == p for e in m.envelopes]


def test_a_session_splits_by_key_and_a_restart_resumes_every_partition() -> None:
    rows = {T: [{"id": 1, "v": "a"}, {"id": 2, "v": "a"}]}
    s = partitioned(Servers([T], slot_exists=False, rows=rows, CDC_SNAPSHOT="initial"))
    keys = [k for k in range(3, 40) if partition_of("public", "t", [k], N) != 2]
    session = s.session(until_drained=False)
    backfill: list[int] = []

    def write() -> None:
        for k in keys:
            s.slot.commit(insert(T, id=k, v="b"))
        backfill.append(s.slot.backfill(s.cfg.source.slot, T))

    s.loop.call_later(1, write)
    s.loop.call_later(5, session.request_stop)
    session.run()
    for p in range(N):
        q = queue(s, p)
        check_chain(q, None)  # a new slot: nothing before any partition's first message
        for env in q:
            assert env.partitions == N
            if not env.copy:
                assert all(partition_of("public", "t", [c.values[0]], N) == p for c in env.changes)
    copies = [e for p in range(N) for e in queue(s, p) if e.copy and e.barrier]
    assert len(copies) == 2 * N  # the initial copy and the backfill's, each on every queue
    assert {e.partition for e in copies if e.marker} == {1, 2, 3}
    assert s.slot.confirmed_flush is not None and s.slot.confirmed_flush > backfill[0]
    resumed_at = s.slot.confirmed_flush
    sent = len(s.broker.published)
    # Partition 2 got no stream change: after a restart, a change on it continues from the
    # session's claim, as every partition's first message does.
    k2 = next(k for k in range(100, 200) if partition_of("public", "t", [k], N) == 2)
    s.slot.commit(insert(T, id=k2, v="c"))
    s.run()
    (env,) = [e for m in s.broker.published[sent:] for e in m.envelopes]
    assert env.partition == 2 and env.resumed
    assert env.after == Position.before(resumed_at)


def test_small_transactions_wait_for_confirms_at_most_the_linger() -> None:
    """With N > 1 as with one queue: a confirm RabbitMQ is slow to give holds the batches
    waiting on every partition at most the linger (extractor/stream.py's 25 ms)."""
    s = partitioned(Servers([T]))
    resume = s.slot.confirmed_flush
    assert resume is not None
    keys = [k for k in range(1, 100) if partition_of("public", "t", [k], N) in (1, 2)][:6]
    lsns = [s.slot.commit(insert(T, id=k, v="x")) for k in keys]
    s.broker.withhold = lambda m: m.tag == 1
    session = s.session(until_drained=False)

    def the_rest_went_after_the_linger() -> None:
        # The first went at once; the rest waited for its confirm, which is late: they went
        # together on each partition, and the slot still waits for every confirm.
        first, *batches = s.broker.published
        assert len(first.envelopes) == 1 and batches
        assert sum(len(m.envelopes) for m in batches) == len(keys) - 1
        assert {m.partition for m in batches} <= {1, 2}
        assert max(s.slot.feedback, default=0) < lsns[0]
        s.broker.ack(1)

    def confirmed() -> None:
        assert s.slot.feedback[-1] == lsns[-1]

    s.loop.call_later(1, the_rest_went_after_the_linger)
    s.loop.call_later(3, confirmed)
    s.loop.call_later(4, session.request_stop)
    session.run()
    for p in range(N):
        check_chain(queue(s, p), Position.before(resume))
