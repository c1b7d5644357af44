"""The extractor's session, its real loop run against in-memory PostgreSQL and RabbitMQ
(tests/support/stream_fakes.py): what goes out, and what the slot is told, when."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable

import pytest

from extractor.heartbeat import HEARTBEAT_PREFIX
from extractor.partitions import Layout
from shared.errors import BrokerUnavailable
from shared.position import Position
from shared.tables import TableRef
from tests.support.stream_fakes import START_TIME, Servers, insert, message

T = "public.t"


def at(servers: Servers, seconds: float, action: Callable[[], object]) -> None:
    """Run ``action`` at that virtual time of the current session's loop (its first session
    starts at 0)."""

    def run() -> None:
        action()

    servers.loop.call_later(START_TIME + seconds - servers.loop.now, run)


# ---------------------------------------------------------------- where a session starts


def test_a_session_continues_from_the_slot_position_and_the_next_from_its_feedback() -> None:
    s = Servers([T])
    resume = s.slot.confirmed_flush
    assert resume is not None
    first_lsn = s.slot.commit(insert(T, id=1, v="a"))
    second_lsn = s.slot.commit(insert(T, id=2, v="b"))
    s.run()
    first, second = s.broker.envelopes()
    assert first.resumed and first.after == Position.before(resume)
    assert not second.resumed and second.after == Position.end_of(s.slot.start_of(first_lsn))
    assert s.slot.confirmed_flush == second_lsn
    third_lsn = s.slot.commit(insert(T, id=3, v="c"))
    s.run()
    assert len(s.broker.published) == 3  # nothing confirmed is sent again
    third = s.broker.envelopes()[2]
    assert third.commit_lsn == s.slot.start_of(third_lsn)
    assert third.resumed and third.after == Position.before(second_lsn)


def test_a_new_slot_s_first_message_continues_from_nothing() -> None:
    s = Servers([T], slot_exists=False)
    session = s.session(until_drained=False)
    lsns: list[int] = []
    at(s, 1, lambda: lsns.append(s.slot.commit(insert(T, id=1, v="a"))))
    at(s, 2, lambda: lsns.append(s.slot.commit(insert(T, id=2, v="b"))))
    at(s, 3, session.request_stop)
    session.run()
    assert s.slot.created
    first, second = s.broker.envelopes()
    assert first.after is None and not first.resumed
    assert second.after == Position.end_of(s.slot.start_of(lsns[0]))
    assert s.slot.confirmed_flush == lsns[1]


# ---------------------------------------------------------------- the flush position


def test_the_flush_position_never_passes_an_unconfirmed_message() -> None:
    s = Servers([T], CDC_SOURCE_MAX_CHUNK_CHANGES="1")
    lsns = [s.slot.commit(insert(T, id=i, v="x")) for i in range(1, 6)]
    s.broker.withhold = lambda m: m.tag in (2, 3)
    session = s.session(until_drained=False)

    def behind_the_second() -> None:
        assert [m.confirmed for m in s.broker.published] == [True, False, False, True, True]
        assert max(s.slot.feedback) == lsns[0]
        s.broker.ack(3)  # confirmed out of order: still behind the second

    def still_behind() -> None:
        assert max(s.slot.feedback) == lsns[0]
        s.broker.ack(2)

    def moved_on() -> None:
        assert s.slot.feedback[-1] == lsns[-1]  # by the next tick at the latest

    at(s, 5, behind_the_second)
    at(s, 6, still_behind)
    at(s, 7.5, moved_on)
    at(s, 8, session.request_stop)
    session.run()
    assert s.slot.confirmed_flush == lsns[-1]
    assert s.slot.feedback == sorted(s.slot.feedback)


def test_a_chunk_left_unconfirmed_keeps_its_whole_transaction_unconfirmed() -> None:
    s = Servers([T], CDC_SOURCE_MAX_CHUNK_CHANGES="2")
    before = s.slot.commit(insert(T, id=0, v="x"))
    big = s.slot.commit(*[insert(T, id=i, v="y") for i in range(1, 7)])
    s.broker.withhold = lambda m: m.tag == 3  # the big transaction's second chunk of three
    session = s.session(until_drained=False)

    def behind_the_chunk() -> None:
        assert max(s.slot.feedback) == before
        s.broker.ack(3)

    at(s, 5, behind_the_chunk)
    at(s, 8, session.request_stop)
    session.run()
    chunks = [e for e in s.broker.envelopes() if e.commit_lsn == s.slot.start_of(big)]
    assert [e.chunk for e in chunks] == [0, 1, 2] and chunks[-1].last
    assert s.slot.confirmed_flush == big


def test_a_backfill_request_holds_the_slot_until_its_copy_is_confirmed() -> None:
    rows = {T: [{"id": 1, "v": "copied"}, {"id": 2, "v": "copied"}]}
    s = Servers([T], rows=rows)
    first = s.slot.commit(insert(T, id=10, v="a"))
    request = s.slot.backfill(s.cfg.source.slot, T)
    after = s.slot.commit(insert(T, id=11, v="b"))
    s.broker.withhold = lambda m: m.envelopes[0].copy
    session = s.session(until_drained=False)

    def copy_out_but_unconfirmed() -> None:
        copy = [m for m in s.broker.published if m.envelopes[0].copy]
        assert copy and not any(m.confirmed for m in copy)
        # The transaction after the request is confirmed; the slot stays before the request.
        assert any(e.commit_lsn == after for e in s.broker.envelopes())
        assert max(s.slot.feedback) == first < request
        assert s.broker.states == []  # not recorded as copied either
        s.broker.ack(copy[-1].tag, multiple=True)

    at(s, 5, copy_out_but_unconfirmed)
    at(s, 8, session.request_stop)
    session.run()
    assert s.slot.confirmed_flush is not None and s.slot.confirmed_flush > after
    copy = [e for e in s.broker.envelopes() if e.copy]
    assert [c.table for e in copy for c in e.changes] == ["t", "t", "t"]
    assert [c.op for e in copy for c in e.changes] == ["truncate", "insert", "insert"]
    assert s.broker.states and b'"public", "t"' in s.broker.states[-1]


@pytest.mark.parametrize("refusal", ["nack", "return"])
def test_a_nack_or_a_return_ends_the_session_and_nothing_moves_the_slot_after(
    refusal: str,
) -> None:
    s = Servers([T])
    lsns = [s.slot.commit(insert(T, id=i, v="x")) for i in range(1, 4)]
    s.broker.withhold = lambda m: m.tag > 1
    session = s.session(until_drained=False)

    def refuse_then_confirm_everything() -> None:
        if refusal == "nack":
            s.broker.nack(2)
        else:
            s.broker.return_(2)  # followed by a positive ack, as RabbitMQ does
        s.broker.ack(3, multiple=True)

    at(s, 5.5, refuse_then_confirm_everything)  # not within 0.2 s of a tick: feedback could go
    with pytest.raises(BrokerUnavailable, match=r"nack|returned"):
        session.run()
    assert s.slot.confirmed_flush == lsns[0]
    assert max(s.slot.feedback) == lsns[0]
    assert s.broker.closed


# ---------------------------------------------------------------- flow and stop


def test_reading_pauses_at_max_inflight_and_resumes_when_half_is_confirmed() -> None:
    s = Servers([T], CDC_BROKER_MAX_INFLIGHT="4", CDC_SOURCE_MAX_CHUNK_CHANGES="1")
    lsns = [s.slot.commit(insert(T, id=i, v="x")) for i in range(10)]
    s.broker.withhold = lambda m: True
    session = s.session()

    def paused_at_four() -> None:
        assert len(s.broker.published) == 4 and s.slot.pending
        s.broker.ack(1)

    def still_paused_at_three_unconfirmed() -> None:
        assert len(s.broker.published) == 4
        s.broker.ack(2)

    def read_again_up_to_four() -> None:
        assert len(s.broker.published) == 6 and len(s.broker.unconfirmed) == 4
        s.broker.withhold = lambda m: False
        s.broker.ack(6, multiple=True)

    at(s, 1.5, paused_at_four)
    at(s, 2.5, still_paused_at_three_unconfirmed)
    at(s, 3.5, read_again_up_to_four)
    session.run()  # until drained
    assert len(s.broker.published) == 10
    assert s.slot.confirmed_flush == lsns[-1]


def test_a_graceful_stop_confirms_what_was_published_and_reads_no_more(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    s = Servers([T], CDC_SOURCE_MAX_CHUNK_CHANGES="1")
    lsns = [s.slot.commit(insert(T, id=i, v="x")) for i in range(3)]
    s.broker.withhold = lambda m: True
    session = s.session(until_drained=False)
    at(s, 1, session.request_stop)
    at(s, 2, lambda: s.slot.commit(insert(T, id=9, v="late")))
    at(s, 3, lambda: s.broker.ack(3, multiple=True))
    session.run()
    assert len(s.broker.published) == 3
    assert s.slot.feedback[-1] == s.slot.confirmed_flush == lsns[-1]
    assert s.broker.closed
    assert "stopped confirmed_lsn=" in caplog.text


def test_a_stop_without_confirms_gives_up_and_confirms_nothing_unconfirmed(
    caplog: pytest.LogCaptureFixture,
) -> None:
    s = Servers([T])
    resume = s.slot.confirmed_flush
    s.slot.commit(insert(T, id=1, v="x"))
    s.broker.withhold = lambda m: True
    session = s.session(until_drained=False)
    at(s, 1, session.request_stop)
    session.run()
    assert s.loop.now - START_TIME >= 20  # the grace period
    assert "stop_timeout unconfirmed=1" in caplog.text
    assert s.slot.confirmed_flush == resume


# ---------------------------------------------------------------- what the records become


def test_heartbeats_are_published_as_messages_without_changes() -> None:
    s = Servers([T], CDC_SOURCE_HEARTBEAT_INTERVAL="2")
    other = s.slot.commit(message(HEARTBEAT_PREFIX, "another_slot"))
    session = s.session(until_drained=False)
    at(s, 7, session.request_stop)
    session.run()
    assert s.heartbeat.beats == 3
    beats = s.broker.envelopes()
    assert len(beats) == 3 and all(e.changes == [] and e.last for e in beats)
    assert other < beats[0].commit_lsn  # another slot's heartbeat is passed, not published
    assert s.slot.confirmed_flush is not None
    assert s.slot.start_of(s.slot.confirmed_flush) == beats[-1].commit_lsn


def test_a_partition_s_change_is_renamed_to_its_root() -> None:
    root, part = TableRef("public", "m"), TableRef("public", "m_2024")
    layout = Layout(
        roots={root: ["id", "day"]},
        partitions={part: root},
        leaves={part: "r"},
        tables=frozenset({root}),
    )
    s = Servers(["public.m"], layout=layout)
    s.slot.commit(insert("public.m_2024", id=1, day="2024-05-01", v="a"))
    s.run()
    (env,) = s.broker.envelopes()
    (change,) = env.changes
    assert (change.schema, change.table) == ("public", "m")
    assert change.key == ["id", "day"]  # the root's key, as a copy of the root has it
    assert s.slot.started_partitioned  # wal2json is not told to filter by table name


def test_changes_of_tables_not_captured_are_passed_but_not_published() -> None:
    s = Servers([T, "public.other"], CDC_TABLES=T)
    skipped = s.slot.commit(insert("public.other", id=1, v="x"))
    s.run()
    assert s.broker.published == []
    assert s.slot.confirmed_flush == skipped


def test_a_new_slot_copies_its_tables_first_and_records_them_once_confirmed() -> None:
    rows = {T: [{"id": 1, "v": "a"}]}
    s = Servers([T], slot_exists=False, rows=rows, CDC_SNAPSHOT="initial")
    session = s.session(until_drained=False)
    at(s, 1, lambda: s.slot.commit(insert(T, id=2, v="b")))
    at(s, 2, session.request_stop)
    session.run()
    copy, change = s.broker.envelopes()
    assert (
        copy.copy
        and copy.after is None
        and [c.op for c in copy.changes]
        == [
            "truncate",
            "insert",
        ]
    )
    assert not change.copy and change.after == Position.end_of(copy.commit_lsn, copy=True)
    assert s.copiers[0].exported is not None  # the slot's own snapshot
    assert b'"public", "t"' in s.broker.states[-1]
    # The next session finds it copied: no copy again.
    s.run()
    assert len(s.copiers) == 1


def test_tables_the_publication_gained_are_copied_again() -> None:
    """pgoutput never sent a table's changes from before it joined the publication: a table
    added at a session's start, or by a catalog check while it runs, is copied again."""
    rows = {T: [{"id": 1, "v": "a"}]}
    s = Servers([T], slot_exists=False, rows=rows, CDC_SNAPSHOT="initial")
    s.run()
    assert len(s.copiers) == 1
    s.run()
    assert len(s.copiers) == 1  # recorded as copied: not again
    ref = TableRef("public", "t")
    s.slot.republished = [ref]  # added to the publication at this start
    s.run()
    assert [c.tables for c in s.copiers[1:]] == [[ref]]
    s.slot.republished = []
    session = s.session(until_drained=False)
    at(s, 1, lambda: setattr(s.catalog, "added", [ref]))  # found by the check at 30 s
    at(s, 35, lambda: s.slot.commit(insert(T, id=2, v="b")))
    at(s, 60, session.request_stop)
    session.run()
    assert s.catalog.checks >= 1
    assert [c.tables for c in s.copiers[2:]] == [[ref]]


