"""``python -m applier dlq list|replay``: look at parked messages, and send them back.

Listing does not consume: the messages are taken without ack and returned to the queue in
their order. Replay publishes a message back to the pipeline's exchange (with a confirm, marked
``x-cdc-replay``) and only then removes it from the dead-letter queue; the applier applies a
replayed message as it is, without checking it against its checkpoint (the checkpoint moved
past it when it was parked), so replay after fixing the cause (e.g. a target column type).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

import pika
import pika.exceptions

from applier.consumer import APP_ID, REPLAY_HEADER
from shared.amqp import classify_broker_error, connect_blocking
from shared.config import DlqConfig
from shared.errors import BrokerUnavailable
from shared.topology import Topology, topology_for


@dataclass(frozen=True)
class Parked:
    tag: int
    message_id: str
    error_type: str
    error: str
    failed_at: str
    size: int
    body: bytes
    properties: Any


@contextmanager
def _channel(cfg: DlqConfig) -> Iterator[Any]:
    url = cfg.broker.url
    try:
        conn, node = connect_blocking(cfg.broker, APP_ID + "-dlq")
    except (pika.exceptions.AMQPError, OSError) as e:
        raise classify_broker_error(e, str(url)) from e
    url = cfg.broker.urls[node]  # errors from here on name the node
    try:
        yield conn.channel()
    except (pika.exceptions.AMQPError, OSError) as e:
        raise classify_broker_error(e, str(url)) from e
    finally:
        if conn.is_open:
            conn.close()


def _take_all(ch: Any, topology: Topology, limit: int) -> list[Parked]:
    ch.queue_declare(
        topology.dead_letter_queue, durable=True, arguments=topology.dead_letter_arguments
    )
    parked: list[Parked] = []
    while len(parked) < limit:
        method, props, body = ch.basic_get(topology.dead_letter_queue, auto_ack=False)
        if method is None:
            break
        headers = props.headers or {}
        parked.append(
            Parked(
                tag=method.delivery_tag,
                message_id=str(props.message_id or "-"),
                error_type=str(headers.get("x-cdc-error-type", "-")),
                error=str(headers.get("x-cdc-error", "-")),
                failed_at=str(headers.get("x-cdc-failed-at", "-")),
                size=len(body),
                body=body,
                properties=props,
            )
        )
    return parked


def list_parked(
    cfg: DlqConfig, out: TextIO = sys.stdout, as_json: bool = False, limit: int = 10_000
) -> int:
    topology = topology_for(cfg.broker, cfg.source.slot)
    with _channel(cfg) as ch:
        parked = _take_all(ch, topology, limit)
        if parked:
            # Back where they were, in their order.
            ch.basic_nack(delivery_tag=parked[-1].tag, multiple=True, requeue=True)
    if as_json:
        for p in parked:
            out.write(
                json.dumps(
                    {
                        "message_id": p.message_id,
                        "error_type": p.error_type,
                        "error": p.error,
                        "failed_at": p.failed_at,
                        "bytes": p.size,
                    }
                )
                + "\n"
            )
    else:
        out.write(f"{len(parked)} message(s) in {topology.dead_letter_queue}\n")
        for p in parked:
            out.write(
                f"{p.message_id}  {p.failed_at}  {p.error_type}: {p.error}  ({p.size} bytes)\n"
            )
    return len(parked)


def replay(cfg: DlqConfig, ids: set[str] | None, out: TextIO = sys.stdout) -> int:
    """Send back every parked message (``ids`` None) or those with these message ids."""
    topology = topology_for(cfg.broker, cfg.source.slot)
    sent = 0
    with _channel(cfg) as ch:
        ch.confirm_delivery()
        parked = _take_all(ch, topology, 10_000_000)
        keep = []
        for p in parked:
            if ids is not None and p.message_id not in ids:
                keep.append(p)
                continue
            given = p.properties.headers or {}
            # With target.partitions > 1 it goes back to its partition's queue, which is
            # bound by its own name (shared/topology.py); else by the slot, as it came.
            origin = str(given.get("x-cdc-original-queue") or "")
            route = origin if origin.startswith(f"{topology.queue}.p") else topology.routing_key
            headers = {k: v for k, v in given.items() if not k.startswith("x-cdc-")}
            headers[REPLAY_HEADER] = 1
            props = pika.BasicProperties(
                content_type=p.properties.content_type,
                delivery_mode=pika.DeliveryMode.Persistent,
                message_id=p.properties.message_id,
                type=p.properties.type,
                app_id=APP_ID,
                headers=headers,
            )
            try:
                ch.basic_publish(
                    topology.exchange,
                    route,
                    p.body,
                    properties=props,
                    mandatory=True,
                )
            except pika.exceptions.UnroutableError as e:
                raise BrokerUnavailable(
                    f"no queue is bound to {topology.exchange} by {route}"
                ) from e
            ch.basic_ack(delivery_tag=p.tag)
            sent += 1
            out.write(f"replayed {p.message_id}\n")
        for p in keep:
            ch.basic_nack(delivery_tag=p.tag, requeue=True)
    out.write(f"{sent} message(s) sent back to {topology.queue}\n")
    return sent
