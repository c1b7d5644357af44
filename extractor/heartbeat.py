"""The heartbeat: a tiny transactional message written into the source database now and then,
and the query of the slot's lag, on a connection of their own."""

from __future__ import annotations

import logging
from typing import Any

import psycopg2

from shared.config import SourceConfig
from shared.errors import SourceUnavailable
from shared.postgres import connect_kwargs, first_line

log = logging.getLogger(__name__)

# The heartbeat must never hold up the extractor's loop (e.g. waiting for a synchronous
# standby that is down).
_HEARTBEAT_OPTIONS = " -c synchronous_commit=off -c statement_timeout=5000 -c lock_timeout=2000"

HEARTBEAT_PREFIX = "pg2maria.heartbeat"


class Heartbeat:
    """Writes a tiny transactional message into the source database now and then.

    Decoded in our own stream, it becomes a message with no changes: the slot can move past
    everything before it although no captured table changed (so WAL does not pile up on a
    quiet database while others write), and the applier sees a fresh commit time.
    """

    def __init__(self, cfg: SourceConfig) -> None:
        self._cfg = cfg
        self._conn: Any = None

    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            params = connect_kwargs(self._cfg)
            params["options"] += _HEARTBEAT_OPTIONS
            params["connect_timeout"] = "5"
            self._conn = psycopg2.connect(**params)
            self._conn.autocommit = True
        return self._conn

    def beat(self) -> None:
        try:
            with self._connection().cursor() as cur:
                cur.execute(
                    "SELECT pg_logical_emit_message(true, %s, %s)",
                    (HEARTBEAT_PREFIX, self._cfg.slot),
                )
        except psycopg2.Error as e:
            self.close()
            raise SourceUnavailable(f"heartbeat failed: {first_line(e)}") from e

    def slot_lag(self) -> int | None:
        """Bytes of WAL between the server's current position and the slot's confirmed one."""
        try:
            with self._connection().cursor() as cur:
                cur.execute(
                    "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint"
                    " FROM pg_replication_slots WHERE slot_name = %s",
                    (self._cfg.slot,),
                )
                row = cur.fetchone()
        except psycopg2.Error as e:
            self.close()
            raise SourceUnavailable(f"slot lag query failed: {first_line(e)}") from e
        return int(row[0]) if row and row[0] is not None else None

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except psycopg2.Error:
                log.debug("close of the heartbeat connection failed", exc_info=True)