# ---------------------------------------------------------------- small transactions batched


def test_small_transactions_go_together_while_confirms_are_awaited() -> None:
    s = Servers([T])
    lsns = [s.slot.commit(insert(T, id=i, v="x")) for i in range(6)]
    s.broker.withhold = lambda m: m.tag == 1
    session = s.session(until_drained=False)

    def one_alone_the_rest_waiting() -> None:
        # Nothing awaited a confirm for the first: it went at once. The rest wait for it.
        assert [len(m.envelopes) for m in s.broker.published] == [1]

    def the_rest_in_one_message_after_the_linger() -> None:
        # The first's confirm is late: the rest went together once they had waited the
        # linger; the slot still waits for both confirms.
        assert [len(m.envelopes) for m in s.broker.published] == [1, 5]
        assert max(s.slot.feedback, default=0) < lsns[0]
        s.broker.ack(1)

    def confirmed() -> None:
        assert s.slot.feedback[-1] == lsns[-1]

    at(s, 0.005, one_alone_the_rest_waiting)
    at(s, 1, the_rest_in_one_message_after_the_linger)
    at(s, 3, confirmed)
    at(s, 4, session.request_stop)
    session.run()
    envs = s.broker.envelopes()
    assert [e.changes[0].values[0] for e in envs] == list(range(6))
    for before, env in itertools.pairwise(envs):
        assert env.after == before.end  # one chain, across messages and within one


