"""Which MariaDB table a source table's changes go to.

- ``public.<t>`` → ``<t>`` in the target database;
- ``<s>.<t>``, other schemas → ``<s>__<t>`` in the target database, or ``<t>`` in the database
  that ``target.schemas`` maps ``<s>`` to;
- ``target.rename`` names a table's target table outright (in the database its schema maps to).
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.tables import TableRef


@dataclass(frozen=True, order=True)
class TargetRef:
    database: str | None  # None: the database of the target URL
    table: str

    def __str__(self) -> str:
        return f"{self.database}.{self.table}" if self.database else self.table


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
