"""The applier's real loop against in-memory MariaDB and RabbitMQ (tests/support/applier_fakes.py):
what is applied, in which order, against which checkpoint, and when each message is acked."""

from __future__ import annotations

import logging
import threading

import pytest

from applier.apply import BatchResult, Prepared
from applier.consumer import REPLAY_HEADER
from devstack.system import wait_until
from shared import wire
from shared.envelope import Envelope
from shared.errors import DecodeError, RowRejected
from shared.position import Position
from tests.support.applier_fakes import Rig, body, chain, headers_of, together


def end(lsn: int) -> Position:
    return Position.end_of(lsn)


def in_background(rig: Rig) -> threading.Thread:
    thread = threading.Thread(target=rig.run, daemon=True)
    thread.start()
    return thread


# ---------------------------------------------------------------- applied, then acked


def test_batches_apply_in_order_and_are_acked_after_their_commit() -> None:
    rig = Rig()
    rig.publish(100, 200, 300)
    rig.run()
    assert rig.target.applied == [100, 200, 300]
    assert rig.broker.acked == ["100.0", "200.0", "300.0"]
    assert rig.target.checkpoint_row == end(300)
    assert rig.target.closed and not rig.broker.connected


def test_no_ack_while_the_batch_is_in_flight() -> None:
    rig = Rig()
    rig.target.gate = threading.Event()
    rig.publish(100)
    running = in_background(rig)
    wait_until(lambda: rig.target.executed == [100], "100 in flight", timeout=10, interval=0.01)
    assert rig.broker.acked == []
    rig.target.gate.set()
    running.join(10)
    assert rig.broker.acked == ["100.0"]


def test_next_batch_is_prepared_while_one_is_in_flight() -> None:
    rig = Rig()
    rig.target.gate = threading.Event()
    rig.publish(100, 200)
    running = in_background(rig)
    # 200 is prepared at once, though 100 is still being applied (and unacked): it is a batch
    # of its own (max_batch_changes 1), made while MariaDB works on the one before.
    wait_until(lambda: rig.target.prepared == [100, 200], "200 prepared", timeout=10, interval=0.01)
    assert rig.target.executed == [100]
    assert rig.broker.acked == []
    rig.target.gate.set()
    running.join(10)
    assert rig.target.applied == [100, 200]
    assert rig.target.executed == [100, 200]
    assert rig.broker.acked == ["100.0", "200.0"]


def test_less_than_a_batch_waits_for_the_one_in_flight_and_goes_with_what_came_since() -> None:
    """A batch of its own made at once behind the one in flight would make whatever comes
    meanwhile wait for both: the latency of a steady trickle of small transactions."""
    rig = Rig(CDC_TARGET_MAX_BATCH_CHANGES="100")
    rig.target.gate = threading.Event()
    (_, first), (_, second), (_, third) = chain(100, 200, 300)
    rig.broker.publish(first, "100.0")
    batches: list[list[int]] = []
    prepare, execute = rig.target.prepare, rig.target.execute

    def preparing(batch: list[Envelope]) -> Prepared:
        if [e.commit_lsn for e in batch] == [100]:
            rig.broker.publish(second, "200.0")  # delivered while 100 is in flight
        return prepare(batch)

    def executing(prepared: Prepared, expect: Position | None, **kw: bool) -> BatchResult:
        batches.append([e.commit_lsn for e in prepared.batch])
        return execute(prepared, expect, **kw)

    rig.target.prepare, rig.target.execute = preparing, executing  # type: ignore[method-assign]
    running = in_background(rig)
    wait_until(lambda: rig.broker.unacked == 2, "200 delivered", timeout=10, interval=0.01)
    rig.broker.publish(third, "300.0")  # comes while 100 is still in flight
    rig.target.gate.set()
    running.join(10)
    assert batches == [[100], [200, 300]]
    assert rig.target.prepared == [100, 200, 300]  # each prepared once
    assert rig.broker.acked == ["100.0", "200.0", "300.0"]


def test_duplicates_are_acked_unapplied() -> None:
    rig = Rig()
    rig.target.checkpoint_row = end(200)
    rig.publish(100, 200, 300)
    svc = rig.run()
    assert rig.target.applied == [300]
    assert sorted(rig.broker.acked) == ["100.0", "200.0", "300.0"]
    assert svc.stats.skipped == 2


def test_a_restarted_applier_continues_from_its_checkpoint() -> None:
    rig = Rig()
    rig.publish(100, 200)
    rig.run()
    rig.publish(300, 400, first_after=end(200))
    rig.run()
    assert rig.target.applied == [100, 200, 300, 400]
    assert rig.broker.connections == 2


# ---------------------------------------------------------------- another applier was active


