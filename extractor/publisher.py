"""The RabbitMQ side of the extractor: an asynchronous publisher with publisher confirms.

It runs on pika's SelectConnection I/O loop, which the whole extractor shares, so many messages
can be on the wire while their confirms come back in batches (``multiple=True``), and pika's
heartbeats are serviced even while the extractor waits on PostgreSQL.

Every message is persistent and published with ``mandatory=True`` to a durable exchange bound
to a durable queue: RabbitMQ confirms it only once the queue has it on disk, and returns it
(which fails the session) if nothing would route it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import pika
import pika.exceptions
from pika.adapters.select_connection import IOLoop, SelectConnection

from shared.amqp import classify_broker_error, connection_parameters, nodes_for
from shared.config import BrokerConfig
from shared.envelope import CONTENT_TYPE, MESSAGE_TYPE
from shared.errors import BrokerUnavailable, CdcError, PermanentError
from shared.topology import Topology

log = logging.getLogger(__name__)

APP_ID = "pg2maria-extractor"


def _unset(*_args: object) -> None:
    raise AssertionError("Publisher.connect was not called")


class Publisher:
    """Declares the topology, then publishes; reports confirms and failures by callback."""

    def __init__(
        self,
        cfg: BrokerConfig,
        topology: Topology,
        ioloop: IOLoop,
    ) -> None:
        self._cfg = cfg
        self._topology = topology
        self._ioloop = ioloop
        self._on_ready: Callable[[], None] = _unset
        self._on_confirm: Callable[[int, bool, bool], None] = _unset
        self._on_failure: Callable[[CdcError], None] = _unset
        self._connection: Any = None
        self._channel: Any = None
        self._seq = 0
        self._closing = False
        self._declaring = True
        self._nodes = nodes_for(cfg.url)
        self._untried: list[int] = []  # nodes of broker.url still to try in this session
        self._node: int | None = None  # the node of the connection being opened or open
        self.closed = False

    @property
    def where(self) -> str:
        if self._node is not None:
            return str(self._cfg.urls[self._node])
        return str(self._cfg.url)

    def connect(
        self,
        *,
        on_ready: Callable[[], None],
        on_confirm: Callable[[int, bool, bool], None],
        on_failure: Callable[[CdcError], None],
    ) -> None:
        """Connect and declare the topology, then ``on_ready``; each confirm goes to
        ``on_confirm`` (delivery tag, multiple, ack), a lost connection or a returned message
        to ``on_failure``."""
        self._on_ready = on_ready
        self._on_confirm = on_confirm
        self._on_failure = on_failure
        self._untried = self._nodes.order()
        self._open_next()

    def _open_next(self) -> None:
        """Open a connection to the next node of broker.url not yet tried in this session."""
        self._node = self._untried.pop(0)
        self._connection = SelectConnection(
            parameters=connection_parameters(self._cfg, APP_ID, self._node),
            on_open_callback=self._on_connection_open,
            on_open_error_callback=self._on_connection_error,
            on_close_callback=self._on_connection_closed,
            custom_ioloop=self._ioloop,
        )

    # ------------------------------------------------------------ set-up chain

    def _on_connection_open(self, connection: Any) -> None:
        if self._node is not None:
            self._nodes.worked(self._node)
        connection.add_on_connection_blocked_callback(self._on_blocked)
        connection.add_on_connection_unblocked_callback(self._on_unblocked)
        connection.channel(on_open_callback=self._on_channel_open)

    def _on_connection_error(self, _connection: Any, exc: BaseException) -> None:
        failure = classify_broker_error(exc, self.where)
        if self._untried and not self._closing and not isinstance(failure, PermanentError):
            # A cluster's node that does not answer: the next one may.
            log.warning("broker_node_unreachable node=%s error=%s", self.where, failure)
            self._open_next()
            return
        self.closed = True
        self._on_failure(failure)

    def _on_connection_closed(self, _connection: Any, exc: BaseException) -> None:
        self.closed = True
        if not self._closing:
            self._lost()
            self._on_failure(classify_broker_error(exc, self.where))

    def _lost(self) -> None:
        """This node failed us: the next session starts with another one."""
        if self._node is not None:
            self._nodes.lost(self._node)

    def _on_blocked(self, _connection: Any, frame: Any) -> None:
        log.warning("broker_blocked reason=%s", getattr(frame.method, "reason", "?"))

    def _on_unblocked(self, _connection: Any, _frame: Any) -> None:
        log.info("broker_unblocked")

    def _on_channel_open(self, channel: Any) -> None:
        self._channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_return_callback(self._on_returned)
        t = self._topology
        calls = [
            functools.partial(getattr(channel, method), **args)
            for method, args in t.declarations(with_state=True)
        ]
        calls.append(
            functools.partial(channel.confirm_delivery, ack_nack_callback=self._on_ack_nack)
        )

        def run(index: int) -> None:
            if index == len(calls):
                log.info(
                    "broker_ready exchange=%s queues=%s broker=%s",
                    t.exchange,
                    ",".join(t.queues),
                    self.where,
                )
                self._declaring = False
                self._on_ready()
                return
            calls[index](callback=lambda _frame: run(index + 1))

        run(0)

    def _on_channel_closed(self, _channel: Any, exc: BaseException) -> None:
        if self._closing:
            return
        failure = classify_broker_error(exc, self.where, self._declaring)
        if isinstance(failure, BrokerUnavailable):
            self._lost()
        self._on_failure(failure)
        if self._connection is not None and self._connection.is_open:
            self._connection.close()

    # ------------------------------------------------------------ publishing

    def publish(
        self, body: bytes, message_id: str, headers: dict[str, Any], partition: int = 0
    ) -> int:
        """Hand a message to pika; returns its delivery tag for the confirm that will follow.
        ``partition``: whose queue it goes to (with ``target.partitions`` N > 1)."""
        if self._channel is None or not self._channel.is_open:
            raise BrokerUnavailable("publish on a closed channel")
        properties = pika.BasicProperties(
            content_type=CONTENT_TYPE,
            delivery_mode=pika.DeliveryMode.Persistent,
            message_id=message_id,
            type=MESSAGE_TYPE,
            app_id=APP_ID,
            headers=headers,
        )
        self._channel.basic_publish(
            self._topology.exchange,
            self._topology.route(partition),
            body,
            properties=properties,
            mandatory=True,
        )
        self._seq += 1
        return self._seq

    def publish_state(self, body: bytes) -> int:
        """Store the extractor's state (replacing the previous one); returns its delivery tag."""
        if self._channel is None or not self._channel.is_open:
            raise BrokerUnavailable("publish on a closed channel")
        self._channel.basic_publish(
            "",
            self._topology.state_queue,
            body,
            properties=pika.BasicProperties(
                content_type=CONTENT_TYPE,
                delivery_mode=pika.DeliveryMode.Persistent,
                app_id=APP_ID,
            ),
            mandatory=True,
        )
        self._seq += 1
        return self._seq

    def _on_ack_nack(self, frame: Any) -> None:
        method = frame.method
        ack = isinstance(method, pika.spec.Basic.Ack)
        self._on_confirm(method.delivery_tag, bool(method.multiple), ack)

    def _on_returned(self, _channel: Any, method: Any, properties: Any, _body: bytes) -> None:
        # The confirm for a returned message is a positive ack: without this the slot would
        # move past a message that reached no queue.
        self._on_failure(
            BrokerUnavailable(
                f"RabbitMQ returned message {properties.message_id} as unroutable "
                f"({method.reply_code} {method.reply_text}): are queues "
                f"{','.join(self._topology.queues)} bound?"
            )
        )

    # ------------------------------------------------------------ closing

    def close(self) -> None:
        self._closing = True
        conn = self._connection
        if conn is not None and not (conn.is_closed or conn.is_closing):
            conn.close()
        elif conn is None or conn.is_closed:
            self.closed = True
