"""The applier's position, kept in the target database in the same transaction as the rows.

One row per slot and partition (``part``: 0 .. target.partitions - 1; 0 alone when
partitions = 1): the position (shared/position.py) of the last change applied, in its text
form, with its transaction's commit LSN and a few columns for people to read. Because the rows
and the position commit together, a message redelivered after any crash is recognised and
skipped: replays change nothing. Each partition's applier writes its own row only; the
barriers (applier/barrier.py) read every row.

A table made before partitions (keyed by slot alone) is upgraded at start by one ALTER: its
row becomes partition 0's, which is what a single queue's chain is.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection

from shared.envelope import Envelope
from shared.errors import SetupError
from shared.position import Position

TABLE_NAME = "_cdc_checkpoint"

_metadata = sa.MetaData()
checkpoint_table = sa.Table(
    TABLE_NAME,
    _metadata,
    sa.Column("slot", mysql.VARCHAR(63), primary_key=True),
    # Not "partition": a reserved word in MariaDB.
    sa.Column("part", mysql.SMALLINT(unsigned=True), primary_key=True, autoincrement=False),
    sa.Column("commit_lsn", mysql.BIGINT(unsigned=True), nullable=False),
    # How many changes of that transaction were applied: written by the first version, whose
    # commit_lsn was where the commit record ends; 0 since.
    sa.Column("done", mysql.INTEGER(unsigned=True), nullable=False),
    sa.Column("complete", mysql.BOOLEAN(), nullable=False),
    sa.Column("chunk", mysql.INTEGER(unsigned=True), nullable=False),
    sa.Column("snapshot", mysql.BOOLEAN(), nullable=False),  # a copy of tables
    sa.Column("xid", mysql.BIGINT(unsigned=True), nullable=False),
    sa.Column("commit_time", mysql.VARCHAR(40), nullable=False),
    sa.Column("applied_at", mysql.DATETIME(fsp=6), nullable=False),
    sa.Column("position", mysql.VARCHAR(80), nullable=True),  # NULL: written by the first version
    # target.partitions when the row was written; NULL: by a version that did not record it.
    sa.Column("parts", mysql.SMALLINT(unsigned=True), nullable=True),
    mariadb_engine="InnoDB",
    mariadb_charset="utf8mb4",
)
# Columns added after the table's first version, added to an existing table at start.
_ADDED = ("position VARCHAR(80) NULL", "parts SMALLINT UNSIGNED NULL")
# Keyed by slot alone before partitions: one statement (atomic in MariaDB, so a crash leaves the
# old table or the new one) adds the column, every existing row becoming partition 0's, and
# widens the key. Two appliers upgrading at once: the second rebuilds the same key again.
_UPGRADE = (
    f"ALTER TABLE {TABLE_NAME} ADD COLUMN IF NOT EXISTS part SMALLINT UNSIGNED NOT NULL "
    "DEFAULT 0 AFTER slot, DROP PRIMARY KEY, ADD PRIMARY KEY (slot, part)"
)
_KEY_COLUMNS = sa.text(
    "SELECT column_name FROM information_schema.statistics WHERE table_schema = DATABASE()"
    " AND table_name = :table AND index_name = 'PRIMARY' ORDER BY seq_in_index"
)


def _upsert() -> sa.Insert:
    stmt = mysql.insert(checkpoint_table)
    updated = (c.name for c in checkpoint_table.columns if c.name not in ("slot", "part"))
    return stmt.on_duplicate_key_update({name: stmt.inserted[name] for name in updated})


# Built once: built per batch, its alias of the inserted row left about a hundred objects in
# reference cycles each time, which the cycle collector (run rarely: shared/cli.py) then
# scanned by the hundred thousand, a pause in the latency tail (docs/performance.md).
_UPSERT = _upsert()


def another_layout(rows: list[tuple[int, int | None]], partitions: int) -> bool:
    """Whether the slot's checkpoint rows, (part, parts) each, were written under another
    target.partitions than ``partitions``. A row that does not say (NULL parts) is taken to
    be of this layout, unless it is a single queue's row alone (from before partitions)."""
    if any(part >= partitions or parts not in (None, partitions) for part, parts in rows):
        return True
    unrecorded = all(parts is None for _, parts in rows)
    return partitions > 1 and unrecorded and [part for part, _ in rows] == [0]


