"""``python -m extractor status`` and ``python -m extractor drop-slot``: the slot seen from the
outside, without starting to stream.

The lag shown is what PostgreSQL keeps for the pipeline: the WAL between the server's current
position and the slot's confirmed flush position (the extractor confirms only what RabbitMQ
has). The queue depths say how much RabbitMQ holds for the applier: with ``target.partitions``
N > 1, each partition's queue ``<queue>.p<i>`` that exists (found by name, whatever N the
settings say: draining the pipeline before N changes means all of them at 0).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import pika
import pika.exceptions
import psycopg2
import psycopg2.extensions

from shared.amqp import connect_blocking, queue_depth
from shared.config import StatusConfig
from shared.errors import SetupError
from shared.postgres import connect
from shared.topology import partition_queue, topology_for

log = logging.getLogger(__name__)


@dataclass
class SlotStatus:
    slot: str
    exists: bool
    plugin: str | None = None
    database: str | None = None
    active: bool = False
    active_pid: int | None = None
    confirmed_flush_lsn: str | None = None
    restart_lsn: str | None = None
    current_wal_lsn: str | None = None
    lag_bytes: int | None = None  # current WAL minus confirmed flush
    retained_bytes: int | None = None  # current WAL minus restart_lsn: what PostgreSQL keeps
    wal_status: str | None = None
    queue: str | None = None
    queue_messages: int | None = None
    dead_letter_queue: str | None = None
    dead_letter_messages: int | None = None
    # Each partition queue's messages, <queue>.p0 upwards while they exist (empty: none).
    partition_messages: list[int] = field(default_factory=list)
    broker_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def slot_status(cfg: StatusConfig) -> SlotStatus:
    status = SlotStatus(cfg.source.slot, exists=False)
    conn = connect(cfg.source)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT plugin, database, active, active_pid, confirmed_flush_lsn::text,"
                " restart_lsn::text, pg_current_wal_lsn()::text,"
                " pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint,"
                " pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, wal_status"
                " FROM pg_replication_slots WHERE slot_name = %s",
                (cfg.source.slot,),
            )
            row = cur.fetchone()
    except psycopg2.Error as e:
        raise SetupError(f"PostgreSQL: cannot read pg_replication_slots: {e}") from e
    finally:
        conn.close()
    if row is not None:
        status.exists = True
        (
            status.plugin,
            status.database,
            status.active,
            status.active_pid,
            status.confirmed_flush_lsn,
            status.restart_lsn,
            status.current_wal_lsn,
            status.lag_bytes,
            status.retained_bytes,
            status.wal_status,
        ) = row
    _queue_depths(cfg, status)
    return status


def _queue_depths(cfg: StatusConfig, status: SlotStatus) -> None:
    """Messages waiting in RabbitMQ; a broker that cannot be reached is shown, not fatal."""
    topology = topology_for(cfg.broker, cfg.source.slot)
    status.queue, status.dead_letter_queue = topology.queue, topology.dead_letter_queue
    try:
        conn, _node = connect_blocking(cfg.broker, "pg2maria-extractor-status")
    except (pika.exceptions.AMQPError, OSError, ValueError) as e:
        status.broker_error = f"cannot reach RabbitMQ ({cfg.broker.url}): {type(e).__name__}"
        return
    try:
        queues = (
            (topology.queue, "queue_messages"),
            (topology.dead_letter_queue, "dead_letter_messages"),
        )
        for name, attr in queues:
            setattr(status, attr, queue_depth(conn, name))
        for i in itertools.count():
            depth = queue_depth(conn, partition_queue(topology.queue, i))
            if depth is None:
                break
            status.partition_messages.append(depth)
    except (pika.exceptions.AMQPError, OSError) as e:
        status.broker_error = f"RabbitMQ: {type(e).__name__}: {e}"
    finally:
        if conn.is_open:
            conn.close()


def render(status: SlotStatus) -> str:
    if not status.exists:
        return f"slot {status.slot}: does not exist (the extractor creates it when it first starts)"
    active = f"yes (walsender pid {status.active_pid})" if status.active else "no"
    lines = [
        f"slot            {status.slot} (plugin {status.plugin}, database {status.database})",
        f"active          {active}",
        f"confirmed flush {status.confirmed_flush_lsn}   server WAL {status.current_wal_lsn}",
        f"lag             {_bytes(status.lag_bytes)} of WAL not yet confirmed by the pipeline",
        f"retained WAL    {_bytes(status.retained_bytes)} kept by PostgreSQL for this slot"
        f" (wal_status {status.wal_status})",
    ]
    if status.broker_error:
        lines.append(f"queue           {status.broker_error}")
    else:
        lines.append(f"queue           {status.queue}: {_count(status.queue_messages)}")
        parts = status.partition_messages
        if parts:
            each = ", ".join(f"{n:,}" for n in parts)
            lines.append(
                f"partitions      {status.queue}.p0..p{len(parts) - 1}: "
                f"{sum(parts):,} messages waiting ({each})"
            )
        lines.append(
            f"dead letters    {status.dead_letter_queue}: {_count(status.dead_letter_messages)}"
        )
    return "\n".join(lines)


def _bytes(n: int | None) -> str:
    if n is None:
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n:,} bytes ({n / size:.1f} {unit})"
    return f"{n:,} bytes"


def _count(n: int | None) -> str:
    return "not declared yet" if n is None else f"{n:,} messages waiting"


def drop_slot(cfg: StatusConfig, confirm: Callable[[SlotStatus], bool]) -> bool:
    """Drop the slot if ``confirm`` says so; False if it was not dropped. Refuses while a
    walsender holds the slot: stop the extractor first."""
    status = slot_status(cfg)
    if not status.exists:
        raise SetupError(f"slot {cfg.source.slot} does not exist")
    if status.active:
        raise SetupError(
            f"slot {cfg.source.slot} is in use (walsender pid {status.active_pid}): "
            "stop the extractor first"
        )
    if not confirm(status):
        return False
    conn = connect(cfg.source)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_drop_replication_slot(%s)", (cfg.source.slot,))
    except psycopg2.Error as e:
        raise SetupError(f"PostgreSQL refused to drop slot {cfg.source.slot}: {e}") from e
    finally:
        conn.close()
    log.warning(
        "slot_dropped slot=%s confirmed_flush_lsn=%s", status.slot, status.confirmed_flush_lsn
    )
    return True
