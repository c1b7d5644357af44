"""The applier's position, kept in the target database in the same transaction as the rows.

One row per slot: the commit LSN of the last applied message, how many changes of that
transaction are applied, and whether that was all of them (its last chunk). Because the rows
and the position commit together, a message redelivered after any crash is recognised and
skipped: replays change nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection

from shared.envelope import Envelope
from shared.lsn import format_lsn

TABLE_NAME = "_cdc_checkpoint"

_metadata = sa.MetaData()
checkpoint_table = sa.Table(
    TABLE_NAME,
    _metadata,
    sa.Column("slot", mysql.VARCHAR(63), primary_key=True),
    sa.Column("commit_lsn", mysql.BIGINT(unsigned=True), nullable=False),
    sa.Column("done", mysql.INTEGER(unsigned=True), nullable=False),
    sa.Column("complete", mysql.BOOLEAN(), nullable=False),
    sa.Column("chunk", mysql.INTEGER(unsigned=True), nullable=False),
    sa.Column("snapshot", mysql.BOOLEAN(), nullable=False),
    sa.Column("xid", mysql.BIGINT(unsigned=True), nullable=False),
    sa.Column("commit_time", mysql.VARCHAR(40), nullable=False),
    sa.Column("applied_at", mysql.DATETIME(fsp=6), nullable=False),
    mariadb_engine="InnoDB",
    mariadb_charset="utf8mb4",
)


@dataclass(frozen=True)
class Checkpoint:
    """The last applied position: a transaction, how many of its changes are applied, and
    whether that was all of them."""

    commit_lsn: int
    done: int
    complete: bool
    # The transaction is a copy of tables: if it never completes (the extractor stopped during
    # the copy), what follows may go on; the next run copies those tables again.
    snapshot: bool = False

    @property
    def passable(self) -> bool:
        """True if a new transaction may follow: this one is complete, or an abandoned copy."""
        return self.complete or self.snapshot

    def covers(self, env: Envelope) -> bool:
        """True if every change of this message was applied already."""
        if env.commit_lsn != self.commit_lsn:
            return env.commit_lsn < self.commit_lsn
        if self.complete:
            return True
        # Equal ends: the same changes, unless this is the last chunk, whose applying also
        # marks the transaction complete.
        return env.end < self.done or (env.end == self.done and not env.last)

    def applied_of(self, env: Envelope) -> int:
        """How many of ``env``'s changes, from its first, are applied already."""
        if env.commit_lsn == self.commit_lsn and not self.complete:
            return max(0, min(self.done - env.first, len(env.changes)))
        return 0

    def __str__(self) -> str:
        return f"{format_lsn(self.commit_lsn)}{'' if self.complete else f'+{self.done}'}"

    @classmethod
    def after(cls, env: Envelope) -> Checkpoint:
        return cls(env.commit_lsn, env.end, env.last, env.snapshot)


class CheckpointStore:
    def __init__(self, slot: str) -> None:
        self._slot = slot

    def ensure_table(self, conn: Connection) -> None:
        checkpoint_table.create(conn, checkfirst=True)
        conn.commit()

    def read(self, conn: Connection, *, lock: bool = True) -> Checkpoint | None:
        """Inside the apply transaction, with a row lock so two appliers can never interleave."""
        stmt = sa.select(
            checkpoint_table.c.commit_lsn,
            checkpoint_table.c.done,
            checkpoint_table.c.complete,
            checkpoint_table.c.snapshot,
        ).where(checkpoint_table.c.slot == self._slot)
        if lock:
            stmt = stmt.with_for_update()
        row = conn.execute(stmt).first()
        if row is None:
            return None
        return Checkpoint(int(row[0]), int(row[1]), bool(row[2]), bool(row[3]))

    def write(self, conn: Connection, env: Envelope) -> None:
        values = {
            "slot": self._slot,
            "commit_lsn": env.commit_lsn,
            "done": env.end,
            "complete": env.last,
            "chunk": env.chunk,
            "snapshot": env.snapshot,
            "xid": env.xid,
            "commit_time": env.commit_time[:40],
            "applied_at": datetime.now(UTC).replace(tzinfo=None),
        }
        stmt = mysql.insert(checkpoint_table).values(values)
        stmt = stmt.on_duplicate_key_update({k: stmt.inserted[k] for k in values if k != "slot"})
        conn.execute(stmt)
