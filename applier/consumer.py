"""The RabbitMQ side of the applier: manual acks, bounded prefetch, dead-lettering.

The queue has a single active consumer, so deliveries come in the order the extractor
published them (source commit order); other appliers wait as standbys. Nothing is acked
before the caller says its MariaDB transaction committed.

With ``target.partitions`` N > 1 there is one of these per partition the process consumes,
each on its own connection and queue (``<queue>.p<i>``). On connecting, each refuses to start
while queues of another layout hold messages, as the extractor does (a mismatch is refused,
never run: ARCHITECTURE.md, "Parallel apply"); a message of another layout that still comes is
refused by applier/intake.py.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import pika
import pika.exceptions

from shared.amqp import classify_broker_error, connect_blocking, nodes_for, queue_depth
from shared.config import BrokerConfig
from shared.errors import BrokerUnavailable, CdcError, ConfigError, PermanentError
from shared.topology import Topology, other_layout

log = logging.getLogger(__name__)

APP_ID = "pg2maria-applier"
REPLAY_HEADER = "x-cdc-replay"
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Delivery:
    tag: int
    body: bytes
    properties: Any
    redelivered: bool

    @property
    def message_id(self) -> str:
        return str(getattr(self.properties, "message_id", None) or "-")

    @property
    def replay(self) -> bool:
        """Sent back from the dead-letter queue by ``applier dlq replay``."""
        headers = getattr(self.properties, "headers", None) or {}
        return bool(headers.get(REPLAY_HEADER))


class Consumer:
    def __init__(self, cfg: BrokerConfig, topology: Topology, partition: int = 0) -> None:
        self._cfg = cfg
        self._topology = topology
        self._queue = topology.queues[partition]
        self._conn: Any = None
        self._node: int | None = None  # which node of broker.url the connection is to
        self._channel: Any = None
        self._dlq_channel: Any = None
        self._pending: list[Delivery] = []
        self._unacked: set[int] = set()
        self.prefetch = cfg.prefetch  # what the current consumer started with
        self._next_prefetch = cfg.prefetch  # what the next one starts with

    @property
    def where(self) -> str:
        if self._node is not None:
            return str(self._cfg.urls[self._node])
        return str(self._cfg.url)

    def _call(self, what: Callable[[], T], declaring: bool = False) -> T:
        """Run a pika call; its exceptions become ours."""
        try:
            return what()
        except BrokerUnavailable:
            self._lost()
            raise
        except CdcError:
            raise
        except (pika.exceptions.AMQPError, OSError) as e:
            failure = classify_broker_error(e, self.where, declaring)
            if isinstance(failure, BrokerUnavailable):
                self._lost()
            raise failure from e

    def _lost(self) -> None:
        """The connection's node failed us: the next connection starts with another node."""
        if self._node is not None:
            nodes_for(self._cfg.url).lost(self._node)

    def connect(self) -> None:
        self._call(self._connect, declaring=True)
        log.info(
            "consuming queue=%s prefetch=%d broker=%s",
            self._queue,
            self.prefetch,
            self.where,
        )

    def _connect(self) -> None:
        t = self._topology
        try:
            self._conn, self._node = connect_blocking(self._cfg, APP_ID)
        except ValueError as e:
            # A certificate that does not verify is a ValueError too, and permanent.
            failure = classify_broker_error(e, self.where)
            if isinstance(failure, PermanentError):
                raise failure from e
            # pika's connection workflow raises this when the peer resets the socket right
            # after accepting it (e.g. a broker that is still starting).
            raise BrokerUnavailable(f"RabbitMQ connection failed ({self.where}): {e}") from e
        self._refuse_other_layout()
        ch = self._conn.channel()
        for method, args in t.declarations():
            getattr(ch, method)(**args)
        self.prefetch = self._next_prefetch
        ch.basic_qos(prefetch_count=self.prefetch)
        ch.basic_consume(self._queue, self._on_message, auto_ack=False)
        self._channel = ch
        dlq = self._conn.channel()
        dlq.confirm_delivery()
        self._dlq_channel = dlq

    def _refuse_other_layout(self) -> None:
        """Before declaring: no queue of another target.partitions layout may hold messages
        (shared/topology.py decides, for both processes alike)."""

        why = other_layout(self._topology, lambda queue: queue_depth(self._conn, queue))
        if why is not None:
            raise ConfigError(why)

    def _on_message(self, _ch: Any, method: Any, properties: Any, body: bytes) -> None:
        self._unacked.add(method.delivery_tag)
        self._pending.append(
            Delivery(method.delivery_tag, body, properties, bool(method.redelivered))
        )

    def poll(self, timeout: float, limit: int) -> list[Delivery]:
        """Wait up to ``timeout`` for deliveries, then take whatever else has already arrived."""

        def run() -> list[Delivery]:
            if not self._pending:
                self._conn.process_data_events(time_limit=timeout)
            while self._pending and len(self._pending) < limit:
                before = len(self._pending)
                self._conn.process_data_events(time_limit=0)
                if len(self._pending) == before:
                    break
            taken, self._pending = self._pending[:limit], self._pending[limit:]
            return taken

        return self._call(run)

    @property
    def unacked(self) -> int:
        return len(self._unacked)

    def widen(self) -> bool:
        """Let RabbitMQ deliver more: every message we may have is held, waiting for one that
        is further back in the queue (after a crash, requeued messages can come back that way).

        RabbitMQ applies a prefetch to a consumer only when the consumer starts (a basic.qos
        after basic.consume changes nothing for it), so the wider window takes effect when the
        caller reconnects: True means it should."""
        wider = min(self.prefetch * 2, self._cfg.prefetch * 4, 65535)
        if wider <= self.prefetch:
            return False
        log.warning(
            "prefetch_widened prefetch=%d held=%d (reconnecting to apply it)",
            wider,
            len(self._unacked),
        )
        self._next_prefetch = wider
        return True

    def narrow(self) -> None:
        """Back to the configured prefetch from the next connection on."""
        self._next_prefetch = self._cfg.prefetch

    def ack(self, tags: list[int]) -> None:
        """Acknowledge these deliveries: one ``multiple`` ack when no other unacked delivery is
        older than the newest of them (a held message must never be acked by accident)."""
        if not tags:
            return
        top = max(tags)
        done = set(tags)
        if all(t in done for t in self._unacked if t <= top):
            self._call(lambda: self._channel.basic_ack(delivery_tag=top, multiple=True))
        else:
            for tag in sorted(done):
                self._call(lambda t=tag: self._channel.basic_ack(delivery_tag=t))  # type: ignore[misc]
        self._unacked -= done

    def queue_depth(self) -> int:
        """Messages ready in the queue (not counting those delivered to us)."""
        q = self._queue
        frame = self._call(
            lambda: self._channel.queue_declare(
                q, durable=True, arguments=self._topology.queue_arguments, passive=True
            )
        )
        return int(frame.method.message_count)

    def sleep(self, seconds: float) -> None:
        """Wait while servicing the connection (heartbeats), e.g. while MariaDB is down."""
        self._call(lambda: self._conn.sleep(seconds))

    def park(self, delivery: Delivery, error: CdcError, body: bytes | None = None) -> None:
        """Copy a message that can never be applied to the dead-letter queue, with the reason
        (``body``: only this part of it, the one envelope of several that failed).

        The copy is confirmed by RabbitMQ before this returns; the caller acks the original
        afterwards (a crash in between parks it twice, never loses it).
        """
        reason = str(error)[:1000]
        headers = dict(getattr(delivery.properties, "headers", None) or {})
        headers.update(
            {
                "x-cdc-error": reason,
                "x-cdc-error-type": type(error).__name__,
                "x-cdc-failed-at": datetime.now(UTC).isoformat(),
                "x-cdc-original-queue": self._queue,
            }
        )
        props = delivery.properties
        properties = pika.BasicProperties(
            content_type=getattr(props, "content_type", None),
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=getattr(props, "message_id", None),
            type=getattr(props, "type", None),
            app_id=APP_ID,
            headers=headers,
        )

        def publish() -> None:
            self._dlq_channel.basic_publish(
                self._topology.dead_letter_exchange,
                self._topology.routing_key,
                delivery.body if body is None else body,
                properties=properties,
                mandatory=True,
            )

        self._call(publish)
        log.error(
            "dead_lettered message_id=%s queue=%s error=%s",
            delivery.message_id,
            self._topology.dead_letter_queue,
            reason,
        )

    def close(self) -> None:
        # Dropped whole before any reconnect: its deliveries go back to the queue (in order,
        # with the single active consumer passed on) before the next connection consumes.
        conn, self._conn = self._conn, None
        self._node = None
        self._pending = []
        self._unacked = set()
        if conn is not None and conn.is_open:
            try:
                conn.close()
            except (pika.exceptions.AMQPError, OSError):
                log.debug("close of the RabbitMQ connection failed", exc_info=True)
