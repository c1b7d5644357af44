"""``python -m applier verify``: compare each captured table with its copy in MariaDB.

Each table is cut into chunks of its primary key (ranges taken from the source, in an order
both databases share: bytes for text, ``COLLATE "C"``). For every chunk each database counts
the rows and sums a 60-bit prefix of the MD5 of each row's canonical text, computed by the
database itself, so only two numbers per chunk travel. Only a chunk whose numbers differ is
read row by row (applier/compare.py, exact per type) to name the rows that differ; as the
pipeline may be applying that chunk right now, such a chunk is checked again a few times
before its rows are reported.

The canonical text of a value is the same in both databases for every type of docs/types.md
except real and double: PostgreSQL and MariaDB print a double differently (1e-05 and
0.00001), so those columns are compared by value for every chunk, beside the checksum.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import psycopg2.extensions
import sqlalchemy as sa
from psycopg2 import sql
from sqlalchemy.dialects import mysql

from applier import checksums, compare
from applier.checksums import FLOATS, Key
from applier.target import classify, create_target_engine
from shared.config import Config
from shared.errors import SetupError
from shared.naming import Naming, TargetRef
from shared.postgres import captured_tables, connect
from shared.tables import TableRef

CHUNK_ROWS = 10_000
# A chunk that differs is looked at again this many times, a second apart, before its rows
# are reported: the pipeline may have been applying it.
RECHECKS = 3
# Key types whose order is the same in both databases (text compared as bytes): the ones
# chunks can be cut along. Other keys: the table is one chunk.
_ORDERED = {
    "smallint", "integer", "bigint", "oid", "numeric", "character varying", "text", "uuid",
    "date", "timestamp without time zone", "timestamp with time zone", "bytea",
}  # fmt: skip
_NULL = "~"


@dataclass
class TableResult:
    source: TableRef
    target: TargetRef
    rows: int = 0
    target_rows: int = 0
    chunks: int = 0
    read_row_by_row: int = 0
    missing: list[Key] = field(default_factory=list)  # keys in the source only
    extra: list[Key] = field(default_factory=list)  # keys in the target only
    different: list[Key] = field(default_factory=list)
    note: str | None = None  # a problem with the whole table

    @property
    def equal(self) -> bool:
        return self.note is None and not (self.missing or self.extra or self.different)


@dataclass
class _Table:
    ref: TableRef
    target: TargetRef
    names: list[str]
    types: list[str]
    key: list[str]

    def index(self, names: Sequence[str]) -> list[int]:
        return [self.names.index(n) for n in names]

    @property
    def chunkable(self) -> bool:
        return bool(self.key) and all(self.types[i] in _ORDERED for i in self.index(self.key))

    @property
    def floats(self) -> list[str]:
        return [n for n, t in zip(self.names, self.types, strict=True) if t in FLOATS]

    @property
    def key_types(self) -> list[str]:
        return [self.types[i] for i in self.index(self.key)]


Progress = Callable[[str], None]


class Verifier:
    def __init__(
        self,
        cfg: Config,
        chunk_rows: int = CHUNK_ROWS,
        progress: Progress | None = None,
        rechecks: int = RECHECKS,
    ) -> None:
        self._cfg = cfg
        self._chunk_rows = chunk_rows
        self._rechecks = rechecks
        self._progress = progress or (lambda _line: None)
        self._naming = Naming(cfg.target.rename, cfg.target.schemas)
        self._pg: psycopg2.extensions.connection | None = None
        self._engine: sa.engine.Engine | None = None

    def __enter__(self) -> Verifier:
        self._pg = connect(self._cfg.source)
        self._engine = create_target_engine(self._cfg.target)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._pg is not None:
            self._pg.close()
        if self._engine is not None:
            self._engine.dispose()

    # ------------------------------------------------------------ tables

    def tables(self, only: Sequence[TableRef] = ()) -> list[TableRef]:
        assert self._pg is not None
        if only:
            return list(only)
        return captured_tables(self._pg, self._cfg.source.capture)

    def verify(self, ref: TableRef) -> TableResult:
        table = self._describe(ref)
        result = TableResult(ref, table.target)
        present = self._target_columns(table.target)
        if not present:
            result.rows = self._source_count(table)
            result.note = "missing in the target"
            return result
        absent = [n for n in table.names if n.lower() not in present]
        if absent:
            result.note = "columns missing in the target: " + ", ".join(absent)
            return result
        estimate = self._estimate(ref)
        lo: Key | None = None
        while True:
            hi = self._next_boundary(table, lo) if table.chunkable else None
            self._check_chunk(table, lo, hi, result)
            self._progress(
                f"verify {ref}: {result.rows:,} rows" + (f" of ~{estimate:,}" if estimate else "")
            )
            if hi is None:
                return result
            lo = hi

    def _describe(self, ref: TableRef) -> _Table:
        assert self._pg is not None
        names, types, key = compare.source_columns(self._pg, ref.schema, ref.table)
        if not names:
            raise SetupError(f"table {ref} does not exist in the source")
        capture = self._cfg.source.capture
        kept = [i for i, n in enumerate(names) if not capture.drops_column(ref, n, key)]
        return _Table(
            ref,
            self._naming.target(ref.schema, ref.table),
            [names[i] for i in kept],
            [types[i] for i in kept],
            key,
        )

    def _target_columns(self, target: TargetRef) -> set[str]:
        stmt = sa.text(
            "SELECT column_name FROM information_schema.columns"
            " WHERE table_schema = COALESCE(:db, DATABASE()) AND table_name = :t"
        )
        with self._target() as conn:
            rows = conn.execute(stmt, {"db": target.database, "t": target.table}).fetchall()
        return {str(r[0]).lower() for r in rows}

    def _estimate(self, ref: TableRef) -> int:
        assert self._pg is not None
        with self._pg.cursor() as cur:
            cur.execute(
                "SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass",
                (sql.Identifier(ref.schema, ref.table).as_string(self._pg),),
            )
            row = cur.fetchone()
        return max(int(row[0]), 0) if row else 0

    def _source_count(self, table: _Table) -> int:
        assert self._pg is not None
        with self._pg.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT count(*) FROM {}").format(
                    sql.Identifier(table.ref.schema, table.ref.table)
                )
            )
            row = cur.fetchone()
        return int(row[0]) if row else 0

    # ------------------------------------------------------------ chunks

    def _next_boundary(self, table: _Table, lo: Key | None) -> Key | None:
        """The last key of the chunk after ``lo``; None if that chunk is the last one."""
        assert self._pg is not None
        keys = checksums.pg_keys(table.key, table.key_types)
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(sql.Identifier(k) for k in table.key),
            sql.Identifier(table.ref.schema, table.ref.table),
        )
        params: list[Any] = []
        if lo is not None:
            query = sql.SQL("{} WHERE ({}) > ({})").format(
                query, keys, sql.SQL(", ").join(sql.Placeholder() * len(lo))
            )
            params += lo
        query = sql.SQL("{} ORDER BY {} LIMIT 1 OFFSET %s").format(query, keys)
        params.append(self._chunk_rows - 1)
        with self._pg.cursor() as cur:
            cur.execute(query, params)
            row = cur.fetchone()
        if row is None:
            return None
        return tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)

    def _check_chunk(self, table: _Table, lo: Key | None, hi: Key | None, out: TableResult) -> None:
        out.chunks += 1
        for attempt in range(self._rechecks + 1):
            src_count, src_sum = self._source_sums(table, lo, hi)
            dst_count, dst_sum = self._target_sums(table, lo, hi)
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
            source, target = self._rows(table, lo, hi, table.names)
            diff = compare.compare_rows(source, target, table.index(table.key))
            if diff.equal or attempt == self._rechecks:
                break
            time.sleep(1.0)
        out.rows += len(source)
        out.target_rows += len(target)
        keyed = table.index(table.key) if table.key else list(range(len(table.names)))
        out.missing += [tuple(r[i] for i in keyed) for r in diff.missing]
        out.extra += [tuple(r[i] for i in keyed) for r in diff.extra if len(r) == len(table.names)]
        out.different += [tuple(s[i] for i in keyed) for s, _ in diff.different]

    def _source_sums(self, table: _Table, lo: Key | None, hi: Key | None) -> tuple[int, int]:
        assert self._pg is not None
        where, params = checksums.pg_range(table.key, table.key_types, lo, hi)
        pieces = [
            sql.SQL("COALESCE(length({e}) || ':' || {e}, {null})").format(
                e=expr, null=sql.Literal(_NULL)
            )
            for expr in (
                checksums.pg_canonical(n, t) for n, t in zip(table.names, table.types, strict=True)
            )
            if expr is not None
        ]
        row_text = (
            sql.SQL("concat_ws(',', {})").format(sql.SQL(", ").join(pieces))
            if pieces
            else sql.Literal("")
        )
        query = sql.SQL(
            "SELECT count(*), COALESCE(sum(('x' || substr(md5({}), 1, 15))::bit(60)::bigint), 0)"
            " FROM {}{}"
        ).format(row_text, sql.Identifier(table.ref.schema, table.ref.table), where)
        with self._pg.cursor() as cur:
            cur.execute(query, params)
            row = cur.fetchone()
        assert row is not None  # an aggregate always returns a row
        return int(row[0]), int(row[1])

    def _target_sums(self, table: _Table, lo: Key | None, hi: Key | None) -> tuple[int, int]:
        t = compare.target_table(table.target.table, table.names, table.target.database)
        # One collation for every piece: concat_ws refuses to mix a JSON column's utf8mb4_bin
        # with the other columns' utf8mb4_nopad_bin. The bytes, which MD5 reads, are the same.
        pieces = [
            sa.collate(
                sa.func.coalesce(sa.func.concat(sa.func.char_length(e), ":", e), _NULL),
                "utf8mb4_bin",
            )
            for e in map(checksums.target_canonical, [t.c[n] for n in table.names], table.types)
            if e is not None
        ]
        row_text = sa.func.concat_ws(",", *pieces) if pieces else sa.literal("")
        digest = sa.func.conv(sa.func.substring(sa.func.md5(row_text), 1, 15), 16, 10)
        stmt = sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(sa.cast(digest, mysql.BIGINT(unsigned=True))), 0),
        ).select_from(t)
        stmt = stmt.where(checksums.target_range(t, table.key, table.key_types, lo, hi))
        with self._target() as conn:
            count, total = conn.execute(stmt).one()
        return int(count), int(total)

    def _rows(
        self, table: _Table, lo: Key | None, hi: Key | None, names: list[str]
    ) -> tuple[list[compare.Row], list[compare.Row]]:
        assert self._pg is not None
        types = [table.types[i] for i in table.index(names)]
        where, params = checksums.pg_range(table.key, table.key_types, lo, hi, keyword=False)
        _, _, source = compare.read_source(
            self._pg,
            table.ref.schema,
            table.ref.table,
            where=where,
            params=tuple(params),
            columns=(names, types),
        )
        with self._target() as conn:
            raw = conn.connection.dbapi_connection
            target = compare.read_target(
                raw,
                table.target.table,
                names,
                types,
                table.target.database,
                where=lambda t: checksums.target_range(t, table.key, table.key_types, lo, hi),
            )
        return source, target

    def _target(self) -> Any:
        assert self._engine is not None
        try:
            return self._engine.connect()
        except Exception as e:
            raise classify(e, str(self._cfg.target.url)) from e


# ---------------------------------------------------------------- report


def render(result: TableResult, show: int = 20) -> str:
    head = f"{result.source} -> {result.target}: "
    if result.note == "missing in the target":
        return head + f"MISSING in the target ({result.rows:,} rows in the source)"
    if result.note is not None:
        return head + result.note
    chunks = f"{result.chunks:,} chunk{'s' if result.chunks != 1 else ''}"
    counts = f"{result.rows:,} rows in the source, {result.target_rows:,} in the target"
    if result.equal:
        return head + f"equal ({counts}, {chunks})"
    lines = [head + f"DIFFERENT ({counts}, {chunks})"]
    for label, keys in (
        ("missing in the target", result.missing),
        ("only in the target", result.extra),
        ("different values", result.different),
    ):
        if keys:
            shown = ", ".join(_key_text(k) for k in keys[:show])
            more = f" and {len(keys) - show:,} more" if len(keys) > show else ""
            lines.append(f"  {label} ({len(keys):,}): {shown}{more}")
    return "\n".join(lines)


def as_json(result: TableResult) -> dict[str, Any]:
    return {
        "source": str(result.source),
        "target": str(result.target),
        "equal": result.equal,
        "rows": result.rows,
        "target_rows": result.target_rows,
        "chunks": result.chunks,
        "read_row_by_row": result.read_row_by_row,
        "missing": [_key_text(k) for k in result.missing],
        "extra": [_key_text(k) for k in result.extra],
        "different": [_key_text(k) for k in result.different],
        "note": result.note,
    }


def _key_text(key: Key) -> str:
    if len(key) == 1:
        return repr(key[0])
    return "(" + ", ".join(repr(v) for v in key) + ")"
