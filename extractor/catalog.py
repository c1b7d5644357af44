"""Checks of the captured tables at start: those whose updates and deletes PostgreSQL cannot
identify, and those that would share a target table."""

from __future__ import annotations

import logging
from typing import Any

from shared.config import TargetConfig
from shared.errors import SetupError
from shared.naming import Naming
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


def refuse_shared_targets(tables: list[TableRef], target: TargetConfig) -> None:
    """SetupError if two captured tables would go to one target table (with target.rename
    and target.schemas as the applier reads them), or one to a table of the applier's own:
    they would silently mix there, and a TRUNCATE of one would empty the other."""
    clashes = Naming(target.rename, target.schemas).shared_targets(tables)
    if not clashes:
        return
    ref, sources = clashes[0]
    more = f" (and {len(clashes) - 1} more target tables like it)" if len(clashes) > 1 else ""
    if len(sources) == 1:
        raise SetupError(
            f"source table {sources[0]} would go to target table {ref}, which is one of the "
            f"applier's own tables{more}: give it another name with target.rename "
            f"(e.g. CDC_TARGET_RENAME='{sources[0]}=<new name>')"
        )
    raise SetupError(
        f"source tables {sources[0]} and {sources[1]} would both go to target table {ref}"
        f"{more}; a TRUNCATE of one would empty the other: give one of them a target table of "
        f"its own with target.rename (e.g. CDC_TARGET_RENAME='{sources[1]}=<new name>'), or "
        "leave one out with source.exclude_tables"
    )
