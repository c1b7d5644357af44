"""The applier's prefetch window: RabbitMQ applies a prefetch only to a consumer as it starts,
so a wider window is for the next connection, and widening is measured from the window the
current consumer really has."""

from __future__ import annotations

from applier.consumer import Consumer
from shared.config import ApplierConfig, load_config
from shared.topology import topology_for
from tests.support.settings import full_env


def consumer(prefetch: int) -> Consumer:
    cfg = load_config(ApplierConfig, environ=full_env(CDC_BROKER_PREFETCH=str(prefetch)))
    return Consumer(cfg.broker, topology_for(cfg.broker, cfg.source.slot))


def started(c: Consumer) -> None:
    """What connecting does to the window, without a broker."""
    c.prefetch = c._next_prefetch


def test_widening_doubles_for_the_next_connection_up_to_four_times() -> None:
    c = consumer(8)
    assert c.widen() is True and c.prefetch == 8  # the running consumer keeps its window
    started(c)
    assert c.prefetch == 16
    assert c.widen() is True
    started(c)
    assert c.prefetch == 32
    assert c.widen() is False  # four times the setting is the most


def test_narrowing_does_not_hide_the_window_the_consumer_has() -> None:
    c = consumer(8)
    c.widen()
    started(c)
    c.narrow()  # nothing held for a moment: back to 8, but only from the next connection on
    assert c.prefetch == 16
    assert c.widen() is True  # measured from 16: asks for 32, not 16 again (no reconnect loop)
    started(c)
    assert c.prefetch == 32
