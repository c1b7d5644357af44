from __future__ import annotations

import pytest

from extractor.confirms import ConfirmTracker
from shared.errors import BrokerUnavailable

START = 0x1000
A, B, C, D = 0x2000, 0x3000, 0x4000, 0x5000


def test_starts_at_the_start_lsn() -> None:
    tracker = ConfirmTracker(START)
    assert tracker.flush_lsn == START
    assert tracker.inflight == 0


def test_one_message_transaction() -> None:
    tracker = ConfirmTracker(START)
    tracker.published(1, A, ends_txn=True)
    assert tracker.flush_lsn == START
    assert tracker.inflight == 1
    tracker.acked(1, multiple=False)
    assert tracker.flush_lsn == A
    assert tracker.inflight == 0


def test_out_of_order_single_acks() -> None:
    tracker = ConfirmTracker(START)
    tracker.published(1, A, ends_txn=True)
    tracker.published(2, B, ends_txn=True)
    tracker.published(3, C, ends_txn=True)
    tracker.acked(3, multiple=False)
    assert tracker.flush_lsn == START
    tracker.acked(2, multiple=False)
    assert tracker.flush_lsn == START
    assert tracker.inflight == 1
    tracker.acked(1, multiple=False)
    assert tracker.flush_lsn == C
    assert tracker.inflight == 0


def test_gap_holds_back_later_confirms() -> None:
    tracker = ConfirmTracker(START)
    for seq, lsn in enumerate((A, B, C), start=1):
        tracker.published(seq, lsn, ends_txn=True)
    tracker.acked(1, multiple=False)
    tracker.acked(3, multiple=False)
    assert tracker.flush_lsn == A
    tracker.acked(2, multiple=False)
    assert tracker.flush_lsn == C


def test_multiple_ack_confirms_everything_up_to_the_tag() -> None:
    tracker = ConfirmTracker(START)
    for seq, lsn in enumerate((A, B, C, D), start=1):
        tracker.published(seq, lsn, ends_txn=True)
    tracker.acked(3, multiple=True)
    assert tracker.flush_lsn == C
    assert tracker.inflight == 1
    tracker.acked(4, multiple=True)
    assert tracker.flush_lsn == D
    assert tracker.inflight == 0


def test_multiple_ack_after_single_acks() -> None:
    tracker = ConfirmTracker(START)
    for seq, lsn in enumerate((A, B, C), start=1):
        tracker.published(seq, lsn, ends_txn=True)
    tracker.acked(2, multiple=False)
    tracker.acked(3, multiple=True)
    assert tracker.flush_lsn == C
    assert tracker.inflight == 0


def test_duplicate_ack_is_harmless() -> None:
    tracker = ConfirmTracker(START)
    tracker.published(1, A, ends_txn=True)
    tracker.published(2, B, ends_txn=True)
    tracker.acked(1, multiple=False)
    tracker.acked(1, multiple=False)
    tracker.acked(1, multiple=True)
    assert tracker.flush_lsn == A
    assert tracker.inflight == 1


def test_transaction_in_three_chunks_advances_only_after_all_three() -> None:
    tracker = ConfirmTracker(START)
    tracker.published(1, A, ends_txn=False)
    tracker.published(2, A, ends_txn=False)
    tracker.published(3, A, ends_txn=True)
    tracker.acked(1, multiple=False)
    assert tracker.flush_lsn == START
    tracker.acked(2, multiple=False)
    assert tracker.flush_lsn == START
    tracker.acked(3, multiple=False)
    assert tracker.flush_lsn == A


def test_three_chunks_last_acked_first() -> None:
    tracker = ConfirmTracker(START)
    tracker.published(1, A, ends_txn=False)
    tracker.published(2, A, ends_txn=False)
    tracker.published(3, A, ends_txn=True)
    tracker.acked(3, multiple=False)
    tracker.acked(1, multiple=False)
    assert tracker.flush_lsn == START
    tracker.acked(2, multiple=False)
    assert tracker.flush_lsn == A


def test_acked_chunks_of_an_unfinished_transaction_do_not_advance() -> None:
    tracker = ConfirmTracker(START)
    tracker.published(1, A, ends_txn=True)
    tracker.published(2, B, ends_txn=False)
    tracker.published(3, B, ends_txn=False)
    tracker.acked(3, multiple=True)
    # B's last chunk has not even been published yet
    assert tracker.flush_lsn == A
    tracker.published(4, B, ends_txn=True)
    tracker.acked(4, multiple=False)
    assert tracker.flush_lsn == B


