"""The same transactions sent twice, cut into chunks otherwise the second time (an extractor
session that resumed behind the first, with other chunk limits), all of it scrambled and partly
duplicated, and the applier killed (kill -9) in the middle: each change is applied once, in the
source's order. The applier's order rests on each message's start and end and each change's
identity (shared/envelope.py computes them once): a stale one would skip or repeat a change."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from devstack.system import wait_until
from harness.pipeline import Pipeline, Proc
from harness.workload import TABLES
from shared import wire
from shared.position import Position

TRANSACTIONS = 120


def _session(
    pipeline: Pipeline, chunk: int
) -> tuple[Proc, list[tuple[Any, bytes]], Callable[[], bool]]:
    """An extractor session, the messages taken off its queue, and whether every transaction
    of the workload is among them."""
    extractor = pipeline.start("extractor", CDC_SOURCE_MAX_CHUNK_CHANGES=str(chunk))
    extractor.wait_for("streaming slot=")
    messages: list[tuple[Any, bytes]] = []

    def all_there() -> bool:
        messages.extend(pipeline.drain())
        ends = sum(1 for _, b in messages for e in wire.decode_all(b) if e.last and not e.copy)
        return ends >= TRANSACTIONS

    return extractor, messages, all_there


def _past(pipeline: Pipeline, point: Position) -> bool:
    """Whether the applier's checkpoint is at or past ``point``."""
    at = pipeline.checkpoint()
    return at is not None and at >= point


def test_two_sessions_cut_alike_transactions_otherwise_each_change_applied_once(
    pipeline: Pipeline,
) -> None:
    w = pipeline.workload(31)
    first, messages, all_there = _session(pipeline, 3)
    backup = f"{pipeline.name}_b"
    with pipeline.pg() as conn, conn.cursor() as cur:
        # The slot as it stands before the workload: the second session resumes there.
        cur.execute("SELECT pg_copy_logical_replication_slot(%s, %s)", (pipeline.name, backup))
    w.run(TRANSACTIONS)
    wait_until(all_there, "every transaction in the queue (first session)")
    assert first.stop() == 0
    messages.extend(pipeline.drain())
    with pipeline.pg() as conn, conn.cursor() as cur:
        cur.execute("SELECT pg_drop_replication_slot(%s)", (pipeline.name,))
        cur.execute("SELECT pg_copy_logical_replication_slot(%s, %s)", (backup, pipeline.name))
        cur.execute("SELECT pg_drop_replication_slot(%s)", (backup,))
    second, again, all_there = _session(pipeline, 5)
    wait_until(all_there, "every transaction in the queue (second session)")
    assert second.stop() == 0
    again.extend(pipeline.drain())
    envs = [e for _, b in again for e in wire.decode_all(b)]
    assert any(e.chunk > 0 for e in envs) and any(e.resumed for e in envs)

    rng = random.Random(31)
    both = messages + again
    scrambled = list(both)
    rng.shuffle(scrambled)
    pipeline.republish(scrambled + rng.sample(both, len(both) // 4))
    ends = sorted(e.end for _, b in messages for e in wire.decode_all(b) if e.last)
    applier = pipeline.start(
        "applier", CDC_BROKER_PREFETCH=str(len(both) + 64), CDC_TARGET_MAX_BATCH_CHANGES="5"
    )
    wait_until(lambda: _past(pipeline, ends[len(ends) // 3]), "a third of it applied")
    applier.kill()  # in the middle of a batch, perhaps: what it held comes again
    assert not _past(pipeline, ends[-1]), "all applied before the kill: it tests nothing"
    applier = pipeline.start("applier", CDC_BROKER_PREFETCH=str(len(both) + 64))
    pipeline.wait_converged(TABLES)
    wait_until(lambda: pipeline.queue_depth() == 0, "everything consumed")
    assert "ordering_gap" not in applier.output()
    assert "dead_letter" not in applier.output()
