"""Captured tables whose updates and deletes PostgreSQL cannot identify."""

from __future__ import annotations

import logging
from typing import Any

from shared.tables import TableRef

log = logging.getLogger(__name__)


def warn_unidentified(conn: Any, tables: list[TableRef]) -> list[TableRef]:
    """Log, for each captured table whose updates and deletes PostgreSQL cannot identify (no
    primary key and no replica identity), what is lost and the fix; returns them."""
    if not tables:
        return []
    with conn.cursor() as cur:
        cur.execute(
            "SELECT n.nspname, c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE (c.relreplident = 'n'"
            "   OR (c.relreplident = 'd' AND NOT EXISTS ("
            "       SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)))"
            " AND c.relkind IN ('r', 'p')"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        )
        bad = {TableRef(s, t) for s, t in cur.fetchall()}
    found = [t for t in tables if t in bad]
    for t in found:
        log.warning(
            "table_without_identity table=%s: its inserts are copied, but PostgreSQL does not "
            "log which row an update or delete touches, so those are lost; fix: add a "
            "primary key, or ALTER TABLE %s REPLICA IDENTITY FULL",
            t,
            t,
        )
    return found
