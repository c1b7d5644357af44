"""``python -m applier verify``: compare each captured table with its copy in MariaDB.

Each table is cut into chunks of its primary key, in an order both databases share
(applier/verify_chunks.py, applier/checksums.py). For every chunk each database counts the
rows and sums a 60-bit prefix of the MD5 of each row's canonical text, so only two numbers
per chunk travel. Only a chunk whose numbers differ is read row by row (applier/compare.py)
to name the rows that differ, after being checked again a few times (the pipeline may be
applying it). Each column is compared by how the target stores it
(applier/verify_columns.py); real and double have no common text (1e-05 and 0.00001) and are
compared by value for every chunk.

A partitioned table is one table (all its partitions' rows); a plain table is read without
the rows of its inheritance children. What cannot be verified raises one of shared/errors;
driver errors are wrapped here.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import mariadb
import psycopg2
import psycopg2.errorcodes
import psycopg2.extensions
import sqlalchemy as sa
from psycopg2 import sql

from applier import checksums, compare, verify_columns
from applier.checksums import Key
from applier.target import classify, create_target_engine
from applier.verify_chunks import Table, chunks, pg_one, source_sums, target_sums
from applier.verify_columns import Column
from shared.config import VerifyConfig
from shared.errors import CdcError, SchemaMismatch, SetupError, SourceUnavailable
from shared.naming import Naming, TargetRef
from shared.postgres import captured_tables, connect, first_line
from shared.tables import TableRef

CHUNK_ROWS = 10_000
# A chunk that differs is looked at again this many times, a second apart, before its rows
# are reported: the pipeline may have been applying it.
RECHECKS = 3
_MISSING = "missing in the target"

Progress = Callable[[str], None]


@dataclass
class TableResult:
    source: TableRef
    target: TargetRef
    rows: int = 0
    target_rows: int = 0
    chunks: int = 0
    read_row_by_row: int = 0
    missing: list[compare.Row] = field(default_factory=list)  # keys in the source only
    extra: list[compare.Row] = field(default_factory=list)  # keys in the target only
    different: list[compare.Row] = field(default_factory=list)
    note: str | None = None  # a difference of the whole table
    error: str | None = None  # why it could not be verified

    @property
    def equal(self) -> bool:
        return self.error is None and self.note is None and not self.differing

    @property
    def differing(self) -> bool:
        return bool(self.note or self.missing or self.extra or self.different)


class Verifier:
    def __init__(
        self,
        cfg: VerifyConfig,
        chunk_rows: int = CHUNK_ROWS,
        progress: Progress | None = None,
        rechecks: int = RECHECKS,
    ) -> None:
        self._cfg = cfg
        self._chunk_rows = chunk_rows
        self._rechecks = rechecks
        self._progress = progress or (lambda _line: None)
        self._naming = Naming(cfg.target.rename, cfg.target.schemas)
        self._where = str(cfg.target.url)
        self._pg: psycopg2.extensions.connection | None = None
        self._engine: sa.engine.Engine | None = None
        self._maria: Any = None

    def __enter__(self) -> Verifier:
        self._pg = connect(self._cfg.source)
        self._engine = create_target_engine(self._cfg.target)
        try:
            self._maria = self._engine.raw_connection()
            # Every statement sees what is committed now: a recheck must see the pipeline's
            # latest rows, not a snapshot taken at the first read.
            self._maria.driver_connection.autocommit = True
        except (mariadb.Error, sa.exc.SQLAlchemyError) as e:
            self.__exit__()
            raise classify(e, self._where) from e
        return self

    def __exit__(self, *_exc: object) -> None:
        for close in (
            self._pg.close if self._pg is not None else None,
            self._maria.close if self._maria is not None else None,
            self._engine.dispose if self._engine is not None else None,
        ):
            # A connection already lost has nothing left to release.
            with contextlib.suppress(psycopg2.Error, mariadb.Error, sa.exc.SQLAlchemyError):
                if close is not None:
                    close()
        self._pg = self._maria = self._engine = None

    @property
    def _source(self) -> psycopg2.extensions.connection:
        assert self._pg is not None, "used outside its with block"
        return self._pg

    # ------------------------------------------------------------ tables

    def tables(self, only: Sequence[TableRef] = ()) -> list[TableRef]:
        assert self._pg is not None
        if only:
            return list(only)
        try:
            return captured_tables(self._pg, self._cfg.source.capture)
        except psycopg2.Error as e:
            raise _source_error(e) from e

    def target_of(self, ref: TableRef) -> TargetRef:
        return self._naming.target(ref.schema, ref.table)

    def verify(self, ref: TableRef) -> TableResult:
        """The table compared with its copy; one of shared/errors if it cannot be."""
        try:
            return self._verify(ref)
        except psycopg2.Error as e:
            raise _source_error(e) from e
        except (mariadb.Error, sa.exc.SQLAlchemyError) as e:
            raise classify(e, self._where) from e

    def _verify(self, ref: TableRef) -> TableResult:
        table, note = self._describe(ref)
        result = TableResult(ref, table.target, note=note)
        if note == _MISSING:
            result.rows = int(
                pg_one(self._source, sql.SQL("SELECT count(*) FROM {}").format(table.source), [])[0]
            )
        if note is not None:
            return result
        estimate = self._estimate(table)
        for lo, hi in chunks(self._source, table, self._chunk_rows):
            self._check_chunk(table, lo, hi, result)
            self._progress(
                f"verify {ref}: {result.rows:,} rows" + (f" of ~{estimate:,}" if estimate else "")
            )
        return result

    def _describe(self, ref: TableRef) -> tuple[Table, str | None]:
        """The table to compare, and the note of a difference of the whole table if any."""
        assert self._pg is not None
        source = verify_columns.source_table(self._pg, ref)
        if source is None:
            raise SetupError(f"table {ref} does not exist in the source")
        if source.partition_of is not None:
            raise SetupError(
                f"{ref} is a partition of {source.partition_of}: verify "
                f"{source.partition_of}, which holds the rows of all its partitions"
            )
        if source.relkind not in ("r", "p"):
            raise SetupError(f"{ref} is not a table")
        target = self._naming.target(ref.schema, ref.table)
        table = Table(ref, target, source.relkind == "p", [], [])
        storage = verify_columns.target_storage(self._maria, target)
        if storage is None:
            return table, _MISSING
        capture = self._cfg.source.capture
        names = [n for n in source.names if not capture.drops_column(ref, n, source.key)]
        absent = [n for n in names if n.lower() not in storage]
        if absent:
            return table, "columns missing in the target: " + ", ".join(absent)
        table.columns, problems = verify_columns.columns(source, storage, names)
        if problems:
            raise SchemaMismatch("; ".join(problems))
        table.key = table.named(source.key)
        return table, None

    def _estimate(self, table: Table) -> int:
        query = (
            "SELECT COALESCE(sum(c.reltuples) FILTER (WHERE c.reltuples > 0), 0)::bigint"
            " FROM pg_class c WHERE c.oid IN"
            " (SELECT relid FROM pg_partition_tree(%s::regclass) WHERE isleaf)"
            if table.partitioned
            else "SELECT GREATEST(reltuples, 0)::bigint FROM pg_class WHERE oid = %s::regclass"
        )
        assert self._pg is not None
        name = sql.Identifier(table.ref.schema, table.ref.table).as_string(self._pg)
        row = pg_one(self._source, sql.SQL(query), [name])
        return int(row[0])

    # ------------------------------------------------------------ chunks

    def _check_chunk(self, table: Table, lo: Key | None, hi: Key | None, out: TableResult) -> None:
        out.chunks += 1
        key_index = [table.columns.index(c) for c in table.key]
        for attempt in range(self._rechecks + 1):
            src_count, src_sum = source_sums(self._source, table, lo, hi)
            dst_count, dst_sum = target_sums(self._maria, table, lo, hi)
            same = (src_count, src_sum) == (dst_count, dst_sum)
            if same and table.floats:
                same = compare.compare_rows(
                    *self._rows(table, lo, hi, table.key + table.floats),
                    list(range(len(table.key))),
                ).equal
            if same:
                out.rows += src_count
                out.target_rows += dst_count
                return
            out.read_row_by_row += 1
            source, target = self._rows(table, lo, hi, table.columns)
            diff = compare.compare_rows(source, target, key_index)
            if diff.equal or attempt == self._rechecks:
                break
            time.sleep(1.0)
        out.rows += len(source)
        out.target_rows += len(target)
        keyed = key_index or list(range(len(table.columns)))
        out.missing += [tuple(r[i] for i in keyed) for r in diff.missing]
        out.extra += [tuple(r[i] for i in keyed) for r in diff.extra]
        out.different += _in_order([tuple(s[i] for i in keyed) for s, _ in diff.different])

    def _rows(
        self, table: Table, lo: Key | None, hi: Key | None, columns: list[Column]
    ) -> tuple[list[compare.Row], list[compare.Row]]:
        where, params = checksums.pg_range(table.key, lo, hi, keyword=False)
        names, kinds, source = compare.read_source(
            self._pg,
            table.ref.schema,
            table.ref.table,
            where=where,
            params=tuple(params),
            columns=columns,
            partitioned=table.partitioned,
        )
        target = compare.read_target(
            self._maria,
            table.target.table,
            names,
            kinds,
            table.target.database,
            where=lambda t: checksums.target_range(t, table.key, lo, hi),
        )
        return source, target


def _source_error(e: psycopg2.Error) -> CdcError:
    text = first_line(e)
    if e.pgcode == psycopg2.errorcodes.INSUFFICIENT_PRIVILEGE:
        return SetupError(f"PostgreSQL: {text} (the role needs SELECT: sql/source-role.sql)")
    lost = e.pgcode is None or e.pgcode[:2] in ("08", "57")
    if isinstance(e, psycopg2.OperationalError | psycopg2.InterfaceError) and lost:
        return SourceUnavailable(f"PostgreSQL: {text}")
    return SetupError(f"PostgreSQL: {text}")


def _in_order(keys: list[compare.Row]) -> list[compare.Row]:
    try:
        return sorted(keys, key=lambda k: tuple((v is None, v) for v in k))
    except TypeError:
        return sorted(keys, key=repr)
