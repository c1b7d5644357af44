"""The applier's loop with the target and the broker replaced by fakes: what is applied, in
which order, against which checkpoint, and when each message is acked."""

from __future__ import annotations

import threading

import pytest

from applier.apply import BatchResult, CheckpointMoved, Prepared
from applier.consumer import Delivery
from applier.inflight import InFlight
from applier.plan import Plan
from applier.service import ApplierService
from devstack.system import wait_until
from shared import envelope
from shared.config import ApplierConfig, load_config
from shared.envelope import Change, Envelope
from shared.errors import CdcError, RowRejected, TargetUnavailable
from shared.position import Position


def env(lsn: int, prev: int) -> Envelope:
    return Envelope(
        slot="s", xid=lsn, commit_lsn=lsn, commit_time="", copy=False, chunk=0, last=True,
        after=Position.end_of(prev) if prev else None, resumed=False,
        changes=[Change("insert", "0/1", "public", "t", ["id"], ["integer"], [lsn], ["id"], None)],
    )  # fmt: skip


class FakeTarget:
    """Applier's contract: all or nothing, refused if the checkpoint is not ``expect``."""

    def __init__(self) -> None:
        self.checkpoint_row: Position | None = None
        self.applied: list[int] = []
        self.poison: set[int] = set()
        self.transient = 0
        self.gate: threading.Event | None = None
        self.prepared: list[int] = []
        self.executed = 0
        self.prepare_fails = False

    def apply(
        self, batch: list[Envelope], expect: Position | None, *, replay: bool = False
    ) -> BatchResult:
        if self.gate is not None:
            assert self.gate.wait(10)
        if self.checkpoint_row != expect:
            raise CheckpointMoved(self.checkpoint_row)
        if self.transient:
            self.transient -= 1
            raise TargetUnavailable("MariaDB went away")
        if any(e.xid in self.poison for e in batch):
            raise RowRejected("a row MariaDB refuses")
        self.applied += [e.commit_lsn for e in batch]
        self.checkpoint_row = batch[-1].end
        return BatchResult(applied=len(batch), checkpoint=self.checkpoint_row)

    def prepare(self, batch: list[Envelope]) -> Prepared:
        self.prepared += [e.commit_lsn for e in batch]
        if self.prepare_fails:
            raise ValueError("a value no converter takes")
        return Prepared(batch, {}, Plan([], {}))

    def execute(
        self, prepared: Prepared, expect: Position | None, *, replay: bool = False
    ) -> BatchResult:
        self.executed += len(prepared.batch)
        return self.apply(prepared.batch, expect, replay=replay)

    def skip(self, e: Envelope, expect: Position | None) -> None:
        if self.checkpoint_row != expect:
            raise CheckpointMoved(self.checkpoint_row)
        self.checkpoint_row = e.end

    def checkpoint(self) -> Position | None:
        return self.checkpoint_row


class FakeBroker:
    prefetch = 256
    unacked = 0

    def __init__(self) -> None:
        self.acked: list[int] = []
        self.parked: list[int] = []
        self.parked_bodies: list[bytes | None] = []

    def narrow(self) -> None:
        pass

    def widen(self) -> bool:
        return False

    def ack(self, tags: list[int]) -> None:
        self.acked += tags

    def park(self, d: Delivery, _error: CdcError, body: bytes | None = None) -> None:
        self.parked.append(d.tag)
        self.parked_bodies.append(body)

    def sleep(self, _seconds: float) -> None:
        pass


@pytest.fixture
def service() -> ApplierService:
    cfg = load_config(
        ApplierConfig,
        environ={
            "CDC_SLOT": "s",
            "CDC_BROKER_URL": "amqp://u:p@127.0.0.1:1/%2f",
            "CDC_TARGET_URL": "mariadb+mariadbconnector://u:p@127.0.0.1:1/db",
            # One message per batch: every batch boundary is exercised.
            "CDC_TARGET_MAX_BATCH_CHANGES": "1",
        },
    )
    svc = ApplierService(cfg)
    target, broker = FakeTarget(), FakeBroker()
    svc._applier = target  # type: ignore[assignment]
    svc._inflight = InFlight(target)  # type: ignore[arg-type]
    svc._consumer = broker  # type: ignore[assignment]
    return svc


def fakes(svc: ApplierService) -> tuple[FakeTarget, FakeBroker]:
    return svc._applier, svc._consumer  # type: ignore[return-value]


def hold(svc: ApplierService, *lsns: int) -> None:
    prev = 0
    for tag, lsn in enumerate(lsns, start=1):
        svc._sequencer.add(env(lsn, prev), Delivery(tag, b"", None, False))
        prev = lsn


def settle(svc: ApplierService) -> None:
    svc._release()
    assert svc._finish([])


def test_batches_apply_in_order_and_are_acked_after_their_commit(
    service: ApplierService,
) -> None:
    target, broker = fakes(service)
    hold(service, 100, 200, 300)
    service._release()
    # The last batch is still in flight: applied or not, it is not acked yet.
    assert broker.acked == [1, 2]
    assert service._inflight.busy
    assert service._finish([])
    assert target.applied == [100, 200, 300]
    assert broker.acked == [1, 2, 3]
    assert target.checkpoint_row == Position.end_of(300)


