"""The PostgreSQL side of the extractor: checks, the slot, and the replication stream.

psycopg2 exceptions stop here: callers see SourceUnavailable / SlotBusy (transient) or
SetupError (permanent, with the fix in the message).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.errorcodes
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras

from extractor.decode import Decoder, OutputPlugin
from extractor.encoding import SourceCodec, source_codec
from shared.config import SourceConfig
from shared.errors import SetupError, SlotBusy, SourceUnavailable
from shared.lsn import format_lsn, parse_lsn
from shared.postgres import (
    captured_tables,
    classify_connect_error,
    connect,
    connect_kwargs,
    first_line,
)
from shared.tables import TableRef

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Exported:
    """A new slot's consistent point and the snapshot that shows the data as of it."""

    position: int
    snapshot: str


@dataclass(frozen=True)
class SlotInfo:
    plugin: str
    database: str
    confirmed_flush_lsn: int
    active: bool


class ReplicationSource:
    """One replication session: preflight, slot, START_REPLICATION, read and feedback."""

    def __init__(self, cfg: SourceConfig, plugin: OutputPlugin) -> None:
        self._cfg = cfg
        self._plugin = plugin
        self._conn: Any = None
        self._cursor: Any = None
        self.resume_lsn = 0
        self.created = False  # this session made the slot
        self.wal_sender_timeout = 0.0
        self.codec: SourceCodec | None = None
        # Captured tables the plugin was not streaming before this session (to be copied).
        self.republished: list[TableRef] = []

    # ------------------------------------------------------------------ set-up

    def open(self, export_snapshot: bool) -> Exported | None:
        """Check the server and make sure the slot exists (not streaming yet: see start).

        If the slot had to be created and ``export_snapshot`` is set, it is created with an
        exported snapshot, returned: valid until start() is called.
        """
        dsn = self._cfg.dsn.reveal()
        slot = self._preflight(dsn)
        exported = None
        try:
            self._conn = psycopg2.connect(
                connection_factory=psycopg2.extras.LogicalReplicationConnection,
                **connect_kwargs(self._cfg),
            )
            self._cursor = self._conn.cursor()
            if slot is None:
                exported = self._create_slot(export_snapshot)
                slot = self._slot_info()
                if slot is None:
                    raise SourceUnavailable(f"slot {self._cfg.slot} vanished right after creation")
            self.resume_lsn = slot.confirmed_flush_lsn
        except psycopg2.Error as e:
            self.close()
            raise self._classify(e, dsn) from e
        except BaseException:
            self.close()
            raise
        return exported

    def start(self, partitioned: bool) -> None:
        """START_REPLICATION from the slot's confirmed position. ``partitioned``: a captured
        table is partitioned (see OutputPlugin.start_options)."""
        try:
            options = self._start(partitioned)
        except psycopg2.Error as e:
            self.close()
            raise self._classify(e, self._cfg.dsn.reveal()) from e
        log.info(
            "streaming slot=%s from_lsn=%s tables=%s %s",
            self._cfg.slot,
            format_lsn(self.resume_lsn),
            self._cfg.capture,
            self._plugin.started(options),
        )

    def decoder(self) -> Decoder:
        """A decoder for what this session streams (after open: it knows the encoding)."""
        return self._plugin.decoder(self.codec)

    def _preflight(self, dsn: str) -> SlotInfo | None:
        conn = connect(self._cfg)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT current_setting('wal_level'),"
                    " (SELECT rolreplication OR rolsuper FROM pg_roles"
                    "  WHERE rolname = current_user),"
                    " current_user, current_database(),"
                    " (SELECT setting::float FROM pg_settings WHERE name = 'wal_sender_timeout')"
                )
                wal_level, can_replicate, user, database, sender_timeout = cur.fetchone()
            # wal2json writes in the database's encoding: refused here if not convertible.
            self.codec = source_codec(conn, database)
        except psycopg2.Error as e:
            raise self._classify(e, dsn) from e
        finally:
            conn.close()
        # In milliseconds; 0 disables the timeout.
        self.wal_sender_timeout = (sender_timeout or 0) / 1000
        if wal_level != "logical":
            raise SetupError(
                f"PostgreSQL wal_level is {wal_level!r}, logical decoding needs 'logical': "
                "set wal_level = logical in postgresql.conf and restart PostgreSQL"
            )
        if not can_replicate:
            raise SetupError(
                f"role {user!r} lacks the REPLICATION attribute: "
                f"run ALTER ROLE {user} REPLICATION as a superuser"
            )
        slot = self._slot_info()
        if slot is not None:
            if slot.plugin != self._plugin.name:
                raise SetupError(
                    f"slot {self._cfg.slot} uses the plugin {slot.plugin!r}, "
                    f"not {self._plugin.name} (source.decoder): set source.decoder to "
                    f"{slot.plugin}, or choose another slot name (CDC_SLOT), or drop the slot "
                    "to switch (python -m extractor drop-slot; every table is copied again)"
                )
            if slot.database != database:
                raise SetupError(
                    f"slot {self._cfg.slot} belongs to database {slot.database!r}, "
                    f"not {database!r}: choose another slot name (CDC_SLOT)"
                )
        self._publish(dsn)
        return slot

    def _publish(self, dsn: str) -> None:
        """What the plugin needs in the database before the slot is made or streamed
        (pgoutput reads its publication as of each change)."""
        conn = connect(self._cfg)
        try:
            tables = captured_tables(conn, self._cfg.capture)
            self.republished = self._plugin.publish(conn, tables, at_start=True)
        except psycopg2.Error as e:
            raise self._classify(e, dsn) from e
        finally:
            conn.close()

    def _slot_info(self) -> SlotInfo | None:
        conn = connect(self._cfg)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT plugin, database, confirmed_flush_lsn::text, active"
                    " FROM pg_replication_slots WHERE slot_name = %s AND slot_type = 'logical'",
                    (self._cfg.slot,),
                )
                row = cur.fetchone()
        except psycopg2.Error as e:
            raise SourceUnavailable(f"cannot read pg_replication_slots: {e}") from e
        finally:
            conn.close()
        if row is None:
            return None
        plugin, database, flush, active = row
        return SlotInfo(plugin, database, parse_lsn(flush) if flush else 0, bool(active))

    def _create_slot(self, export_snapshot: bool) -> Exported | None:
        # The name passed the settings check ([a-z0-9_]), so double quotes make it safe.
        mode = "EXPORT_SNAPSHOT" if export_snapshot else "NOEXPORT_SNAPSHOT"
        try:
            self._cursor.execute(
                f'CREATE_REPLICATION_SLOT "{self._cfg.slot}" LOGICAL {self._plugin.name} {mode}'
            )
            row = self._cursor.fetchone()
        except psycopg2.errors.DuplicateObject:
            return None  # another extractor created it between our check and now
        self.created = True
        position = parse_lsn(row[1])
        log.info(
            "slot_created slot=%s plugin=%s position=%s",
            self._cfg.slot,
            self._plugin.name,
            format_lsn(position),
        )
        return Exported(position, str(row[2])) if export_snapshot and row[2] else None

    def catalog(self) -> Any:
        """A plain connection to the source database (the caller closes it)."""
        return connect(self._cfg)

    def _start(self, partitioned: bool) -> dict[str, str]:
        options = self._plugin.start_options(self._cfg.capture, partitioned)
        try:
            self._start_with(options)
        except psycopg2.errors.InvalidParameterValue as e:
            fallback = self._plugin.fallback_options(options, str(e))
            if fallback is None:
                raise
            options = fallback
            self._start_with(options)
        return options

    def _start_with(self, options: dict[str, str]) -> None:
        self._cursor.start_replication(
            slot_name=self._cfg.slot,
            options=options,
            decode=False,
            status_interval=self._cfg.feedback_interval,
        )

    def _classify(self, e: psycopg2.Error, dsn: str) -> Exception:
        text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        code = e.pgcode
        if code == psycopg2.errorcodes.OBJECT_IN_USE:
            return SlotBusy(f"slot {self._cfg.slot} is in use by another process: {text}")
        if code == psycopg2.errorcodes.UNDEFINED_FILE or "could not access file" in text:
            return SetupError(
                f"the {self._plugin.name} output plugin is not installed on the PostgreSQL "
                f"server ({text}): install postgresql-15-wal2json (or your version's package), "
                "or use source.decoder=pgoutput (built in)"
            )
        if "may not be used as an output plugin" in text:
            # PostgreSQL 15.19+ only loads the output plugins its administrator allows.
            return SetupError(
                f"PostgreSQL does not allow {self._plugin.name} as an output plugin: add it to "
                "output_plugin_libraries in postgresql.conf (e.g. output_plugin_libraries = "
                "'pgoutput, wal2json') and reload PostgreSQL, or use source.decoder=pgoutput "
                "(always allowed)"
            )
        if code == psycopg2.errorcodes.UNDEFINED_OBJECT and "publication" in text:
            # pgoutput reads its publication as of each change: one made after the slot is
            # unknown to the changes before it.
            return SetupError(
                f"PostgreSQL: {text}: the publication must exist before the slot is made; "
                f"drop the slot (python -m extractor drop-slot) and start again"
            )
        if code in (
            psycopg2.errorcodes.INSUFFICIENT_PRIVILEGE,
            psycopg2.errorcodes.INVALID_PARAMETER_VALUE,
        ):
            return SetupError(f"PostgreSQL: {text}")
        if code == psycopg2.errorcodes.CONFIGURATION_LIMIT_EXCEEDED:
            return SetupError(
                f"PostgreSQL: {text}: raise max_replication_slots / max_wal_senders "
                "or drop an unused slot"
            )
        if code is None and isinstance(e, psycopg2.OperationalError):
            return classify_connect_error(e, dsn)
        return SourceUnavailable(f"replication failed: {text}")

    # ------------------------------------------------------------------ streaming

    def fileno(self) -> int:
        return int(self._conn.fileno())

    def read(self) -> Any:
        """The next replication message, or None if none is buffered. Never blocks."""
        try:
            return self._cursor.read_message()
        except psycopg2.Error as e:
            raise SourceUnavailable(f"replication stream lost: {first_line(e)}") from e

    def send_feedback(self, lsn: int) -> None:
        """Tell PostgreSQL it may forget everything before ``lsn``."""
        if self._cursor is None:
            return
        try:
            self._cursor.send_feedback(write_lsn=lsn, flush_lsn=lsn, force=True)
        except psycopg2.Error as e:
            raise SourceUnavailable(f"replication stream lost: {first_line(e)}") from e

    def close(self) -> None:
        conn, self._conn, self._cursor = self._conn, None, None
        if conn is not None:
            try:
                conn.close()
            except psycopg2.Error:
                log.debug("close of the replication connection failed", exc_info=True)
