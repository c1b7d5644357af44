"""What an extractor session is made of on the outside, passed to it whole.

PostgreSQL's replication stream and its catalog, RabbitMQ, the heartbeat writer, the copier,
the I/O loop and the clock: each is a small protocol here, so that the session's real loop runs
just as well against in-memory fakes (tests/support/stream_fakes.py). ``connect`` makes the
real ones for one session.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from pika.adapters.select_connection import IOLoop

from extractor.basetypes import TypeResolver, catalog_lookup
from extractor.catalog import CatalogWatch, connect_briefly
from extractor.copying import CopierFactory
from extractor.decode import Decoder, OutputPlugin
from extractor.heartbeat import Heartbeat
from extractor.layout import refuse_other_layouts
from extractor.loop import Loop
from extractor.metrics import ExtractorMetrics
from extractor.partitions import Partitions
from extractor.pgoutput import PLUGIN as PLUGIN_PGOUTPUT
from extractor.pgoutput import PgOutput
from extractor.publisher import Publisher
from extractor.replication import Exported, ReplicationSource
from extractor.snapshot import Copier
from extractor.state import Stored, load_state
from extractor.wal2json import Wal2Json
from shared.config import ExtractorConfig
from shared.errors import CdcError
from shared.tables import TableRef
from shared.topology import topology_for


class Source(Protocol):
    """The slot and its replication stream (replication.py)."""

    resume_lsn: int  # the slot's confirmed position when the session opened it
    created: bool  # this session made the slot
    republished: list[TableRef]  # captured tables the plugin streams from this session on
    wal_sender_timeout: float  # seconds; 0: none

    def open(self, export_snapshot: bool) -> Exported | None: ...

    def start(self, partitioned: bool) -> None: ...

    def decoder(self) -> Decoder: ...

    def fileno(self) -> int: ...

    def read(self) -> Any: ...

    def send_feedback(self, lsn: int) -> None: ...

    def close(self) -> None: ...


class Broker(Protocol):
    """RabbitMQ: publishing with confirms and returns (publisher.py)."""

    closed: bool

    @property
    def where(self) -> str: ...

    def connect(
        self,
        *,
        on_ready: Callable[[], None],
        on_confirm: Callable[[int, bool, bool], None],
        on_failure: Callable[[CdcError], None],
    ) -> None: ...

    def publish(
        self, body: bytes, message_id: str, headers: dict[str, Any], partition: int = 0
    ) -> int: ...

    def publish_state(self, body: bytes) -> int: ...

    def close(self) -> None: ...


class Catalog(Protocol):
    """What the catalog says of the captured tables (catalog.py)."""

    partitions: Partitions
    partitioned: bool  # a captured table is partitioned (known once begun)

    def begin(self) -> list[TableRef]:
        """At the session's start: the captured tables, checked and reported."""
        ...

    def check(self) -> list[TableRef]: ...


class HeartbeatWriter(Protocol):
    """The heartbeat written into the source, and the slot's lag (heartbeat.py)."""

    def beat(self) -> None: ...

    def slot_lag(self) -> int | None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Collaborators:
    loop: Loop
    source: Source
    broker: Broker
    catalog: Catalog
    heartbeat: HeartbeatWriter
    types: TypeResolver
    copier: CopierFactory
    load_state: Callable[[], Stored]  # the tables copied before, their shapes (state.py)
    clock: Callable[[], float] = field(default=time.monotonic)


def connect(cfg: ExtractorConfig, metrics: ExtractorMetrics) -> Collaborators:
    """The real collaborators of one session (nothing is connected before it runs)."""
    loop = IOLoop()
    plugin: OutputPlugin = (
        # Relation messages ask the catalog on the loop: briefly, as the catalog check does.
        PgOutput(cfg.source.publication_name, lambda: connect_briefly(cfg.source))
        if cfg.source.decoder == PLUGIN_PGOUTPUT
        else Wal2Json()
    )
    source = ReplicationSource(cfg.source, plugin)

    def copier(
        tables: list[TableRef], exported: Exported | None, wake: Callable[[], None]
    ) -> Copier:
        return Copier(
            cfg.source,
            tables,
            cfg.source.capture,
            plugin=plugin.name,
            wake=wake,
            snapshot=exported.snapshot if exported else None,
            position=exported.position if exported else 0,
        )

    return Collaborators(
        loop=loop,
        source=source,
        broker=Publisher(
            cfg.broker,
            topology_for(cfg.broker, cfg.source.slot, cfg.target.partitions),
            loop,
        ),
        catalog=CatalogWatch(cfg.source, metrics, plugin),
        heartbeat=Heartbeat(cfg.source),
        types=TypeResolver(catalog_lookup(source.catalog)),
        copier=copier,
        load_state=lambda: _stored(cfg),
    )


def _stored(cfg: ExtractorConfig) -> Stored:
    """What a previous run stored, once the queues are known to be this layout's (nothing is
    published before this)."""
    refuse_other_layouts(cfg)
    return load_state(cfg)
