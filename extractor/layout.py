"""At every session's start, before anything is published: the queues must not hold messages
of another ``target.partitions`` layout (shared/topology.py ``other_layout`` decides; a key's
partition changes with N, so mixing layouts would break per-key order). Refused with one line,
exit 2."""

from __future__ import annotations

import pika
import pika.exceptions

from shared.amqp import classify_broker_error, connect_blocking, queue_depth
from shared.config import ExtractorConfig
from shared.errors import ConfigError
from shared.topology import other_layout, topology_for


def refuse_other_layouts(cfg: ExtractorConfig) -> None:
    topology = topology_for(cfg.broker, cfg.source.slot, cfg.target.partitions)
    try:
        conn, node = connect_blocking(cfg.broker, "pg2maria-extractor-layout")
    except (pika.exceptions.AMQPError, OSError, ValueError) as e:
        raise classify_broker_error(e, str(cfg.broker.url)) from e
    url = cfg.broker.urls[node]

    try:
        why = other_layout(topology, lambda queue: queue_depth(conn, queue))
    except (pika.exceptions.AMQPError, OSError) as e:
        raise classify_broker_error(e, str(url), declaring=True) from e
    finally:
        if conn.is_open:
            conn.close()
    if why is not None:
        raise ConfigError(why)
