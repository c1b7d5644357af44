"""An applier process of several partitions (target.partitions N > 1), against in-memory
MariaDB and RabbitMQ (tests.support.applier_partition_fakes.py): each partition its own chain and
checkpoint row; a barrier applied by partition 0 once every partition arrived, and stepped
past by the others once it is applied; partitions shared between two processes."""

from __future__ import annotations

import threading

import pytest

from applier.barrier_steps import POLL_SECONDS
from devstack.system import wait_until
from shared.errors import SetupError
from shared.position import Position
from tests.support.applier_fakes import Rig
from tests.support.applier_partition_fakes import BARRIER, PartitionedRig, split


def end(lsn: int) -> Position:
    return Position.end_of(lsn)


def test_each_partition_applies_its_own_chain() -> None:
    rig = PartitionedRig(3)
    rig.publish([(100, 0), (200, 1), (300, 2), (400, 1), (500, 1), (600, 0)])
    rig.service().run()
    assert [rig.applied(p) for p in range(3)] == [[100, 600], [200, 400, 500], [300]]
    assert rig.rows == [end(600), end(500), end(300)]
    assert rig.brokers[1].acked == ["200.0@p1", "400.0@p1", "500.0@p1"]
    assert all(b.connections == 1 for b in rig.brokers)


def test_a_barrier_is_applied_after_every_partition_arrived_and_before_what_follows() -> None:
    rig = PartitionedRig(3)
    rig.publish([(100, 1), (200, 2), (300, 0), (400, BARRIER), (500, 1), (600, 2), (700, 0)])
    held = rig.targets[1].gate = threading.Event()
    svc = rig.service()
    running = threading.Thread(target=svc.run, daemon=True)
    running.start()
    # Partition 1's 100 is held in MariaDB: partition 0 must not apply the truncate yet, and
    # partition 2 must not go past it; the loop goes on meanwhile (2 arrived at the barrier).
    wait_until(lambda: rig.rows[2] == end(200), "partition 2 at the barrier", 10, 0.01)
    wait_until(lambda: rig.applied(0) == [300], "partition 0 at the barrier", 10, 0.01)
    assert svc.partitions[0].runner.waiting is not None
    assert 400 not in rig.applied(0) and rig.applied(2) == [200]
    held.set()
    running.join(10)
    assert not running.is_alive()
    log = rig.log
    assert log.index((0, 400)) > max(log.index((1, 100)), log.index((2, 200)), log.index((0, 300)))
    assert log.index((0, 400)) < min(log.index((1, 500)), log.index((2, 600)), log.index((0, 700)))
    assert rig.rows == [end(700), end(500), end(600)]
    # The markers were acked, and the others forgot what they knew of the target.
    assert "400.0@p1" in rig.brokers[1].acked and "400.0@p2" in rig.brokers[2].acked
    assert rig.targets[1].forgotten == rig.targets[2].forgotten == 1
    assert rig.targets[0].forgotten == 0


def test_a_quiet_partition_arrives_at_a_barrier_from_its_resumed_claim() -> None:
    # An extractor session resumed at 0/50: partition 2 saw nothing since, so the barrier is
    # its first message, continuing from the claim "everything before 0/50".
    rig = PartitionedRig(3)
    rig.rows[:] = [end(40), end(30), end(20)]
    rig.publish([(60, 0), (70, 1), (80, BARRIER)], first_after=Position.before(50), resumed=True)
    rig.service().run()
    assert rig.rows == [end(80), end(80), end(80)]
    assert rig.applied(0) == [60, 80] and rig.applied(1) == [70] and rig.applied(2) == []


def test_partitions_shared_between_two_processes() -> None:
    rig = PartitionedRig(4)
    events = [(lsn, lsn // 100 % 4) for lsn in range(100, 1300, 100)]
    events += [(1300, BARRIER)] + [(lsn, lsn // 100 % 4) for lsn in range(1400, 2000, 100)]
    events += [(2000, BARRIER), (2100, 3)]
    rig.publish(events)
    one, other = rig.service([0, 2]), rig.service([1, 3])
    threads = [threading.Thread(target=s.run, daemon=True) for s in (one, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
        assert not t.is_alive()
    assert rig.rows == [end(2000), end(2000), end(2000), end(2100)]
    log = rig.log
    for barrier in (1300, 2000):
        at = log.index((0, barrier))
        assert all(log.index(x) < at for x in log if x[1] < barrier)
        assert all(log.index(x) > at for x in log if x[1] > barrier)


def test_a_barrier_polls_the_rows_at_most_every_poll_interval() -> None:
    rig = PartitionedRig(2)
    rig.publish([(100, 1), (200, BARRIER)])
    rig.brokers[1].queue.clear()  # partition 1 is consumed elsewhere, and never arrives
    svc = rig.service([0], seconds=5)
    svc.run()
    assert rig.applied(0) == []
    # Virtual time: 5 s of waiting, the rows read again and again, at most once per interval.
    assert 20 < rig.targets[0].reads <= 5 / POLL_SECONDS + 3
    assert svc.partitions[0].runner.waiting is not None


def test_a_message_of_another_layout_is_refused() -> None:
    rig = Rig()
    for message_id, body in split(2, [(100, 0)])[0]:
        rig.broker.publish(body, message_id)
    with pytest.raises(SetupError, match=r"partition 0 of 2, but target\.partitions is 1"):
        rig.run()
    assert rig.target.applied == [] and rig.broker.acked == []


def test_a_session_lost_while_waiting_at_a_barrier_decides_it_again() -> None:
    rig = PartitionedRig(2)
    rig.publish([(100, 1), (200, BARRIER), (300, 0), (400, 1)])
    held = rig.targets[1].gate = threading.Event()

    def lose_rabbitmq(read: int) -> None:
        if read == 2:  # partition 0 waits at the barrier, partition 1 is still at 100
            rig.brokers[0].lose_connection = True
            held.set()

    rig.targets[0].before_read = lose_rabbitmq
    rig.service().run()
    assert rig.brokers[0].connections == 2 and rig.brokers[1].connections == 2
    assert rig.applied(0) == [200, 300] and rig.applied(1) == [100, 400]
    assert rig.rows == [end(300), end(400)]
    assert rig.log.index((0, 200)) > rig.log.index((1, 100))
    assert rig.log.index((0, 200)) < rig.log.index((1, 400))


def test_a_batch_planned_in_advance_is_applied_as_planned_when_more_arrive() -> None:
    # 200 is planned while 100 is in flight; 300 arrives after, and would fit in 200's batch:
    # the batch applied must be the one planned (300 in the next), or 300 is acked unapplied.
    rig = PartitionedRig(2, CDC_TARGET_MAX_BATCH_CHANGES="3")
    held = rig.targets[0].gate = threading.Event()
    rig.publish([(100, 0)])
    svc = rig.service()
    running = threading.Thread(target=svc.run, daemon=True)
    running.start()
    wait_until(lambda: rig.targets[0].executed == [100], "100 in flight", 10, 0.01)
    for message_id, body in split(2, [(100, 0), (200, 0)])[0][1:]:
        rig.brokers[0].publish(body, message_id)
    wait_until(lambda: rig.targets[0].prepared[-1:] == [200], "200 planned", 10, 0.01)
    for message_id, body in split(2, [(100, 0), (200, 0), (300, 0)])[0][2:]:
        rig.brokers[0].publish(body, message_id)
    wait_until(lambda: rig.brokers[0].unacked == 3, "300 delivered", 10, 0.01)
    held.set()
    running.join(10)
    assert rig.applied(0) == [100, 200, 300]
    assert rig.rows[0] == end(300)