def test_checkpoint_moved_ahead_applies_nothing_stale() -> None:
    # Another applier applied up to 300 meanwhile: nothing released on the old assumption
    # may be applied (that would write old rows and move the checkpoint back).
    rig = Rig()
    rig.target.before_execute = lambda: setattr(rig.target, "checkpoint_row", end(300))
    rig.publish(100, 200, 300)
    rig.run()
    assert rig.target.applied == []
    assert rig.target.checkpoint_row == end(300)
    # Ordered again from the checkpoint: all three are duplicates.
    assert sorted(rig.broker.acked) == ["100.0", "200.0", "300.0"]


def test_checkpoint_moved_partway_resumes_after_it() -> None:
    rig = Rig()
    moved = iter([end(100)])
    rig.target.before_execute = lambda: setattr(
        rig.target, "checkpoint_row", next(moved, rig.target.checkpoint_row)
    )
    rig.publish(100, 200, 300)
    rig.run()
    assert rig.target.applied == [200, 300]
    assert sorted(rig.broker.acked) == ["100.0", "200.0", "300.0"]
    assert rig.target.checkpoint_row == end(300)


def test_a_waiting_applier_reads_the_checkpoint_a_standby_moved() -> None:
    # 300 waits for 200, which another applier applied meanwhile: a read of the checkpoint
    # (at most once a second while messages wait) lets 300 go.
    rig = Rig()
    rig.target.checkpoint_row = end(100)

    def other_applier(read: int) -> None:
        if read == 2:
            rig.target.checkpoint_row = end(200)

    rig.target.before_read = other_applier
    rig.publish(300, first_after=end(200))
    rig.run()
    assert rig.target.applied == [300]
    assert rig.broker.acked == ["300.0"]


# ---------------------------------------------------------------- faults of the target


def test_transient_fault_in_flight_is_retried() -> None:
    rig = Rig()
    rig.target.transient = 2
    rig.publish(100, 200)
    svc = rig.run()
    assert rig.target.applied == [100, 200]
    assert rig.broker.acked == ["100.0", "200.0"]
    assert svc.readiness() == (False, "not connected (RabbitMQ or MariaDB)")  # stopped


def test_mariadb_away_at_start_is_waited_for() -> None:
    rig = Rig()
    rig.target.unreadable = 2
    rig.publish(100)
    rig.run()
    assert rig.target.applied == [100]


def test_poison_is_parked_and_the_rest_applied_in_order() -> None:
    rig = Rig()
    rig.target.poison = {200}
    rig.publish(100, 200, 300)
    rig.run()
    assert rig.target.applied == [100, 300]
    assert [m.properties.message_id for m, _ in rig.broker.dead] == ["200.0"]
    assert isinstance(rig.broker.dead[0][1], RowRejected)
    assert sorted(rig.broker.acked) == ["100.0", "200.0", "300.0"]
    assert rig.target.checkpoint_row == end(300)


def test_the_checkpoint_steps_over_a_parked_message_before_it_is_acked() -> None:
    rig = Rig()
    rig.target.poison = {200}
    acked_at: list[Position | None] = []
    rig.broker.before_ack = lambda: acked_at.append(rig.target.checkpoint_row)
    rig.publish(100, 200)
    rig.run()
    assert rig.target.applied == [100]
    assert rig.target.checkpoint_row == end(200)
    assert acked_at == [end(100), end(200)]


def test_poison_in_a_batch_of_many_finds_the_culprit() -> None:
    rig = Rig(CDC_TARGET_MAX_BATCH_CHANGES="10")
    rig.target.poison = {200}
    rig.publish(100, 200, 300)
    rig.run()
    assert rig.target.applied == [100, 300]
    assert [m.properties.message_id for m, _ in rig.broker.dead] == ["200.0"]
    assert rig.target.checkpoint_row == end(300)


def test_a_batch_whose_plan_cannot_be_made_fails_as_any_other() -> None:
    # One path: the plan is made, then executed; a plan that cannot be made is the batch's
    # fault, found at once and settled like a row MariaDB refuses.
    rig = Rig(CDC_TARGET_MAX_BATCH_CHANGES="10")
    rig.target.unplannable = {200}
    rig.publish(100, 200, 300)
    rig.run()
    assert rig.target.applied == [100, 300]
    assert 200 not in rig.target.executed
    assert [m.properties.message_id for m, _ in rig.broker.dead] == ["200.0"]
    assert rig.target.checkpoint_row == end(300)


# ---------------------------------------------------------------- messages of several envelopes


def test_a_message_of_several_transactions_is_acked_once_all_are_settled() -> None:
    rig = Rig()
    rig.target.poison = {200}
    rig.broker.publish(together(100, 200, 300), "m")
    rig.run()
    assert rig.target.applied == [100, 300]
    assert rig.broker.acked == ["m"]  # once, after the last of its three
    # Only the transaction that failed is parked, not its neighbours.
    ((parked, _),) = rig.broker.dead
    assert [e.commit_lsn for e in wire.decode_all(parked.body)] == [200]


