"""What the extractor must remember between runs: which tables it has copied, and what each
captured table looked like in the stream (shapes.py).

Kept in RabbitMQ, beside the pipeline's queue, as the single message of a durable queue that
holds at most one (``x-max-length`` 1, the older one dropped). Losing it costs a copy again,
never data: a table copied twice is still exact (each copy starts with a truncate); a table
whose shape is forgotten is compared from its next change on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pika
import pika.exceptions

from extractor.shapes import Shape
from shared.amqp import classify_broker_error, connect_blocking
from shared.config import ExtractorConfig
from shared.tables import TableRef
from shared.topology import topology_for

STATE_VERSION = 2


@dataclass
class Stored:
    copied: set[TableRef] = field(default_factory=set)
    shapes: dict[TableRef, Shape] = field(default_factory=dict)


def load_state(cfg: ExtractorConfig) -> Stored:
    """What a previous run stored (nothing if nothing is stored)."""
    topology = topology_for(cfg.broker, cfg.source.slot)
    url = cfg.broker.url
    try:
        conn, node = connect_blocking(cfg.broker, "pg2maria-extractor-state")
    except (pika.exceptions.AMQPError, OSError, ValueError) as e:
        raise classify_broker_error(e, str(url)) from e
    url = cfg.broker.urls[node]  # errors from here on name the node
    try:
        ch = conn.channel()
        ch.queue_declare(topology.state_queue, durable=True, arguments=topology.state_arguments)
        method, _props, body = ch.basic_get(topology.state_queue, auto_ack=False)
        if method is None:
            return Stored()
        ch.basic_nack(method.delivery_tag, requeue=True)
    except (pika.exceptions.AMQPError, OSError) as e:
        raise classify_broker_error(e, str(url), declaring=True) from e
    finally:
        if conn.is_open:
            conn.close()
    return decode_state(body)


def decode_state(body: bytes) -> Stored:
    """Version 1 held the copied tables only."""
    try:
        doc: Any = json.loads(body)
        copied = {TableRef(s, t) for s, t in doc.get("copied", [])}
    except (ValueError, TypeError, AttributeError):
        return Stored()  # unreadable: copy again rather than guess
    try:
        shapes = dict(Shape.from_json(d) for d in doc.get("shapes", []))
    except (ValueError, TypeError, KeyError, AttributeError):
        shapes = {}  # compared from their next change on
    return Stored(copied, shapes)


def encode_state(copied: set[TableRef], shapes: list[dict[str, Any]] | None = None) -> bytes:
    return json.dumps(
        {
            "v": STATE_VERSION,
            "copied": sorted([t.schema, t.table] for t in copied),
            "shapes": shapes or [],
        }
    ).encode()