def test_a_batch_never_lets_the_slot_pass_it_before_its_confirm() -> None:
    s = Servers([T, "public.other"], CDC_TABLES=T)
    first = s.slot.commit(insert(T, id=1, v="x"))
    s.slot.commit(insert(T, id=2, v="y"))
    skipped = s.slot.commit(insert("public.other", id=1, v="not captured"))
    s.broker.withhold = lambda m: True
    session = s.session(until_drained=False)

    def batch_out_unconfirmed() -> None:
        # The batch went after the linger, the first still unconfirmed.
        assert [len(m.envelopes) for m in s.broker.published] == [1, 1]
        assert max(s.slot.feedback, default=0) < first
        s.broker.ack(1)

    def still_behind_the_batch() -> None:
        # The transaction with nothing captured after the batch waits for the batch's confirm.
        assert s.slot.feedback[-1] == first
        s.broker.ack(2)

    def past_all() -> None:
        assert s.slot.feedback[-1] == skipped

    at(s, 1, batch_out_unconfirmed)
    at(s, 2.5, still_behind_the_batch)
    at(s, 4, past_all)
    at(s, 5, session.request_stop)
    session.run()


def test_a_stop_sends_the_batch_that_waits() -> None:
    s = Servers([T])
    lsns = [s.slot.commit(insert(T, id=i, v="x")) for i in range(4)]
    s.broker.withhold = lambda m: m.tag == 1
    session = s.session(until_drained=False)
    at(s, 1, session.request_stop)
    at(s, 2, lambda: s.broker.ack(1))
    session.run()
    assert [len(m.envelopes) for m in s.broker.published] == [1, 3]
    assert s.slot.confirmed_flush == lsns[-1]