def test_no_ack_while_the_batch_is_in_flight(service: ApplierService) -> None:
    target, broker = fakes(service)
    target.gate = threading.Event()
    hold(service, 100)
    service._release()
    assert service._inflight.busy
    assert broker.acked == []
    target.gate.set()
    assert service._finish([])
    assert broker.acked == [1]


def test_checkpoint_moved_ahead_applies_nothing_stale(service: ApplierService) -> None:
    # Another applier applied up to 300 meanwhile: nothing released on the old assumption
    # may be applied (that would write old rows and move the checkpoint back).
    target, broker = fakes(service)
    target.checkpoint_row = Position.end_of(300)
    hold(service, 100, 200, 300)
    settle(service)
    assert target.applied == []
    assert target.checkpoint_row == Position.end_of(300)
    settle(service)  # ordered again from the checkpoint: all three are duplicates
    assert sorted(broker.acked) == [1, 2, 3]
    assert target.applied == []


def test_checkpoint_moved_partway_resumes_after_it(service: ApplierService) -> None:
    target, broker = fakes(service)
    target.checkpoint_row = Position.end_of(100)
    hold(service, 100, 200, 300)
    settle(service)
    settle(service)
    assert target.applied == [200, 300]
    assert sorted(broker.acked) == [1, 2, 3]
    assert target.checkpoint_row == Position.end_of(300)


def test_poison_is_parked_and_the_rest_applied_in_order(service: ApplierService) -> None:
    target, broker = fakes(service)
    target.poison = {200}
    hold(service, 100, 200, 300)
    settle(service)
    assert target.applied == [100, 300]
    assert broker.parked == [2]
    assert sorted(broker.acked) == [1, 2, 3]
    assert target.checkpoint_row == Position.end_of(300)


def test_poison_in_a_batch_of_many_finds_the_culprit(service: ApplierService) -> None:
    service._budget = 10
    target, broker = fakes(service)
    target.poison = {200}
    hold(service, 100, 200, 300)
    settle(service)
    assert target.applied == [100, 300]
    assert broker.parked == [2]
    assert target.checkpoint_row == Position.end_of(300)


def test_transient_fault_in_flight_is_retried_here(service: ApplierService) -> None:
    target, broker = fakes(service)
    target.transient = 2
    hold(service, 100, 200)
    settle(service)
    assert target.applied == [100, 200]
    assert broker.acked == [1, 2]
    assert service._trouble is None


def test_next_batch_is_prepared_while_one_is_in_flight(service: ApplierService) -> None:
    target, broker = fakes(service)
    target.gate = threading.Event()
    hold(service, 100)
    service._release()
    service._sequencer.add(env(200, 100), Delivery(2, b"", None, False))
    releasing = threading.Thread(target=service._release)
    releasing.start()
    # 200 is prepared at once, though 100 is still being applied (and unacked).
    wait_until(lambda: target.prepared == [100, 200], "200 prepared", timeout=10, interval=0.01)
    assert broker.acked == []
    target.gate.set()
    releasing.join(10)
    assert service._finish([])
    assert target.applied == [100, 200]
    assert target.executed == 2
    assert broker.acked == [1, 2]


def test_a_plan_that_cannot_be_made_is_left_to_the_apply_thread(service: ApplierService) -> None:
    target, broker = fakes(service)
    target.prepare_fails = True
    hold(service, 100, 200)
    settle(service)
    assert target.applied == [100, 200]
    assert target.executed == 0
    assert broker.acked == [1, 2]


def body_of(*lsns: int) -> bytes:
    """Small transactions batched in one message, as the extractor publishes them."""
    bodies, prev = [], 0
    for lsn in lsns:
        e = env(lsn, prev)
        change = {
            "op": "insert", "lsn": "0/1", "schema": "public", "table": "t", "columns": ["id"],
            "types": ["integer"], "values": [lsn], "key": ["id"],
        }  # fmt: skip
        bodies.append(
            envelope.encode(
                slot="s",
                xid=lsn,
                commit_lsn=lsn,
                commit_time="",
                copy=False,
                chunk=0,
                last=True,
                after=e.after,
                resumed=False,
                changes=[change],
            )
        )
        prev = lsn
    return b"[" + b",".join(bodies) + b"]"


def test_a_message_of_several_transactions_is_acked_once_all_are_settled(
    service: ApplierService,
) -> None:
    target, broker = fakes(service)
    target.poison = {200}
    service._accept(Delivery(7, body_of(100, 200, 300), None, False))
    settle(service)
    assert target.applied == [100, 300]
    assert broker.acked == [7]  # once, after the last of its three
    # Only the transaction that failed is parked, not its neighbours.
    assert broker.parked == [7]
    (parked,) = broker.parked_bodies
    assert parked is not None and [e.commit_lsn for e in envelope.decode_all(parked)] == [200]


def test_a_message_of_several_transactions_partly_applied_before_is_trimmed(
    service: ApplierService,
) -> None:
    target, broker = fakes(service)
    target.checkpoint_row = Position.end_of(200)
    service._checkpoint = target.checkpoint_row
    service._sequencer.clear(target.checkpoint_row)
    service._accept(Delivery(9, body_of(100, 200, 300), None, True))
    settle(service)
    assert target.applied == [300]
    assert broker.acked == [9]
