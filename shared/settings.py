"""Every setting: its name in the YAML file, its environment variable, its default, and the
parser that checks it (shared/parsers.py; a ValueError names what is wrong, shared/config.py
adds the setting)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared import parsers as p


@dataclass(frozen=True)
class Setting:
    path: tuple[str, ...]
    env: str
    parse: Callable[[str], Any]
    default: str | None  # None: required
    help: str

    @property
    def name(self) -> str:
        return ".".join(self.path)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        ("source", "dsn"),
        "CDC_SOURCE_DSN",
        p.source_dsn,
        None,
        "libpq URI of the source database; the role needs LOGIN and REPLICATION",
    ),
    Setting(
        ("source", "slot"),
        "CDC_SLOT",
        p.slot,
        None,
        "logical replication slot (created if missing, never dropped)",
    ),
    Setting(
        ("source", "tables"),
        "CDC_TABLES",
        p.include,
        "",
        "comma-separated schema.table list to capture (* and ? wildcards); empty: every table",
    ),
    Setting(
        ("source", "exclude_tables"),
        "CDC_EXCLUDE_TABLES",
        p.exclude,
        "",
        "schema.table list (wildcards allowed) left out even when tables includes them",
    ),
    Setting(
        ("source", "exclude_columns"),
        "CDC_EXCLUDE_COLUMNS",
        p.exclude_columns,
        "",
        "schema.table.column list (wildcards allowed) never carried; key columns always are",
    ),
    Setting(
        ("source", "snapshot"),
        "CDC_SNAPSHOT",
        p.snapshot_mode,
        "initial",
        "initial: copy each captured table once, as of a point of the stream; never: stream only",
    ),
    Setting(
        ("source", "max_chunk_changes"),
        "CDC_SOURCE_MAX_CHUNK_CHANGES",
        p.positive_int,
        "1000",
        "most changes in one message; larger transactions are split into chunks",
    ),
    Setting(
        ("source", "max_chunk_bytes"),
        "CDC_SOURCE_MAX_CHUNK_BYTES",
        p.positive_int,
        "4194304",
        "most bytes of change data in one message",
    ),
    Setting(
        ("source", "feedback_interval"),
        "CDC_SOURCE_FEEDBACK_INTERVAL",
        p.positive_float,
        "1.0",
        "seconds between standby status updates to PostgreSQL",
    ),
    Setting(
        ("source", "heartbeat_interval"),
        "CDC_SOURCE_HEARTBEAT_INTERVAL",
        p.seconds_or_off,
        "10",
        "seconds between heartbeats written to the source (keeps the slot moving); 0: none",
    ),
    Setting(
        ("source", "sslmode"),
        "CDC_SOURCE_SSLMODE",
        p.sslmode,
        "",
        "libpq sslmode of every PostgreSQL connection (verify-full checks certificate and host "
        "name); empty: what the DSN says, else libpq's default (prefer)",
    ),
    Setting(
        ("source", "sslrootcert"),
        "CDC_SOURCE_SSLROOTCERT",
        p.sslrootcert,
        "",
        "PEM file of the CA certificates that PostgreSQL's server certificate is checked "
        "against, or system",
    ),
    Setting(
        ("source", "sslcert"),
        "CDC_SOURCE_SSLCERT",
        p.readable_file,
        "",
        "client certificate (PEM) for PostgreSQL; needs source.sslkey",
    ),
    Setting(
        ("source", "sslkey"),
        "CDC_SOURCE_SSLKEY",
        p.readable_file,
        "",
        "private key of source.sslcert (PEM, mode 0600)",
    ),
    Setting(
        ("broker", "url"),
        "CDC_BROKER_URL",
        p.broker_url,
        None,
        "amqp:// or amqps:// URL of RabbitMQ, vhost included",
    ),
    Setting(
        ("broker", "ca_file"),
        "CDC_BROKER_CA_FILE",
        p.ca_file,
        "",
        "PEM file of the CA certificates for an amqps:// broker.url; empty: the system's",
    ),
    Setting(
        ("broker", "cert_file"),
        "CDC_BROKER_CERT_FILE",
        p.readable_file,
        "",
        "client certificate (PEM) for RabbitMQ; needs broker.key_file",
    ),
    Setting(
        ("broker", "key_file"),
        "CDC_BROKER_KEY_FILE",
        p.readable_file,
        "",
        "private key of broker.cert_file (PEM)",
    ),
    Setting(
        ("broker", "exchange"),
        "CDC_BROKER_EXCHANGE",
        p.exchange_name,
        "cdc",
        "durable direct exchange the extractor publishes to",
    ),
    Setting(
        ("broker", "queue"),
        "CDC_BROKER_QUEUE",
        p.amqp_name,
        "",
        "durable queue the applier consumes; default cdc.<slot>",
    ),
    Setting(
        ("broker", "queue_type"),
        "CDC_BROKER_QUEUE_TYPE",
        p.queue_type,
        "classic",
        "classic or quorum (set when the queue is first declared)",
    ),
    Setting(
        ("broker", "max_inflight"),
        "CDC_BROKER_MAX_INFLIGHT",
        p.positive_int,
        "512",
        "most published messages awaiting a RabbitMQ confirm before the extractor waits",
    ),
    Setting(
        ("broker", "prefetch"),
        "CDC_BROKER_PREFETCH",
        p.positive_int,
        "256",
        "most unacknowledged messages the applier holds",
    ),
    Setting(
        ("target", "url"),
        "CDC_TARGET_URL",
        p.target_url,
        None,
        "SQLAlchemy URL of the target database: mariadb+mariadbconnector://u:pw@h:3306/db",
    ),
    Setting(
        ("target", "ssl"),
        "CDC_TARGET_SSL",
        p.boolean,
        "false",
        "true: TLS to MariaDB, server certificate and host name checked (CA: target.ssl_ca, "
        "else the system's)",
    ),
    Setting(
        ("target", "ssl_ca"),
        "CDC_TARGET_SSL_CA",
        p.ca_file,
        "",
        "PEM file of the CA certificates that MariaDB's server certificate is checked against",
    ),
    Setting(
        ("target", "ssl_cert"),
        "CDC_TARGET_SSL_CERT",
        p.readable_file,
        "",
        "client certificate (PEM) for MariaDB; needs target.ssl_key",
    ),
    Setting(
        ("target", "ssl_key"),
        "CDC_TARGET_SSL_KEY",
        p.readable_file,
        "",
        "private key of target.ssl_cert (PEM)",
    ),
    Setting(
        ("target", "max_batch_changes"),
        "CDC_TARGET_MAX_BATCH_CHANGES",
        p.positive_int,
        "10000",
        "most changes applied in one MariaDB transaction",
    ),
    Setting(
        ("target", "rename"),
        "CDC_TARGET_RENAME",
        p.rename,
        "",
        "schema.table=target_table pairs, comma-separated: other target table names",
    ),
    Setting(
        ("target", "schemas"),
        "CDC_TARGET_SCHEMAS",
        p.schemas,
        "",
        "schema=database pairs: tables of that source schema go to that MariaDB database",
    ),
    Setting(
        ("target", "dropped"),
        "CDC_TARGET_DROPPED",
        p.dropped_mode,
        "keep",
        "keep or drop: what a column or table dropped in the source (captured by "
        "sql/ddl-capture.sql) does to the target",
    ),
    Setting(("log_level",), "CDC_LOG_LEVEL", p.log_level, "INFO", "DEBUG, INFO, WARNING or ERROR"),
    Setting(
        ("log_format",),
        "CDC_LOG_FORMAT",
        p.log_format,
        "text",
        "text (for a terminal) or json (one object per line: event name and fields)",
    ),
    Setting(
        ("metrics_port",),
        "CDC_METRICS_PORT",
        p.metrics_port,
        "0",
        "port for metrics and health checks; 0 disables them",
    ),
    Setting(
        ("metrics_host",),
        "CDC_METRICS_HOST",
        p.metrics_host,
        "0.0.0.0",  # noqa: S104 - a container's scraper comes from outside
        "address the metrics endpoint listens on (0.0.0.0: every interface)",
    ),
)
