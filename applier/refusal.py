"""Target tables the applier refuses to write, because writing would silently change other rows.

- A target table takes the changes of one source table only. The first source table to use
  it is recorded in ``_cdc_tables``; a second one (two names mapped to one table by
  ``target.rename`` / ``target.schemas``, or ``s.t`` beside ``public."s__t"``, or a mapping
  changed since) is refused: a TRUNCATE of one would empty the other, their rows would mix.
- ``INSERT ... ON DUPLICATE KEY UPDATE`` fires on any unique index, so every unique index of
  the target table must hold the source key (then it can only meet the row with that key),
  and one must be exactly the key (else an update adds a row). A source table without a key
  may hold equal rows: its target table may have no unique index at all.
- No source table goes to one of the applier's own tables.
- On a Galera cluster every table needs a primary key (Galera replicates rows by it; a
  DELETE on a keyless table is not supported): a source table without one is refused.
- With ``target.partitions`` N > 1, a target table with a foreign key (its own, or another
  table's that references it): the partitions apply rows of different keys apart, so the
  constraint would fail now and then, or hold rows back, where the source had it hold.

The caller keeps what the target says per table (``TargetFacts``) and reads it again after a
schema error or a reconnect; a refused table's messages go to the dead-letter queue with the
reason, which says how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection

from shared.naming import TargetRef, is_applier_table
from shared.tables import TableRef

owners_table = sa.Table(
    "_cdc_tables",
    sa.MetaData(),
    sa.Column("db", mysql.VARCHAR(64), primary_key=True),
    sa.Column("tbl", mysql.VARCHAR(64), primary_key=True),
    sa.Column("src_schema", mysql.VARCHAR(64), nullable=False),
    sa.Column("src_table", mysql.VARCHAR(64), nullable=False),
    mariadb_engine="InnoDB",
    # as every table the applier creates (applier/schema.py): names compare exactly
    mariadb_charset="utf8mb4",
    mariadb_collate="utf8mb4_nopad_bin",
)

_EXISTS = sa.text(
    "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = :db AND table_name = :t"
)
_FOREIGN_KEYS = sa.text(
    "SELECT constraint_name FROM information_schema.referential_constraints"
    " WHERE (constraint_schema = :db AND table_name = :t)"
    " OR (unique_constraint_schema = :db AND referenced_table_name = :t)"
    " ORDER BY constraint_name"
)
_UNIQUE_INDEXES = sa.text(
    "SELECT index_name, column_name FROM information_schema.statistics"
    " WHERE table_schema = :db AND table_name = :t AND non_unique = 0"
    " ORDER BY index_name, seq_in_index"
)


@dataclass
class TargetFacts:
    """What the target says about one table."""

    owner: TableRef | None  # the source table recorded as feeding it
    # index -> its columns (lower case); None: no such table (it is made with the source key)
    uniques: dict[str, tuple[str, ...]] | None = None
    foreign_keys: tuple[str, ...] = ()  # on the table or referencing it


@dataclass(frozen=True)
class Refusal:
    source: TableRef  # the source table whose changes are refused
    # applier_table, shared_target, galera_needs_key, foreign_key_partitions, unique_index,
    # no_unique_key
    reason: str
    text: str


def read_facts(conn: Connection, target: TargetRef, database: str) -> TargetFacts:
    """The recorded owner and the unique indexes (none if the table does not exist)."""
    db = target.database or database
    owner = conn.execute(
        sa.select(owners_table.c.src_schema, owners_table.c.src_table).where(
            owners_table.c.db == db, owners_table.c.tbl == target.table
        )
    ).first()
    uniques: dict[str, tuple[str, ...]] | None = None
    foreign: tuple[str, ...] = ()
    if conn.execute(_EXISTS, {"db": db, "t": target.table}).scalar():
        uniques = {}
        for index, column in conn.execute(_UNIQUE_INDEXES, {"db": db, "t": target.table}):
            uniques[str(index)] = (*uniques.get(str(index), ()), str(column).lower())
        found = conn.execute(_FOREIGN_KEYS, {"db": db, "t": target.table})
        foreign = tuple(str(r[0]) for r in found)
    conn.commit()
    owned = TableRef(str(owner[0]), str(owner[1])) if owner else None
    return TargetFacts(owned, uniques, foreign)


def record_owner(conn: Connection, target: TargetRef, database: str, source: TableRef) -> TableRef:
    """Record ``source`` as feeding ``target`` unless one is recorded already; the owner."""
    stmt = mysql.insert(owners_table).values(
        db=target.database or database,
        tbl=target.table,
        src_schema=source.schema,
        src_table=source.table,
    )
    # A row already there stays as it is (a no-op assignment keeps the statement valid).
    conn.execute(stmt.on_duplicate_key_update(tbl=owners_table.c.tbl))
    conn.commit()
    owner = read_facts(conn, target, database).owner
    return owner or source


def refusal(
    target: TargetRef,
    sources: list[TableRef],
    key: list[str] | None,
    facts: TargetFacts | None,
    *,
    galera: bool = False,
    partitioned: bool = False,
) -> Refusal | None:
    """Why ``target`` cannot take the changes of ``sources`` (the first is the one a batch
    met first; more than one is itself a refusal), or None. ``key`` is the source key (None:
    not known, e.g. a batch with a TRUNCATE only); ``facts`` None: not read yet;
    ``partitioned``: target.partitions > 1."""
    if not sources:
        return None
    source = sources[0]
    replay = "then send its dead letters back (applier dlq replay)"
    if is_applier_table(target):
        return Refusal(
            source,
            "applier_table",
            f"target table {target} is one of the applier's own tables: the changes of "
            f"{source} cannot go there; fix: give {source} another target name with "
            f"target.rename, {replay}",
        )
    owner = facts.owner if facts and facts.owner else source
    other = next((s for s in sources if s != owner), None)
    if other is not None:
        return Refusal(
            other,
            "shared_target",
            f"target table {target} takes the changes of {owner}; {other} would share it "
            "(a TRUNCATE of one would empty the other, rows of one would overwrite the "
            f"other's): fix: give {other} a target table of its own with target.rename or "
            f"target.schemas, {replay}",
        )
    if galera and key is not None and not key:
        return Refusal(
            source,
            "galera_needs_key",
            f"target table {target} is on a Galera cluster, which needs a primary key on "
            f"every table it replicates, and the source table {source} has none; fix: add "
            f"a primary key to {source} (ALTER TABLE ... ADD PRIMARY KEY (...)), {replay}",
        )
    if partitioned and facts is not None and facts.foreign_keys:
        return Refusal(
            source,
            "foreign_key_partitions",
            f"target table {target} has foreign keys ({', '.join(facts.foreign_keys)}) and "
            "target.partitions > 1 applies rows of different keys apart, so a constraint "
            "between them cannot hold while the partitions run: fix: drop the foreign keys "
            "in MariaDB, or run with target.partitions 1 (README, Parallel apply), "
            f"{replay}",
        )
    if key is None or facts is None or facts.uniques is None:
        return None
    return _unique_refusal(target, source, key, facts.uniques, replay)


def _unique_refusal(
    target: TargetRef,
    source: TableRef,
    key: list[str],
    uniques: dict[str, tuple[str, ...]],
    replay: str,
) -> Refusal | None:
    table = _quoted(target)
    wanted = {k.lower() for k in key}
    shown = ", ".join(key)
    for index, columns in uniques.items():
        if wanted and wanted <= set(columns):
            continue
        what = "the primary key" if index == "PRIMARY" else f"the unique index {index}"
        drop = "DROP PRIMARY KEY" if index == "PRIMARY" else f"DROP INDEX {_quote(index)}"
        if not wanted:
            why = (
                f"but the source table {source} has no primary key, so it may hold equal "
                "rows, which the index would refuse or merge"
            )
        else:
            why = (
                f"which does not hold the key of the source table {source} ({shown}): "
                "INSERT ... ON DUPLICATE KEY UPDATE would overwrite another row that shares "
                f"({', '.join(columns)})"
            )
        return Refusal(
            source,
            "unique_index",
            f"target table {target} has {what} on ({', '.join(columns)}), {why}; fix: "
            f"ALTER TABLE {table} {drop}"
            + (f", ADD PRIMARY KEY ({_quoted_list(key)})" if index == "PRIMARY" and key else "")
            + f", {replay}",
        )
    if wanted and not any(set(columns) == wanted for columns in uniques.values()):
        return Refusal(
            source,
            "no_unique_key",
            f"target table {target} has no primary key or unique index on the key of the "
            f"source table {source} ({shown}): an update would add a row instead of changing "
            f"it; fix: ALTER TABLE {table} ADD PRIMARY KEY ({_quoted_list(key)}), {replay}",
        )
    return None


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _quoted(target: TargetRef) -> str:
    table = _quote(target.table)
    return f"{_quote(target.database)}.{table}" if target.database else table


def _quoted_list(names: list[str]) -> str:
    return ", ".join(_quote(n) for n in names)
