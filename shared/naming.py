"""Which MariaDB table a source table's changes go to.

- ``public.<t>`` → ``<t>`` in the target database;
- ``<s>.<t>``, other schemas → ``<s>__<t>`` in the target database, or ``<t>`` in the database
  that ``target.schemas`` maps ``<s>`` to;
- ``target.rename`` names a table's target table outright (in the database its schema maps to).

Two source tables must never share a target table (a TRUNCATE of one would empty the other),
and none may take the name of one of the applier's own tables: ``shared_targets`` finds both.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.tables import TableRef

# The applier's own tables, in the database of the target URL (applier/checkpoint.py,
# applier/schema.py, applier/refusal.py).
APPLIER_TABLES = frozenset({"_cdc_checkpoint", "_cdc_columns", "_cdc_tables"})


@dataclass(frozen=True, order=True)
class TargetRef:
    database: str | None  # None: the database of the target URL
    table: str

    def __str__(self) -> str:
        return f"{self.database}.{self.table}" if self.database else self.table


def is_applier_table(ref: TargetRef) -> bool:
    return ref.database is None and ref.table in APPLIER_TABLES


class Naming:
    def __init__(
        self, rename: dict[TableRef, str] | None = None, schemas: dict[str, str] | None = None
    ) -> None:
        self._rename = rename or {}
        self._schemas = schemas or {}
        self._cache: dict[tuple[str, str], TargetRef] = {}

    def target(self, schema: str, table: str) -> TargetRef:
        key = (schema, table)
        ref = self._cache.get(key)
        if ref is None:
            database = self._schemas.get(schema)
            name = self._rename.get(TableRef(schema, table))
            if name is None:
                name = table if schema == "public" or database else f"{schema}__{table}"
            ref = self._cache[key] = TargetRef(database, name)
        return ref

    def shared_targets(self, tables: Iterable[TableRef]) -> list[tuple[TargetRef, list[TableRef]]]:
        """Each target table that more than one of ``tables`` would go to, or that is one of
        the applier's own, with those source tables (in the order given)."""
        sources: dict[TargetRef, list[TableRef]] = {}
        for t in tables:
            sources.setdefault(self.target(t.schema, t.table), []).append(t)
        return [
            (ref, refs) for ref, refs in sources.items() if len(refs) > 1 or is_applier_table(ref)
        ]
