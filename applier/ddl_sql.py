"""The statements a schema change needs in MariaDB, every name quoted by the dialect (through
upsert.driver_safe, so that a name with quotes never confuses the connector's placeholder
count) and every value bound."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler

from applier.upsert import driver_safe
from shared.naming import TargetRef
from shared.types import column_type


class DdlSql:
    def __init__(self, dialect: Dialect) -> None:
        self._dialect = driver_safe(dialect)

    def quote(self, name: str) -> str:
        return str(self._dialect.identifier_preparer.quote_identifier(name))

    def table(self, target: TargetRef) -> str:
        name = self.quote(target.table)
        return f"{self.quote(target.database)}.{name}" if target.database else name

    def drop_table(self, target: TargetRef) -> str:
        return f"DROP TABLE IF EXISTS {self.table(target)}"

    def rename_table(self, old: TargetRef, new: TargetRef) -> str:
        return f"RENAME TABLE {self.table(old)} TO {self.table(new)}"

    def drop_columns(self, target: TargetRef, columns: list[str]) -> str:
        drops = ", ".join(f"DROP COLUMN IF EXISTS {self.quote(c)}" for c in columns)
        return f"ALTER TABLE {self.table(target)} {drops}"

    def rename_column(self, target: TargetRef, old: str, new: str) -> str:
        return (
            f"ALTER TABLE {self.table(target)} RENAME COLUMN {self.quote(old)} TO {self.quote(new)}"
        )

    def primary_key(
        self,
        target: TargetRef,
        have: list[str],
        want: list[tuple[str, str]],
        released: list[tuple[str, str]],
    ) -> str:
        """The key made ``want`` (name, PostgreSQL type), from ``have``; ``released``: (name,
        MariaDB column type) of columns that leave the key and may be NULL again."""
        parts = ["DROP PRIMARY KEY"] if have else []
        for name, pg_type in want:
            type_sql = self._dialect.type_compiler_instance.process(column_type(pg_type, True))
            parts.append(f"MODIFY COLUMN {self.quote(name)} {type_sql} NOT NULL")
        parts += [f"MODIFY COLUMN {self.quote(n)} {t} NULL" for n, t in released]
        if want:
            parts.append(f"ADD PRIMARY KEY ({', '.join(self.quote(n) for n, _ in want)})")
        return f"ALTER TABLE {self.table(target)} {', '.join(parts)}"

    def fill(self, target: TargetRef, column: str) -> str:
        """``UPDATE t SET c = ?``: every row takes one bound value."""
        stmt = sa.update(sa.table(target.table, sa.column(column), schema=target.database))
        compiled = stmt.values({column: sa.bindparam("v")}).compile(dialect=self._dialect)
        assert isinstance(compiled, SQLCompiler)
        return str(compiled)
