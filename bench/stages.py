"""RabbitMQ's own limit, measured with the extractor's publisher: persistent messages, confirms,
the same window of unconfirmed messages, into a scratch durable queue."""

from __future__ import annotations

import time

from pika.adapters.select_connection import IOLoop

from extractor.publisher import Publisher
from shared.config import BrokerConfig
from shared.errors import CdcError
from shared.secret import Secret
from shared.topology import Topology


def publish_with_confirms(
    url: str, name: str, body: bytes, messages: int, window: int = 512
) -> float:
    """Seconds to publish ``messages`` copies of ``body`` and have every one confirmed."""
    ioloop = IOLoop()
    cfg = BrokerConfig(Secret(url), name, name, "classic", window, 1)
    topology = Topology(name, name, name, name + ".dlx", name + ".dead", "classic")
    state = {"sent": 0, "confirmed": 0, "started": 0.0, "took": 0.0}
    failure: list[CdcError] = []

    def pump() -> None:
        while state["sent"] < messages and state["sent"] - state["confirmed"] < window:
            publisher.publish(body, f"m{state['sent']}", {})
            state["sent"] += 1

    def ready() -> None:
        state["started"] = time.monotonic()
        pump()

    def confirm(tag: int, multiple: bool, ack: bool) -> None:
        state["confirmed"] = tag if multiple else state["confirmed"] + 1
        if state["confirmed"] >= messages:
            state["took"] = time.monotonic() - state["started"]
            publisher.close()
            ioloop.stop()
        else:
            pump()

    def fail(e: CdcError) -> None:
        failure.append(e)
        ioloop.stop()

    publisher = Publisher(
        cfg, topology, ioloop, on_ready=ready, on_confirm=confirm, on_failure=fail
    )
    publisher.connect()
    ioloop.start()
    if failure:
        raise failure[0]
    return state["took"]
