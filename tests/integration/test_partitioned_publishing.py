"""The extractor's split into ``target.partitions`` N = 4 on a real RabbitMQ: its publisher
declares <queue>.p0..p3 and routes each message to its partition's queue; each queue read
back is a chain (each message continues from the one before it there), a truncate in the
middle of a streamed transaction a barrier on all four with the same afters, every change
in exactly one queue, and a start with another layout while these hold messages refused."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from pika.adapters.select_connection import IOLoop

from extractor.confirms import ConfirmTracker
from extractor.decode import Begin
from extractor.layout import refuse_other_layouts
from extractor.metrics import ExtractorMetrics
from extractor.publisher import Publisher
from extractor.routing import PartitionedOutbox, assemblers
from extractor.slot_admin import render, slot_status
from harness.pipeline import Pipeline
from shared.config import ExtractorConfig, StatusConfig, load_config
from shared.envelope import Envelope
from shared.errors import CdcError, ConfigError
from shared.lsn import parse_lsn
from shared.partitioning import partition_of
from shared.position import Position
from shared.topology import topology_for
from shared.wire import decode_all
from tests.support.partition_fakes import check_chain

N = 4
RESUME = Position.before(parse_lsn("0/1000"))


def config(pipeline: Pipeline, partitions: int) -> ExtractorConfig:
    # N > 1 is refused when settings are read until the applier side is built.
    cfg = load_config(ExtractorConfig, environ=pipeline.env)
    return dataclasses.replace(cfg, target=dataclasses.replace(cfg.target, partitions=partitions))


def row(key: int, lsn: int) -> dict[str, Any]:
    return {
        "op": "insert",
        "lsn": f"0/{lsn:X}",
        "schema": "public",
        "table": "t",
        "columns": ["id"],
        "types": ["integer"],
        "values": [key],
        "key": ["id"],
    }


def publish_stream(cfg: ExtractorConfig) -> ConfirmTracker:
    """Three transactions through the real publisher, until RabbitMQ confirmed them all: a
    streamed one of 60 rows with a truncate after the 40th, then two small ones."""
    ioloop = IOLoop()
    topology = topology_for(cfg.broker, cfg.source.slot, N)
    publisher = Publisher(cfg.broker, topology, ioloop)
    tracker = ConfirmTracker(0)
    parts = assemblers(cfg.source.slot, 5, 1 << 20, RESUME, N)
    box = PartitionedOutbox(
        parts, publisher, tracker, ExtractorMetrics(), 1000, max_changes=5, max_bytes=1 << 20
    )
    failures: list[CdcError] = []
    lsn = iter(range(0x2000, 0x10000, 0x10))

    def ready() -> None:
        box.begin(Begin(1, parse_lsn("1/0"), "2026-01-01 00:00:00+00", parse_lsn("1/40")))
        for k in range(60):
            box.add(row(k, next(lsn)), 10)
            if k == 39:
                box.add(
                    {"op": "truncate", "lsn": f"0/{next(lsn):X}", "schema": "public", "table": "t"},
                    10,
                )
        box.commit()
        for i, keys in ((2, range(60, 64)), (3, range(64, 66))):
            box.begin(Begin(i, parse_lsn(f"{i}/0"), "2026-01-01 00:00:00+00", parse_lsn(f"{i}/40")))
            for k in keys:
                box.add(row(k, next(lsn)), 10)
            box.commit()
        box.flush()
        check()

    def confirm(tag: int, multiple: bool, ack: bool) -> None:
        box.confirm(tag, multiple, ack)
        check()

    def check() -> None:
        if tracker.inflight == 0 and tracker.flush_lsn == parse_lsn("3/40"):
            publisher.close()
            closed()

    def closed() -> None:
        if publisher.closed:
            ioloop.stop()
        else:
            ioloop.call_later(0.05, closed)

    def failed(e: CdcError) -> None:
        failures.append(e)
        ioloop.stop()

    publisher.connect(on_ready=ready, on_confirm=confirm, on_failure=failed)
    ioloop.call_later(30, lambda: failed(CdcError("not all confirmed within 30 s")))
    try:
        ioloop.start()
    finally:
        ioloop.close()
    assert not failures, failures
    return tracker


def read_queue(pipeline: Pipeline, queue: str) -> list[Envelope]:
    envs: list[Envelope] = []
    with pipeline.channel() as ch:
        while True:
            method, _props, body = ch.basic_get(queue, auto_ack=False)
            if method is None:
                return envs
            envs.extend(decode_all(body))


def test_four_partition_queues_each_a_chain(pipeline: Pipeline) -> None:
    cfg = config(pipeline, N)
    queues = topology_for(cfg.broker, cfg.source.slot, N).queues
    try:
        publish_stream(cfg)
        depths = [pipeline.queue_depth(q) for q in queues]
        assert all(depths), depths
        status = slot_status(load_config(StatusConfig, environ=pipeline.env))
        assert status.partition_messages == depths  # what `extractor status` shows
        assert "partitions      " in render(dataclasses.replace(status, exists=True))
        # Messages of 4 partitions wait: a start with 1 or 2 partitions is refused, with 4 not.
        refuse_other_layouts(cfg)
        for other in (1, 2):
            with pytest.raises(ConfigError, match=r"another target\.partitions layout"):
                refuse_other_layouts(config(pipeline, other))
        keys: list[int] = []
        afters = set()
        for p, queue in enumerate(queues):
            envs = read_queue(pipeline, queue)
            check_chain(envs, RESUME)
            assert all(e.partition == p and e.partitions == N for e in envs)
            inserts = [c.values[0] for e in envs for c in e.changes if c.op == "insert"]
            assert all(partition_of("public", "t", [k], N) == p for k in inserts)
            keys += inserts
            (barrier,) = [e for e in envs if e.barrier]
            assert barrier.marker == (p != 0) and not barrier.end.complete  # mid-transaction
            afters.add(barrier.afters)
            assert envs[-1].commit_lsn == parse_lsn("3/0") or p not in {
                partition_of("public", "t", [k], N) for k in range(64, 66)
            }
        assert sorted(keys) == list(range(66))
        assert len(afters) == 1  # every copy of the barrier lists the same afters
    finally:
        with pipeline.channel() as ch:
            for queue in queues:
                ch.queue_delete(queue)
