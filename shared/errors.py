"""One hierarchy for every failure the pipeline knows about.

Transient faults (a connection lost, a deadlock, a broker that is restarting) are retried with
backoff and never stop a process. Permanent faults (a message that can never be decoded, a
setting that is wrong) are not retried: a message goes to the dead-letter queue, a process exits
with one clear line. Driver exceptions are wrapped at the module boundary with ``raise ... from``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.position import Position


class CdcError(Exception):
    """Root of the pipeline's own exceptions."""


class TransientError(CdcError):
    """Worth retrying: the same operation may succeed once a server is back."""


class PermanentError(CdcError):
    """Retrying cannot help; a person or a code change must."""


# Transient faults, by where they come from.
class SourceUnavailable(TransientError):
    """PostgreSQL cannot be reached, or the replication connection was lost."""


class SlotBusy(TransientError):
    """Another process streams from the slot; a standby waits for it to be released."""


class BrokerUnavailable(TransientError):
    """RabbitMQ cannot be reached, closed the connection, or refused a publish."""


class TargetUnavailable(TransientError):
    """MariaDB cannot be reached, or lost the connection."""


class TargetConflict(TransientError):
    """A deadlock or lock wait timeout in MariaDB: the transaction is simply run again."""


# Permanent faults.
class ConfigError(PermanentError):
    """A setting is missing or invalid. The message names the setting."""


class SetupError(PermanentError):
    """A server is not set up for the pipeline (wal_level, plugin, privileges, ...).

    The message says what is wrong and how to fix it.
    """


class DecodeError(PermanentError):
    """A message or a wal2json record that cannot be understood."""


class UnsupportedVersion(DecodeError):
    """An envelope written by a newer (or unknown) version of the extractor."""


class SchemaMismatch(PermanentError):
    """The target table cannot take a change as it is (missing key, wrong type)."""


class TableRefused(SchemaMismatch):
    """The target table would take the change with silent damage to other rows (another
    source table feeds it, a unique index the source lacks): the message is parked."""


class RowRejected(PermanentError):
    """MariaDB refused a value in a change (out of range, invalid, too long)."""


class RowTooLarge(RowRejected):
    """A row larger than MariaDB's max_allowed_packet: it can be sent only once the server's
    limit is raised."""


class CheckpointMoved(CdcError):
    """Not a fault: the checkpoint in MariaDB is not the one a batch was ordered against
    (another applier was active meanwhile); the batch is ordered again from ``actual``."""

    def __init__(self, actual: Position | None) -> None:
        super().__init__(f"checkpoint moved to {actual}")
        self.actual = actual
