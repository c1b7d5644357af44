"""Which source table (by OID) each target table mirrors, and which source column (by attnum)
each of its columns is: ``_cdc_relations``, written in the same transaction as the checkpoint.

PostgreSQL knows the old name of a renamed column or table only implicitly: the column keeps
its attnum, the table its OID. The DDL capture's messages (sql/ddl-capture.sql) name columns by
attnum and tables by OID, and this record is the previous shape to compare them with, as of
exactly the point of the stream the target is at. It is written by every schema change the
applier mirrors and by every copy of a table (whose truncate carries the OID and attnums).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection

from shared.envelope import TRUNCATE, Envelope
from shared.naming import Naming, TargetRef

relations_table = sa.Table(
    "_cdc_relations",
    sa.MetaData(),
    sa.Column("db", mysql.VARCHAR(64), primary_key=True),
    sa.Column("tbl", mysql.VARCHAR(64), primary_key=True),
    sa.Column("relid", mysql.BIGINT(unsigned=True), nullable=False),
    sa.Column("attnums", mysql.LONGTEXT(), nullable=False),  # JSON: {"attnum": "column"}
    mariadb_engine="InnoDB",
    mariadb_charset="utf8mb4",
    mariadb_collate="utf8mb4_nopad_bin",
)


@dataclass(frozen=True)
class Relation:
    target: TargetRef
    relid: int
    attnums: dict[int, str]  # the source's column numbers -> target column names


def ensure_table(conn: Connection) -> None:
    relations_table.create(conn, checkfirst=True)
    conn.commit()


def _ref(db: str, tbl: str) -> TargetRef:
    return TargetRef(db or None, tbl)


def _row(db: str, tbl: str, relid: int, attnums: str) -> Relation:
    return Relation(_ref(db, tbl), int(relid), {int(k): v for k, v in json.loads(attnums).items()})


def of_target(conn: Connection, target: TargetRef) -> Relation | None:
    c = relations_table.c
    row = conn.execute(
        sa.select(c.db, c.tbl, c.relid, c.attnums).where(
            c.db == (target.database or ""), c.tbl == target.table
        )
    ).first()
    return None if row is None else _row(*row)


def of_relid(conn: Connection, relid: int) -> list[Relation]:
    c = relations_table.c
    rows = conn.execute(
        sa.select(c.db, c.tbl, c.relid, c.attnums).where(c.relid == relid)
    ).fetchall()
    return [_row(*r) for r in rows]


def record(conn: Connection, target: TargetRef, relid: int, attnums: dict[int, str]) -> None:
    stmt = mysql.insert(relations_table).values(
        db=target.database or "",
        tbl=target.table,
        relid=relid,
        attnums=json.dumps({str(k): v for k, v in sorted(attnums.items())}),
    )
    conn.execute(
        stmt.on_duplicate_key_update(relid=stmt.inserted.relid, attnums=stmt.inserted.attnums)
    )


def forget(conn: Connection, target: TargetRef) -> None:
    c = relations_table.c
    conn.execute(
        sa.delete(relations_table).where(c.db == (target.database or ""), c.tbl == target.table)
    )


def record_copies(conn: Connection, batch: list[Envelope], naming: Naming) -> None:
    """Inside a batch's transaction: each copied table's OID and attnums (the truncate that
    starts its copy carries them), so later schema changes find their columns."""
    for env in batch:
        if not (env.copy and env.changes):
            continue
        change = env.changes[0]  # a copy's message holds one table; its first starts with this
        if change.op != TRUNCATE or not change.ddl or "attnums" not in change.ddl:
            continue
        attnums = change.ddl["attnums"]
        if len(attnums) != len(change.columns):
            continue
        target = naming.target(change.schema, change.table)
        record(
            conn, target, int(change.ddl["relid"]), dict(zip(attnums, change.columns, strict=True))
        )
