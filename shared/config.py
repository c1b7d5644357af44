"""Every setting of both processes, declared once, and the config each command reads.

One YAML file (``--config``) and/or ``CDC_*`` environment variables. A setting is a field
declared with ``setting()`` in the section class that holds it: its YAML path (the section and
the field's name), its variable, its type, its default, its check (shared/parsers.py) and its
row in the documentation's table (README.md or docs/tls.md, written by ``make docs``). Each
command's config (the classes at the end) holds the sections it uses and nothing else; a
section a command uses in part is a class of its own (SlotConfig: all the applier needs of the
source). shared/settings.py says how they are declared, shared/loading.py how they are read; a
bad or missing value is one ConfigError naming the setting, which the CLI turns into one line
and exit code 2.

To add a setting: one ``setting()`` field in the section class that holds it, here or, for
the source, in shared/source_config.py (with a parser in shared/parsers.py if none fits; a
rule between settings, if it needs one, in that section's ``rules``); then ``make docs``
writes its row in the documentation. Every command whose config holds the section has it; a
section a new command needs in part is a new class.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar, TypeVar

from shared import parsers as p
from shared.errors import ConfigError
from shared.loading import Catalog
from shared.secret import Secret, split_urls
from shared.settings import (
    TLS,
    Setting,
    Values,
    client_certificate_needs_its_key,
    flag,
    items,
    pairs,
    section,
    setting,
)

# The source's sections live in shared/source_config.py; named here too, as every section is.
from shared.source_config import SlotConfig as SlotConfig  # noqa: PLC0414
from shared.source_config import SourceConfig as SourceConfig  # noqa: PLC0414
from shared.tables import TableRef

# ---------------------------------------------------------------- rules between settings
# TLS settings that only make sense together: said at start, not found out in production by a
# connection that is silently unencrypted. Each section below names its rules; every command
# checks them all, as it checks every setting given.


def _broker_tls_needs_amqps(v: Values) -> None:
    url = v["broker.url"]
    if url is not None and not all(u.startswith("amqps://") for u in split_urls(url.reveal())):
        for name in ("broker.ca_file", "broker.cert_file", "broker.key_file"):
            if v[name] is not None:
                raise ConfigError(
                    f"{v.label(name)} is set but broker.url is not an amqps:// URL (every "
                    "node's): "
                    "use amqps:// (and the broker's TLS port) for TLS, or unset it"
                )


def _partition_set_within(v: Values) -> None:
    outside = [i for i in v["target.partition_set"] if i >= v["target.partitions"]]
    if outside:
        raise ConfigError(
            f"{v.label('target.partition_set')} names partition {outside[0]} but "
            f"target.partitions is {v['target.partitions']} (partitions 0 .. "
            f"{v['target.partitions'] - 1})"
        )


def _target_tls_needs_ssl(v: Values) -> None:
    if not v["target.ssl"]:
        for name in ("target.ssl_ca", "target.ssl_cert", "target.ssl_key"):
            if v[name] is not None:
                raise ConfigError(
                    f"{v.label(name)} is set but target.ssl is false: "
                    "set target.ssl (CDC_TARGET_SSL) to true, or unset it"
                )


# ---------------------------------------------------------------- sections


def _queue_of(slot: str) -> str:
    return f"cdc.{slot}"


@section(
    "broker",
    rules=[
        client_certificate_needs_its_key("broker.cert_file", "broker.key_file"),
        _broker_tls_needs_amqps,
    ],
)
class BrokerConfig:
    """RabbitMQ: where the extractor publishes and the applier consumes."""

    url: Secret = setting(
        "CDC_BROKER_URL",
        items(p.broker_urls),
        doc="`amqp://` or `amqps://` URL, vhost included (`%2F` is `/`); for a cluster, one "
        "URL per node, comma-separated (YAML: a list): both processes connect to the first "
        "that answers and move to the next when theirs is lost (docs/deployment.md)",
    )
    exchange: str = setting(
        "CDC_BROKER_EXCHANGE", p.exchange_name, default="cdc", doc="durable direct exchange"
    )
    queue: str = setting(
        "CDC_BROKER_QUEUE",
        p.amqp_name,
        default_from=("source.slot", _queue_of),
        shown="`cdc.<slot>`",
        doc="durable queue (single active consumer); dead letters go to `<queue>.dead`",
    )
    queue_type: str = setting(
        "CDC_BROKER_QUEUE_TYPE",
        p.queue_type,
        default="classic",
        doc="`classic` or `quorum` (replicated: the setting for a cluster, "
        "docs/deployment.md), fixed when the queue is first declared",
    )
    delivery_limit: int = setting(
        "CDC_BROKER_DELIVERY_LIMIT",
        p.positive_int,
        default=1000,
        doc="quorum queues: deliveries of one message (every applier reconnect counts one) "
        "after which RabbitMQ moves it to `<queue>.dead` itself; fixed when the queue is "
        "first declared",
    )
    max_inflight: int = setting(
        "CDC_BROKER_MAX_INFLIGHT",
        p.positive_int,
        default=512,
        doc="messages awaiting a RabbitMQ confirm before the extractor stops reading",
    )
    prefetch: int = setting(
        "CDC_BROKER_PREFETCH",
        p.positive_int,
        default=256,
        doc="unacknowledged messages the applier holds; its memory grows with prefetch times "
        "the message size (1,000 changes of wide rows can make a 400 KB message: lower it for "
        "very wide rows)",
    )
    # TLS for amqps:// URLs: None means the system's CA certificates, no client certificate.
    ca_file: str | None = setting(
        "CDC_BROKER_CA_FILE",
        p.ca_file,
        default=None,
        shown="the system's CA certificates",
        doc="PEM file of the CA certificates RabbitMQ's certificate is checked against; "
        "needs an `amqps://` URL",
        page=TLS,
    )
    cert_file: str | None = setting(
        "CDC_BROKER_CERT_FILE",
        p.readable_file,
        default=None,
        doc="client certificate (PEM) for RabbitMQ; needs `broker.key_file` and an `amqps://` URL",
        page=TLS,
    )
    key_file: str | None = setting(
        "CDC_BROKER_KEY_FILE",
        p.readable_file,
        default=None,
        doc="its private key (PEM)",
        page=TLS,
    )

    @property
    def urls(self) -> tuple[Secret, ...]:
        """One URL per node of the broker (one for a single broker), in the order given."""
        return self.split(self.url)

    @staticmethod
    def split(url: Secret) -> tuple[Secret, ...]:
        return tuple(Secret(u) for u in split_urls(url.reveal()))

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.exchange}.dlx"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.queue}.dead"


@section("target")
class NamingConfig:
    """What the target's tables are called: the applier names them, and the extractor checks
    at start that no two captured tables would share one. And into how many partitions the
    changes are split: the extractor routes them, the applier consumes them (both must agree).
    """

    partitions: int = setting(
        "CDC_TARGET_PARTITIONS",
        p.positive_int,
        default=1,
        doc="partitions the changes are split into by key, applied in parallel (README, "
        "Parallel apply); `1`: one queue, one chain, each source transaction atomic; both "
        "processes must have the same value",
    )

    rename: dict[TableRef, str] = setting(
        "CDC_TARGET_RENAME",
        pairs(p.rename),
        default={},
        doc="`schema.table=target_table` pairs, comma-separated (YAML: a mapping)",
    )
    schemas: dict[str, str] = setting(
        "CDC_TARGET_SCHEMAS",
        pairs(p.schemas),
        default={},
        doc="`schema=database` pairs (YAML: a mapping): that source schema's tables go to that "
        "MariaDB database (which must exist; the user needs the same rights there)",
    )


@section(
    "target",
    rules=[
        client_certificate_needs_its_key("target.ssl_cert", "target.ssl_key"),
        _target_tls_needs_ssl,
        _partition_set_within,
    ],
)
class TargetConfig(NamingConfig):
    """MariaDB: where the applier writes and what it names the tables."""

    partition_set: tuple[int, ...] = setting(
        "CDC_TARGET_PARTITION_SET",
        items(p.partition_set),
        default=(),
        shown="all",
        doc="the partitions this applier process consumes, comma-separated (YAML: a list), "
        "when target.partitions > 1: several processes can share the partitions, and a second "
        "process consuming a partition is its standby (README, Parallel apply)",
    )

    @property
    def mine(self) -> tuple[int, ...]:
        """The partitions this applier process consumes."""
        return self.partition_set or tuple(range(self.partitions))

    url: Secret = setting(
        "CDC_TARGET_URL",
        p.target_url,
        doc="`mariadb+mariadbconnector://user:pw@host:3306/db` (an `@`, `/` or `?` in the "
        "user, the password or the database percent-encoded: `%40`, `%2F`, `%3F`; without a "
        "host, the local server's socket: `...@/db?unix_socket=/run/mysqld/mysqld.sock`); "
        "for a Galera cluster, its nodes as `host:port` pairs, comma-separated, in the host "
        "part (`...@10.0.0.1:3306,10.0.0.2:3306,10.0.0.3:3306/db`): the applier uses the "
        "first that answers and moves to the next when it fails (docs/deployment.md)",
    )

    @property
    def urls(self) -> tuple[Secret, ...]:
        """target.url once per host (one for a single server), in the order given."""
        return tuple(Secret(u) for u in p.target_hosts(self.url.reveal()))

    max_batch_changes: int = setting(
        "CDC_TARGET_MAX_BATCH_CHANGES",
        p.positive_int,
        default=10000,
        doc="most changes in one MariaDB transaction",
    )
    bulk_rows: int = setting(
        "CDC_TARGET_BULK_ROWS",
        p.count_or_off,
        default=200,
        doc="a batch's run of at least this many upserts (or deletes by key) of one table goes "
        "through a staging table filled by `LOAD DATA LOCAL INFILE` instead of `executemany` "
        "(needs the server's `local_infile` on, and `CREATE TEMPORARY TABLES`: "
        "docs/performance.md); `0`: never",
    )
    dropped: str = setting(
        "CDC_TARGET_DROPPED",
        p.dropped_mode,
        default="keep",
        doc="`keep` or `drop`: what a column or table dropped in the source (captured by "
        "`sql/ddl-capture.sql`) does to the target (README, Schema changes)",
    )
    ssl: bool = setting(
        "CDC_TARGET_SSL",
        flag(p.boolean),
        default=False,
        doc="`true`: TLS to MariaDB, required, with the server's certificate verified",
        page=TLS,
    )
    ssl_ca: str | None = setting(
        "CDC_TARGET_SSL_CA",
        p.ca_file,
        default=None,
        shown="the system's CA certificates",
        doc="PEM file of the CA certificates MariaDB's certificate is checked against; needs "
        "`target.ssl`",
        page=TLS,
    )
    ssl_cert: str | None = setting(
        "CDC_TARGET_SSL_CERT",
        p.readable_file,
        default=None,
        doc="client certificate (PEM) for MariaDB; needs `target.ssl_key` and `target.ssl`",
        page=TLS,
    )
    ssl_key: str | None = setting(
        "CDC_TARGET_SSL_KEY",
        p.readable_file,
        default=None,
        doc="its private key (PEM)",
        page=TLS,
    )


@section("")
class CommandConfig:
    """What every command has: its logging, and where its settings came from."""

    log_level: str = setting(
        "CDC_LOG_LEVEL", p.log_level, default="INFO", doc="`DEBUG`, `INFO`, `WARNING`, `ERROR`"
    )
    log_format: str = setting(
        "CDC_LOG_FORMAT",
        p.log_format,
        default="text",
        doc="`text` for a terminal, `json` for log collectors (below)",
    )
    origin: str = "environment"  # the YAML file's path, if there is one


@section("")
class ServiceConfig(CommandConfig):
    """What a long-running process adds: its metrics and health endpoint."""

    metrics_port: int | None = setting(
        "CDC_METRICS_PORT",
        p.metrics_port,
        default=None,
        shown="0 (off)",
        doc="port of `/metrics`, `/healthz` and `/readyz` (below); 0 serves nothing",
    )
    metrics_host: str = setting(
        "CDC_METRICS_HOST",
        p.metrics_host,
        default="0.0.0.0",  # noqa: S104 - a container's scraper comes from outside
        doc="address that port listens on: every interface (a container's scraper), or e.g. "
        "`127.0.0.1`",
    )


# ---------------------------------------------------------------- what each command reads
# COMMANDS: the commands that read the class (the README's table of what each one needs).


@section("")
class ExtractorConfig(ServiceConfig):
    COMMANDS: ClassVar[tuple[str, ...]] = ("python -m extractor",)
    source: SourceConfig
    broker: BrokerConfig
    target: NamingConfig  # to refuse two captured tables that would share a target table


@section("")
class StatusConfig(CommandConfig):
    COMMANDS: ClassVar[tuple[str, ...]] = (
        "python -m extractor status",
        "python -m extractor drop-slot",
    )
    source: SourceConfig
    broker: BrokerConfig  # the queues' depths


@section("")
class BackfillConfig(CommandConfig):
    COMMANDS: ClassVar[tuple[str, ...]] = ("python -m extractor backfill",)
    source: SourceConfig


@section("")
class ApplierConfig(ServiceConfig):
    COMMANDS: ClassVar[tuple[str, ...]] = ("python -m applier",)
    source: SlotConfig
    broker: BrokerConfig
    target: TargetConfig


@section("")
class DlqConfig(CommandConfig):
    COMMANDS: ClassVar[tuple[str, ...]] = ("python -m applier dlq",)
    source: SlotConfig
    broker: BrokerConfig


@section("")
class VerifyConfig(CommandConfig):
    COMMANDS: ClassVar[tuple[str, ...]] = ("python -m applier verify",)
    source: SourceConfig
    target: TargetConfig


CATALOG = Catalog(
    ExtractorConfig, StatusConfig, BackfillConfig, ApplierConfig, DlqConfig, VerifyConfig
)
SETTINGS: tuple[Setting, ...] = CATALOG.settings

K = TypeVar("K", bound=CommandConfig)


def load_config(
    kind: type[K], path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> K:
    """One command's settings: the YAML file (if any), overridden by the environment
    (``os.environ`` unless ``environ`` is given), checked."""
    return CATALOG.load(kind, path, environ)
