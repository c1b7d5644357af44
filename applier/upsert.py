"""SQL for applying changes, built with SQLAlchemy Core and compiled once per statement shape.

A shape is (table, columns, key): every row of that shape runs through the same compiled
statement with ``executemany``, which the MariaDB connector sends as one bulk operation.
Identifiers are quoted by the dialect; every value is a bound parameter.

- insert / update: ``INSERT ... ON DUPLICATE KEY UPDATE`` every non-key column;
- update of a row that moves (a new key) or that only its old identity finds:
  ``UPDATE ... SET <the columns that came> WHERE <old key>`` (no primary key: the whole old
  row, NULL-safe, LIMIT 1), so the columns that did not come keep their values;
- delete: ``DELETE ... WHERE key = ?`` (no primary key: the whole old row, NULL-safe, LIMIT 1);
- truncate: ``DELETE FROM t``, because MariaDB's TRUNCATE would commit the transaction.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from functools import lru_cache
from typing import cast

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler

from shared.naming import TargetRef


@lru_cache(maxsize=256)
def _identity(n: int) -> tuple[int, ...]:
    return tuple(range(n))


@dataclass(frozen=True, slots=True)
class Compiled:
    sql: str
    order: tuple[int, ...]  # for each ? in sql, the index of the value in the row
    names: tuple[str, ...] = ()  # for each value of a bound row, the column it goes to

    def params(self, row: list[object] | tuple[object, ...]) -> tuple[object, ...]:
        order = self.order
        if order == _identity(len(row)):
            return tuple(row)
        return tuple(row[i] for i in order)


def driver_safe(dialect: Dialect) -> Dialect:
    """A copy of the dialect whose quoted names never confuse MariaDB Connector/Python.

    The connector counts ``?`` placeholders with a parser that flips a flag on every ``'``,
    ``"`` and backtick, without regard to nesting (mariadb_parser.c, 1.1.14), so a name with
    an odd number of ``'`` or ``"`` hides every placeholder after it ("Invalid number of
    parameters"). Such a name is followed by a comment holding the same quote characters: the
    connector's flags flip back, and the server ignores comments.
    """
    base = type(dialect.identifier_preparer)

    class DriverSafePreparer(base):  # type: ignore[valid-type,misc]
        def quote_identifier(self, value: str) -> str:
            quoted = str(super().quote_identifier(value))
            balance = "".join(q for q in ("'", '"') if value.count(q) % 2)
            return f"{quoted}/*{balance}*/" if balance else quoted

    safe = copy.copy(dialect)
    safe.identifier_preparer = DriverSafePreparer(safe)
    return safe


class Statements:
    def __init__(self, dialect: Dialect) -> None:
        self._dialect = driver_safe(dialect)
        self.upsert = lru_cache(maxsize=4096)(self._upsert)
        self.update = lru_cache(maxsize=4096)(self._update)
        self.delete = lru_cache(maxsize=4096)(self._delete)
        self.truncate = lru_cache(maxsize=1024)(self._truncate)

    def _compile(self, stmt: sa.sql.ClauseElement, columns: tuple[str, ...] = ()) -> Compiled:
        """``columns``: the column of each parameter p0, p1, ..."""
        compiled = cast(SQLCompiler, stmt.compile(dialect=self._dialect))
        order = tuple(int(n[1:]) for n in compiled.positiontup or [])
        return Compiled(str(compiled), order, tuple(columns[i] for i in order))

    def _upsert(self, table: TargetRef, columns: tuple[str, ...], key: tuple[str, ...]) -> Compiled:
        t = sa.table(table.table, *(sa.column(c) for c in columns), schema=table.database)
        stmt = mysql.insert(t).values({c: sa.bindparam(f"p{i}") for i, c in enumerate(columns)})
        keyset = set(key)
        update = [c for c in columns if c not in keyset]
        if not key:
            return self._compile(stmt, columns)
        # A row of key columns only still needs an assignment; a no-op one keeps it idempotent.
        targets = update or [key[0]]
        upsert = stmt.on_duplicate_key_update({c: stmt.inserted[c] for c in targets})
        return self._compile(upsert, columns)

    def _update(
        self,
        table: TargetRef,
        columns: tuple[str, ...],
        where: tuple[str, ...],
        whole_row: bool,
    ) -> Compiled:
        """Parameters: the new values of ``columns``, then the old values of ``where``."""
        names = dict.fromkeys((*columns, *where))
        t = sa.table(table.table, *(sa.column(c) for c in names), schema=table.database)
        n = len(columns)
        stmt = (
            sa.update(t)
            .values({c: sa.bindparam(f"p{i}") for i, c in enumerate(columns)})
            .where(_match(t, where, n, whole_row))
        )
        if whole_row:
            stmt = stmt.with_dialect_options(mariadb_limit=1)
        return self._compile(stmt, (*columns, *where))

    def _delete(self, table: TargetRef, columns: tuple[str, ...], whole_row: bool) -> Compiled:
        t = sa.table(table.table, *(sa.column(c) for c in columns), schema=table.database)
        stmt = sa.delete(t).where(_match(t, columns, 0, whole_row))
        if whole_row:
            stmt = stmt.with_dialect_options(mariadb_limit=1)
        return self._compile(stmt, columns)

    def _truncate(self, table: TargetRef) -> Compiled:
        return self._compile(sa.delete(sa.table(table.table, schema=table.database)))


def _match(
    t: sa.TableClause, columns: tuple[str, ...], first: int, whole_row: bool
) -> sa.ColumnElement[bool]:
    """``columns`` equal to the parameters p<first>...; for a whole row of a table without a
    key, NULL-safe (the caller adds LIMIT 1: duplicates in such a table are
    indistinguishable anyway)."""
    conditions = []
    for i, c in enumerate(columns):
        param: sa.BindParameter[object] = sa.bindparam(f"p{first + i}")
        conditions.append(t.c[c].is_not_distinct_from(param) if whole_row else t.c[c] == param)
    return sa.and_(*conditions)