def test_a_message_of_several_transactions_partly_applied_before_is_trimmed() -> None:
    rig = Rig()
    rig.target.checkpoint_row = end(200)
    rig.broker.publish(together(100, 200, 300), "m")
    rig.broker.queue[0].redelivered = True
    rig.run()
    assert rig.target.applied == [300]
    assert rig.broker.acked == ["m"]


# ---------------------------------------------------------------- what cannot be decoded


def test_an_undecodable_message_waits_for_its_turn_then_is_parked() -> None:
    rig = Rig()
    rig.publish(100)
    rig.broker.publish(b"{not json", "200.0", **headers_of(200, end(100)))
    rig.publish(300, first_after=end(200))
    rig.run()
    assert rig.target.applied == [100, 300]
    ((parked, error),) = rig.broker.dead
    assert parked.body == b"{not json" and isinstance(error, DecodeError)
    assert rig.target.checkpoint_row == end(300)  # stepped over it
    assert rig.broker.acked == ["100.0", "200.0", "300.0"]


def test_an_undecodable_message_that_says_nothing_is_parked_at_once() -> None:
    rig = Rig()
    rig.broker.publish(b"hello", "x")
    rig.publish(100)
    rig.run()
    assert rig.target.applied == [100]
    assert [m.body for m, _ in rig.broker.dead] == [b"hello"]
    assert rig.broker.acked == ["x", "100.0"]


def test_a_replayed_dead_letter_is_applied_without_the_checkpoint() -> None:
    rig = Rig()
    rig.publish(100)
    rig.broker.publish(body(50, None), "50.0", **{REPLAY_HEADER: True})
    rig.run()
    assert rig.target.replayed == [50]
    assert rig.target.checkpoint_row == end(100)
    assert rig.broker.acked == ["100.0", "50.0"]


# ---------------------------------------------------------------- RabbitMQ


def test_a_lost_connection_redelivers_and_the_checkpoint_skips_what_was_applied() -> None:
    rig = Rig()

    def lose_it_once() -> None:
        if not rig.target.executed[1:]:
            rig.broker.lose_connection = True  # found by the next poll, with 100 in flight

    rig.target.before_execute = lose_it_once
    rig.publish(100, 200, 300)
    svc = rig.run()
    assert rig.target.applied == [100, 200, 300]  # each once
    assert rig.broker.connections == 2
    assert sorted(rig.broker.acked) == ["100.0", "200.0", "300.0"]
    assert svc.stats.skipped >= 1  # 100, committed before the connection was lost


def test_rabbitmq_lost_while_a_batch_is_applied_again_ends_the_session() -> None:
    # MariaDB failed 100 once; while 100 is applied again, RabbitMQ goes away: that is not
    # the batch's fault to retry, the session ends and 100 comes back (committed by then).
    rig = Rig()
    rig.target.transient = 1

    def lose_rabbitmq_during_the_retry() -> None:
        if rig.target.executed == [100, 100]:
            rig.broker.lose_connection = True
            assert rig.broker.lost.wait(10)  # the main thread found it while waiting

    rig.target.before_execute = lose_rabbitmq_during_the_retry
    rig.publish(100, 200)
    svc = rig.run()
    assert rig.target.applied == [100, 200]
    assert rig.broker.connections == 2
    assert sorted(rig.broker.acked) == ["100.0", "200.0"]
    assert svc.stats.skipped == 1


def test_a_missing_message_holds_what_follows_and_is_reported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    rig = Rig()
    rig.publish(100)
    rig.publish(300, first_after=end(200))  # 200 never comes
    seen: list[tuple[bool, str]] = []
    with caplog.at_level(logging.ERROR, logger="applier.ordering"):
        svc = rig.service()
        rig.broker.deadline = rig.clock.now + 40
        original = rig.broker.idle

        def stop() -> None:
            seen.append(svc.readiness())
            original()

        rig.broker.idle = stop
        svc.run()
    assert rig.target.applied == [100]
    assert rig.broker.acked == ["100.0"]
    assert seen[0][0] is False and "ordering gap" in seen[0][1]
    assert any("ordering_gap" in r.getMessage() for r in caplog.records)
    assert rig.broker.queue[0].properties.message_id == "300.0"  # back in the queue


def test_a_predecessor_beyond_the_prefetch_window_is_found_by_widening_it() -> None:
    # As after a requeue: 300 and 400 come first and fill the window; 200 is behind them.
    rig = Rig(CDC_BROKER_PREFETCH="2")
    rig.target.checkpoint_row = end(100)
    rig.publish(300, 400, first_after=end(200))
    rig.publish(200, first_after=end(100))
    rig.run()
    assert rig.target.applied == [200, 300, 400]
    assert rig.broker.connections == 2  # reconnected to let the wider window take effect
