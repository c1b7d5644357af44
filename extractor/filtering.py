"""The table and column filter, applied to each change before it is published.

wal2json filters what it can itself (exact names, ``schema.*``); this applies the whole filter
(any wildcard, excluded tables, excluded columns) exactly, whatever wal2json let through. A
change reported under a partition is its root's change (partitions.py): the filter, and the
excluded columns, are the root's.
"""

from __future__ import annotations

from typing import Any

from extractor.partitions import Partitions
from shared.envelope import TRUNCATE
from shared.tables import TableFilter, TableRef


def keep_change(
    change: dict[str, Any], capture: TableFilter, partitions: Partitions
) -> dict[str, Any] | None:
    """The change as it should travel, or None if its table is not captured."""
    schema, table = change["schema"], change["table"]
    root = partitions.root_of(schema, table)
    if root is None:
        if not capture.captures_table(schema, table):
            return None
        if change["op"] == TRUNCATE:
            partitions.truncating(TableRef(schema, table), change["lsn"])
        if not capture.exclude_columns:
            return change
        ref = TableRef(schema, table)
    else:
        if not capture.captures(root) or not partitions.as_root(change, root):
            return None
        ref = root
    if capture.exclude_columns:
        key = change.get("key") or []
        if "columns" in change:
            _drop(change, ref, key, capture)
        if change.get("old_key"):
            _drop(change["old_key"], ref, key, capture)
    return change


def _drop(part: dict[str, Any], ref: TableRef, key: list[str], capture: TableFilter) -> None:
    keep = [i for i, c in enumerate(part["columns"]) if not capture.drops_column(ref, c, key)]
    if len(keep) != len(part["columns"]):
        for field in ("columns", "types", "values"):
            part[field] = [part[field][i] for i in keep]
