"""The fakes of applier_fakes.py for an applier of several partitions (``target.partitions``
N > 1): one FakeTarget and one StubBroker per partition, sharing the checkpoint rows, and
streams split into partitions as the extractor publishes them (each partition its own chain;
a barrier in full on partition 0 and as a marker on the others)."""

from __future__ import annotations

import dataclasses
from typing import Any

from applier.collaborators import Collaborators, Lane
from applier.service import ApplierService
from shared import wire
from shared.config import ApplierConfig, load_config
from shared.position import Position
from tests.support.applier_fakes import START_TIME, Clock, FakeTarget, StubBroker, insert

BARRIER = -1  # in a stream: a truncate on every partition


def truncate(lsn: int) -> dict[str, Any]:
    return {"op": "truncate", "lsn": "0/1", "schema": "public", "table": "t"}


def split(
    partitions: int,
    events: list[tuple[int, int]],
    *,
    first_after: Position | None = None,
    resumed: bool = False,
) -> dict[int, list[tuple[str, bytes]]]:
    """(commit LSN, partition or BARRIER) of one-change transactions -> each partition's
    messages (message id, body), each continuing from that partition's last one."""
    tails: list[Position | None] = [first_after] * partitions
    first = [resumed] * partitions
    out: dict[int, list[tuple[str, bytes]]] = {p: [] for p in range(partitions)}
    for lsn, where in events:
        end = Position.end_of(lsn)
        to = range(partitions) if where == BARRIER else [where]
        afters = tuple(tails) if where == BARRIER else None
        for p in to:
            changes = [insert(lsn)] if where != BARRIER else [truncate(lsn)] if p == 0 else []
            body = wire.encode(
                slot="s", xid=lsn, commit_lsn=lsn, commit_time="", copy=False, chunk=0,
                last=True, after=tails[p], resumed=first[p], changes=changes, partition=p,
                partitions=partitions, afters=afters, end=end if afters else None,
            )  # fmt: skip
            out[p].append((f"{lsn}.0@p{p}", body))
            tails[p], first[p] = end, False
    return out


class PartitionedRig:
    """N partitions' fakes; ``service(mine)`` makes an applier process of some of them."""

    def __init__(self, partitions: int, **settings: str) -> None:
        environ = {
            "CDC_SLOT": "s",
            "CDC_BROKER_URL": "amqp://u:p@127.0.0.1:1/%2f",
            "CDC_TARGET_URL": "mariadb+mariadbconnector://u:p@127.0.0.1:1/db",
            "CDC_TARGET_MAX_BATCH_CHANGES": "1",
            **settings,
        }
        cfg = load_config(ApplierConfig, environ=environ)
        self.cfg = dataclasses.replace(
            cfg, target=dataclasses.replace(cfg.target, partitions=partitions)
        )
        self.n = partitions
        self.clock = Clock()
        self.rows: list[Position | None] = [None] * partitions
        self.log: list[tuple[int, int]] = []
        self.targets = [FakeTarget(p, self.rows, self.log) for p in range(partitions)]
        self.brokers = [StubBroker(self.clock, self.cfg.broker.prefetch) for _ in range(partitions)]

    def publish(self, events: list[tuple[int, int]], **kw: Any) -> None:
        for p, messages in split(self.n, events, **kw).items():
            for message_id, body in messages:
                self.brokers[p].publish(body, message_id)

    def service(self, mine: list[int] | None = None, seconds: float = 600.0) -> ApplierService:
        mine = list(range(self.n)) if mine is None else mine
        lanes = tuple(Lane(p, self.targets[p], self.brokers[p]) for p in mine)
        svc = ApplierService(self.cfg, Collaborators(lanes, self.clock))
        deadline = START_TIME + seconds

        def idle() -> None:
            drained = all(not b.queue and not b.unacked for b in (self.brokers[p] for p in mine))
            if drained or self.clock.now > deadline:
                svc.request_stop()

        for p in mine:
            self.brokers[p].idle = idle
            self.brokers[p].deadline = deadline
        return svc

    def applied(self, partition: int) -> list[int]:
        return [lsn for p, lsn in self.log if p == partition]
