"""The one owner of the applier's checkpoint, against an in-memory MariaDB
(tests/support/applier_fakes.py): what it holds, when it reads MariaDB again, and what a
dead letter does to it."""

from __future__ import annotations

import threading

import pytest

from applier.checkpoint_keeper import CheckpointKeeper
from shared import wire
from shared.errors import BrokerUnavailable
from shared.position import Position
from tests.support.applier_fakes import Clock, FakeTarget, body


def end(lsn: int) -> Position:
    return Position.end_of(lsn)


def keeper_on(target: FakeTarget) -> tuple[CheckpointKeeper, Clock]:
    clock = Clock()
    return CheckpointKeeper(target, threading.Event(), clock.advance, clock), clock


def test_it_starts_from_what_mariadb_holds_and_releases_past_it() -> None:
    target = FakeTarget()
    target.checkpoint_row = end(100)
    keeper, _ = keeper_on(target)
    keeper.load()
    assert keeper.committed == keeper.released == end(100)
    released = [(wire.decode(body(lsn, None)), None) for lsn in (200, 300)]
    keeper.release(released)
    assert keeper.released == end(300)
    assert keeper.committed == end(100)  # nothing committed yet
    keeper.commit(end(200))
    assert (keeper.committed, keeper.released) == (end(200), end(300))


def test_a_moved_checkpoint_is_where_both_start_again() -> None:
    keeper, _ = keeper_on(FakeTarget())
    keeper.release([(wire.decode(body(300, None)), None)])
    keeper.moved(end(500))
    assert keeper.committed == keeper.released == end(500)


def test_mariadb_is_read_again_at_most_once_a_second() -> None:
    target = FakeTarget()
    target.checkpoint_row = end(100)
    keeper, clock = keeper_on(target)
    keeper.load()
    target.checkpoint_row = end(200)  # a standby that was active moved it
    assert keeper.refresh()
    assert keeper.committed == keeper.released == end(200)
    target.checkpoint_row = end(300)
    assert not keeper.refresh()  # too soon
    clock.advance(1.0)
    assert keeper.refresh()
    assert keeper.committed == end(300)
    clock.advance(1.0)
    assert not keeper.refresh()  # read, and the same


def test_a_dead_letter_is_stepped_over_in_mariadb() -> None:
    target = FakeTarget()
    target.checkpoint_row = end(100)
    keeper, _ = keeper_on(target)
    keeper.load()
    keeper.step_over(wire.decode(body(200, end(100))))
    assert target.checkpoint_row == keeper.committed == end(200)


def test_stepping_over_a_checkpoint_another_applier_moved_ends_the_session() -> None:
    target = FakeTarget()
    keeper, _ = keeper_on(target)
    keeper.load()
    target.checkpoint_row = end(300)
    with pytest.raises(BrokerUnavailable, match="checkpoint moved under us"):
        keeper.step_over(wire.decode(body(200, None)))
    assert target.checkpoint_row == end(300)
