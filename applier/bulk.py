"""The bulk path: a large group of upserts or deletes for one table, through a staging table.

``executemany`` costs MariaDB a round of statement execution per row; measured on one table
(docs/performance.md, "MariaDB alone"), loading the rows with LOAD DATA LOCAL INFILE into a
temporary table and applying them with one set-based statement is about three times faster
on the server's side. For a group of at least ``target.bulk_rows`` rows (applier/apply.py):

1. ``CREATE TEMPORARY TABLE`` with the group's columns, of the target's very types (``CREATE
   ... SELECT ... WHERE 0``), plus a sequence column that keeps the rows' order;
2. ``LOAD DATA LOCAL INFILE`` of the rows written by applier/tsv.py: values are never
   spliced into SQL, the file has its own escaping;
3. an upsert group: ``INSERT INTO t (...) SELECT ... ORDER BY seq ON DUPLICATE KEY UPDATE``
   every non-key column (as upsert.py's statement; in the rows' order, so of two rows with
   one key the last wins, as with executemany); a delete group: ``DELETE t FROM t JOIN stage
   ON`` the key;
4. ``DROP TEMPORARY TABLE``.

All of it in the batch's transaction, with the checkpoint: neither temporary tables nor LOAD
DATA commit implicitly. A group matched on the whole old row (a table without a key: NULL-
safe, one row only) and the updates that move a row keep executemany.

Exactness: LOAD DATA LOCAL turns errors in values into warnings and goes on (the server
cannot stop the client's file midway), storing the value changed (truncated, zeroed). So
any warning of the load fails the group as MariaDB's error would (RowRejected, naming the
row), and because the staging columns have the target's types, a value the target column
would refuse is refused here. What only the target checks (its JSON_VALID constraint, NOT
NULL, its unique keys) is checked by step 3, in strict mode like every statement.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading

from sqlalchemy.engine import Connection, Dialect

from applier.packets import located
from applier.plan import Group
from applier.tsv import Unloadable, encode
from shared.errors import RowRejected
from shared.naming import TargetRef

STAGE = "_cdc_bulk_stage"
SEQ = "_cdc_bulk_seq"


class BulkPath:
    """Applies large groups by LOAD DATA; one staging file, reused, per applier."""

    def __init__(self, dialect: Dialect, min_rows: int, where: str) -> None:
        self._quote = dialect.identifier_preparer.quote_identifier
        self._min_rows = min_rows
        self._where = where
        self._path: str | None = None
        self._lock = threading.Lock()

    def takes(self, group: Group) -> bool:
        """Whether ``group`` goes by the bulk path."""
        if self._min_rows <= 0 or len(group.rows) < self._min_rows:
            return False
        if SEQ in group.statement.names:
            return False  # a column of that very name: the staging table could not hold both
        # A delete without a key matches the whole old row NULL-safely, one row only.
        return group.op == "upsert" or (group.op == "delete" and bool(group.key))

    def send(self, conn: Connection, group: Group) -> bool:
        """Apply ``group`` inside the open transaction of ``conn``; False: its values cannot
        go this way (the caller uses executemany)."""
        columns = group.statement.names
        try:
            data, binary = encode(group.rows, len(columns))
        except Unloadable:
            return False
        with self._lock:
            path = self._file()
            with open(path, "wb") as f:
                f.write(data)
            try:
                self._stage(conn, group.table, columns, binary, path)
                if group.op == "upsert":
                    conn.exec_driver_sql(self._upsert(group.table, columns, group.key))
                else:
                    conn.exec_driver_sql(self._delete(group.table, columns))
                conn.exec_driver_sql(f"DROP TEMPORARY TABLE {self._quote(STAGE)}")
            except Exception as e:
                raise located(e, group, group.rows, self._where) from e
            finally:
                with open(path, "wb"):
                    pass  # rows do not stay on disk longer than their statement
        return True

    def close(self) -> None:
        path, self._path = self._path, None
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def _file(self) -> str:
        if self._path is None:
            fd, self._path = tempfile.mkstemp(prefix="cdc-bulk-", suffix=".tsv")
            os.close(fd)  # mkstemp made it readable by this user only
        return self._path

    def _stage(
        self,
        conn: Connection,
        table: TargetRef,
        columns: tuple[str, ...],
        binary: tuple[bool, ...],
        path: str,
    ) -> None:
        q = self._quote
        stage, seq = q(STAGE), q(SEQ)
        # Left over by a batch that failed on this connection: temporary tables outlive a
        # rollback.
        conn.exec_driver_sql(f"DROP TEMPORARY TABLE IF EXISTS {stage}")
        conn.exec_driver_sql(
            f"CREATE TEMPORARY TABLE {stage} ({seq} BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY)"  # noqa: S608 - quoted names only
            f" SELECT {', '.join(map(q, columns))} FROM {self._table(table)} WHERE 0"
        )
        pairs = list(enumerate(zip(columns, binary, strict=True)))
        targets = [f"@b{i}" if hexed else q(c) for i, (c, hexed) in pairs]
        unhex = [f"{q(c)} = UNHEX(@b{i})" for i, (c, hexed) in pairs if hexed]
        if "'" in path:
            raise RowRejected(f"staging file path {path!r} cannot be named in SQL")
        # ESCAPED BY '\' is one backslash: the session runs with NO_BACKSLASH_ESCAPES.
        sql = (
            f"LOAD DATA LOCAL INFILE '{path}' INTO TABLE {stage} CHARACTER SET utf8mb4 "
            "FIELDS TERMINATED BY '\t' ESCAPED BY '\\' LINES TERMINATED BY '\n' "
            f"({', '.join(targets)})" + (f" SET {', '.join(unhex)}" if unhex else "")
        )
        conn.exec_driver_sql(sql)
        self._no_warnings(conn)

    def _no_warnings(self, conn: Connection) -> None:
        """A load that warned stored some value changed: refuse it as MariaDB's error would."""
        driver = conn.connection.driver_connection
        if not getattr(driver, "warnings", 0):
            return
        first = conn.exec_driver_sql("SHOW WARNINGS LIMIT 1").first()
        code, text = (first[1], first[2]) if first is not None else (0, "a warning")
        raise RowRejected(f"MariaDB {code}: {text} (LOAD DATA of the bulk path)")

    def _table(self, table: TargetRef) -> str:
        q = self._quote
        return f"{q(table.database)}.{q(table.table)}" if table.database else q(table.table)

    def _upsert(self, table: TargetRef, columns: tuple[str, ...], key: tuple[str, ...]) -> str:
        q = self._quote
        names = ", ".join(map(q, columns))
        sql = (
            f"INSERT INTO {self._table(table)} ({names}) "  # noqa: S608 - quoted names only
            f"SELECT {names} FROM {q(STAGE)} ORDER BY {q(SEQ)}"
        )
        if not key:
            return sql
        keyset = set(key)
        # As upsert.py: every non-key column; a row of key columns only, a no-op assignment.
        update = [c for c in columns if c not in keyset] or [key[0]]
        return (
            sql
            + " ON DUPLICATE KEY UPDATE "
            + ", ".join(f"{q(c)} = VALUES({q(c)})" for c in update)
        )

    def _delete(self, table: TargetRef, columns: tuple[str, ...]) -> str:
        q = self._quote
        on = " AND ".join(f"t.{q(c)} = s.{q(c)}" for c in columns)
        return f"DELETE t FROM {self._table(table)} AS t JOIN {q(STAGE)} AS s ON {on}"