class CheckpointStore:
    def __init__(self, slot: str, partition: int = 0, partitions: int = 1) -> None:
        self._slot = slot
        self._partition = partition
        self._partitions = partitions

    def ensure_table(self, conn: Connection) -> None:
        checkpoint_table.create(conn, checkfirst=True)
        for column in _ADDED:
            conn.exec_driver_sql(f"ALTER TABLE {TABLE_NAME} ADD COLUMN IF NOT EXISTS {column}")
        key = [str(r[0]).lower() for r in conn.execute(_KEY_COLUMNS, {"table": TABLE_NAME})]
        if key == ["slot"]:
            conn.exec_driver_sql(_UPGRADE)
        conn.commit()

    def relayout(self, conn: Connection) -> Position | None:
        """After target.partitions changed: every partition's row to the newest of the slot's
        rows; the position they start from, or None if the layout did not change.

        The rows of another layout describe its chains, not this one's. A transaction the
        slot sends again (its position was not yet confirmed to PostgreSQL when the extractor
        stopped) goes to other partitions now, whose rows may be behind it: applied again
        there, after what followed it elsewhere (a key moved away by a barrier that partition
        0's row passed already), it would bring back what the source no longer has. Both
        processes refuse to start while a queue of another layout holds messages, so the old
        layout applied everything it was sent: up to its newest row, every partition may
        start from there, and what is sent again is a duplicate everywhere."""
        c = checkpoint_table.c
        found = (
            conn.execute(sa.select(checkpoint_table).where(c.slot == self._slot).with_for_update())
            .mappings()
            .all()
        )
        if not found or not another_layout(
            [(r["part"], r["parts"]) for r in found], self._partitions
        ):
            conn.commit()
            return None
        newest = max(
            found, key=lambda r: self._position(r["commit_lsn"], r["complete"], r["position"])
        )
        conn.execute(
            sa.delete(checkpoint_table).where(c.slot == self._slot, c.part >= self._partitions)
        )
        for part in range(self._partitions):
            conn.execute(_UPSERT, {**newest, "part": part, "parts": self._partitions})
        conn.commit()
        return self._position(newest["commit_lsn"], newest["complete"], newest["position"])

    def read(self, conn: Connection, *, lock: bool = True) -> Position | None:
        """Inside the apply transaction, with a row lock so two appliers can never interleave."""
        c = checkpoint_table.c
        stmt = sa.select(c.commit_lsn, c.complete, c.position).where(
            c.slot == self._slot, c.part == self._partition
        )
        if lock:
            stmt = stmt.with_for_update()
        row = conn.execute(stmt).first()
        return None if row is None else self._position(*row)

    def read_all(self, conn: Connection, partitions: int) -> list[Position | None]:
        """Every partition's row (None: nothing applied there yet), without locks: what the
        barriers decide by. On Galera the session's wsrep_sync_wait makes the read see every
        commit made on any node before it (applier/target.py)."""
        c = checkpoint_table.c
        stmt = sa.select(c.part, c.commit_lsn, c.complete, c.position).where(c.slot == self._slot)
        found: list[Position | None] = [None] * partitions
        for part, commit_lsn, complete, position in conn.execute(stmt):
            if int(part) < partitions:
                found[int(part)] = self._position(commit_lsn, complete, position)
        return found

    def _position(self, commit_lsn: int, complete: bool, position: str | None) -> Position:
        if position is not None:
            return Position.parse(str(position))
        # Written by the first version, which placed a transaction at the END of its commit
        # record: all of it means "every transaction committed before that point".
        if complete:
            return Position.before(int(commit_lsn))
        raise SetupError(
            f"the checkpoint of slot {self._slot} was left in the middle of a transaction by the "
            "first version of the applier, whose positions this version cannot continue: run "
            "the previous version of both processes until the transaction is applied "
            "(_cdc_checkpoint.complete = 1), then upgrade (see the README's upgrade notes)"
        )

    def write(self, conn: Connection, env: Envelope, at: Position | None = None) -> Position:
        """This partition's row to ``env``'s end, or to ``at`` (a barrier's arrival: where
        this partition's chain stood before it)."""
        end = env.end if at is None else at
        values = {
            "slot": self._slot,
            "part": self._partition,
            "commit_lsn": env.commit_lsn,
            "done": 0,
            "complete": end.complete,
            "chunk": env.chunk,
            "snapshot": env.copy,
            "xid": env.xid,
            "commit_time": env.commit_time[:40],
            "applied_at": datetime.now(UTC).replace(tzinfo=None),
            "position": str(end),
            "parts": self._partitions,
        }
        conn.execute(_UPSERT, values)
        return end
