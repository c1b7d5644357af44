"""The source's settings: the replication slot (all the applier needs of the source) and the
source database (how to reach it, what to capture, how to stream it).

Declared as every section is (shared/settings.py); the commands' configs that hold them are
in shared/config.py, which names them too (``from shared.config import SourceConfig``).
"""

from __future__ import annotations

from functools import cached_property

from shared import parsers as p
from shared.secret import Secret
from shared.settings import TLS, client_certificate_needs_its_key, items, section, setting
from shared.tables import Pattern, TableFilter


def _publication_of(slot: str) -> str:
    return f"cdc_{slot}"[:63]  # PostgreSQL truncates names to 63 bytes anyway


@section("source")
class SlotConfig:
    """The replication slot: all the applier needs of the source (it names the queue and the
    applier's checkpoints)."""

    slot: str = setting(
        "CDC_SLOT",
        p.slot,
        doc="logical replication slot; created if missing, never dropped; also names the "
        "queue and the applier's checkpoint",
    )


@section(
    "source",
    rules=[client_certificate_needs_its_key("source.sslcert", "source.sslkey")],
)
class SourceConfig(SlotConfig):
    """The source database: how to reach it, what to capture, how to stream it."""

    dsn: Secret = setting(
        "CDC_SOURCE_DSN",
        p.source_dsn,
        doc="libpq URI of the source database; the role needs LOGIN and REPLICATION",
    )
    tables: tuple[Pattern, ...] = setting(
        "CDC_TABLES",
        items(p.table_patterns),
        default=(),
        shown="every table",
        doc="comma-separated `schema.table` list (YAML: a list); a name without schema is in "
        '`public`; unquoted names fold to lower case, `"Quoted"` ones keep their case; `*` '
        "and `?` are wildcards in unquoted names (`sales.*`, `public.order_*`); a partitioned "
        "table is named by its root (its partitions come with it)",
    )
    exclude_tables: tuple[Pattern, ...] = setting(
        "CDC_EXCLUDE_TABLES",
        items(p.table_patterns),
        default=(),
        doc="tables (wildcards allowed) left out even when `tables` includes them",
    )
    exclude_columns: tuple[Pattern, ...] = setting(
        "CDC_EXCLUDE_COLUMNS",
        items(p.column_patterns),
        default=(),
        doc="`schema.table.column` list (wildcards allowed) never carried; key columns always are",
    )
    snapshot: str = setting(
        "CDC_SNAPSHOT",
        p.snapshot_mode,
        default="initial",
        doc="`initial`: copy each captured table once (below); `never`: changes only",
    )
    decoder: str = setting(
        "CDC_SOURCE_DECODER",
        p.decoder,
        default="wal2json",
        doc="output plugin the slot decodes with: `wal2json` or `pgoutput` (built into "
        "PostgreSQL; see [Choosing the decoder](#choosing-the-decoder)); fixed when the slot "
        "is created",
    )
    publication: str = setting(
        "CDC_SOURCE_PUBLICATION",
        p.publication,
        default="",
        shown="`cdc_<slot>`",
        doc="with `pgoutput`: the publication the slot streams; created for the captured "
        "tables when the role may, else it must exist",
    )
    max_chunk_changes: int = setting(
        "CDC_SOURCE_MAX_CHUNK_CHANGES",
        p.positive_int,
        default=1000,
        doc="most changes in one message; larger transactions are split",
    )
    max_chunk_bytes: int = setting(
        "CDC_SOURCE_MAX_CHUNK_BYTES",
        p.positive_int,
        default=4194304,
        doc="most bytes of change data in one message",
    )
    feedback_interval: float = setting(
        "CDC_SOURCE_FEEDBACK_INTERVAL",
        p.positive_float,
        default=1.0,
        doc="seconds between status updates to PostgreSQL (at most a quarter of its "
        "`wal_sender_timeout`)",
    )
    heartbeat_interval: float = setting(
        "CDC_SOURCE_HEARTBEAT_INTERVAL",
        p.seconds_or_off,
        default=10.0,
        shown="10",
        doc="seconds between heartbeats written to the source (`pg_logical_emit_message`); "
        "0 turns them off",
    )
    # TLS: None leaves it to the DSN and libpq; a value here wins over the DSN's.
    sslmode: str | None = setting(
        "CDC_SOURCE_SSLMODE",
        p.sslmode,
        default=None,
        shown="empty: the DSN's `sslmode`, else libpq's default (`prefer`)",
        doc="`disable`, `allow`, `prefer`, `require`, `verify-ca` or `verify-full` "
        "([libpq](https://www.postgresql.org/docs/15/libpq-ssl.html#LIBPQ-SSL-PROTECTION)); "
        "use `verify-full`",
        page=TLS,
    )
    sslrootcert: str | None = setting(
        "CDC_SOURCE_SSLROOTCERT",
        p.sslrootcert,
        default=None,
        shown="empty: the DSN's, else libpq's (`~/.postgresql/root.crt`)",
        doc="PEM file of the CA certificates PostgreSQL's server certificate is checked "
        "against, or `system` for the system's CA certificates (with `verify-full` only)",
        page=TLS,
    )
    sslcert: str | None = setting(
        "CDC_SOURCE_SSLCERT",
        p.readable_file,
        default=None,
        doc="client certificate (PEM) for PostgreSQL; needs `source.sslkey`",
        page=TLS,
    )
    sslkey: str | None = setting(
        "CDC_SOURCE_SSLKEY",
        p.readable_file,
        default=None,
        doc="its private key (PEM); libpq refuses a key file that others can read (use mode 0600)",
        page=TLS,
    )

    @property
    def publication_name(self) -> str:
        """The publication pgoutput streams: the one set, else ``cdc_<slot>``."""
        return self.publication or _publication_of(self.slot)

    @cached_property
    def capture(self) -> TableFilter:
        """Which tables and columns are carried."""
        return TableFilter(self.tables, self.exclude_tables, self.exclude_columns)

    def tls_params(self) -> dict[str, str]:
        """The libpq TLS parameters that were set, to lay over every connection's DSN."""
        given = {
            "sslmode": self.sslmode,
            "sslrootcert": self.sslrootcert,
            "sslcert": self.sslcert,
            "sslkey": self.sslkey,
        }
        return {k: v for k, v in given.items() if v is not None}