def test_nothing_to_publish_with_nothing_pending_advances_at_once() -> None:
    tracker = ConfirmTracker(START)
    tracker.nothing_to_publish(A)
    assert tracker.flush_lsn == A
    assert tracker.inflight == 0


def test_nothing_to_publish_waits_for_earlier_messages() -> None:
    tracker = ConfirmTracker(START)
    tracker.published(1, A, ends_txn=True)
    tracker.nothing_to_publish(B)
    assert tracker.flush_lsn == START
    assert tracker.inflight == 1
    tracker.acked(1, multiple=False)
    assert tracker.flush_lsn == B


def test_nothing_to_publish_between_messages() -> None:
    tracker = ConfirmTracker(START)
    tracker.published(1, A, ends_txn=True)
    tracker.nothing_to_publish(B)
    tracker.published(2, C, ends_txn=True)
    tracker.nothing_to_publish(D)
    tracker.acked(2, multiple=False)
    assert tracker.flush_lsn == START
    tracker.acked(1, multiple=False)
    assert tracker.flush_lsn == D


def test_nothing_to_publish_inside_a_multiple_ack() -> None:
    tracker = ConfirmTracker(START)
    tracker.published(1, A, ends_txn=True)
    tracker.nothing_to_publish(B)
    tracker.published(2, C, ends_txn=True)
    tracker.acked(1, multiple=True)
    assert tracker.flush_lsn == B
    tracker.acked(2, multiple=True)
    assert tracker.flush_lsn == C


def test_flush_lsn_never_goes_back() -> None:
    tracker = ConfirmTracker(B)
    tracker.published(1, A, ends_txn=True)
    tracker.acked(1, multiple=False)
    assert tracker.flush_lsn == B
    tracker.nothing_to_publish(A)
    assert tracker.flush_lsn == B


def test_inflight_counts_unconfirmed_messages() -> None:
    tracker = ConfirmTracker(START)
    for seq in range(1, 6):
        tracker.published(seq, A + seq, ends_txn=True)
    assert tracker.inflight == 5
    tracker.acked(5, multiple=False)
    assert tracker.inflight == 4
    tracker.acked(3, multiple=True)
    assert tracker.inflight == 1
    tracker.nothing_to_publish(D)
    assert tracker.inflight == 1
    tracker.acked(4, multiple=False)
    assert tracker.inflight == 0
    assert tracker.flush_lsn == D


def test_nack_raises() -> None:
    tracker = ConfirmTracker(START)
    tracker.published(1, A, ends_txn=True)
    with pytest.raises(BrokerUnavailable, match="delivery tag 1"):
        tracker.nacked(1)
    assert tracker.flush_lsn == START


def test_delivery_tags_must_increase() -> None:
    tracker = ConfirmTracker(START)
    tracker.published(5, A, ends_txn=True)
    with pytest.raises(ValueError, match="delivery tag"):
        tracker.published(5, B, ends_txn=True)
    with pytest.raises(ValueError, match="delivery tag"):
        tracker.published(3, B, ends_txn=True)


def test_messages_behind_a_hold_are_confirmed_while_the_hold_keeps_the_flush_lsn() -> None:
    """A backfill's copy is published after its request's hold, and the hold is released once
    the copy is confirmed: that must be knowable while the hold is still there."""
    tracker = ConfirmTracker(START)
    tracker.published(1, A, ends_txn=True)
    hold = tracker.hold()
    tracker.nothing_to_publish(B)  # the request's transaction
    tracker.published(2, C, ends_txn=False)  # the copy
    tracker.published(3, C, ends_txn=True)
    tracker.acked(1, multiple=False)
    tracker.acked(3, multiple=False)
    assert not tracker.confirmed(2) and not tracker.confirmed(3)
    tracker.acked(2, multiple=False)
    assert tracker.confirmed(1) and tracker.confirmed(3)
    assert tracker.flush_lsn == A
    tracker.release(hold)
    assert tracker.flush_lsn == C


def test_confirmed_means_this_message_and_all_published_before_it() -> None:
    tracker = ConfirmTracker(START)
    for seq, lsn in enumerate((A, B, C), start=1):
        tracker.published(seq, lsn, ends_txn=True)
    tracker.acked(2, multiple=False)
    assert not tracker.confirmed(2)
    tracker.acked(1, multiple=False)
    assert tracker.confirmed(2) and not tracker.confirmed(3)
    assert tracker.confirmed(0)  # nothing published
