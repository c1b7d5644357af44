"""The checkpoint row per partition (``_cdc_checkpoint`` keyed by slot and partition), and the
upgrade of a table made before partitions, on a real MariaDB."""

from __future__ import annotations

import dataclasses

from applier.apply import Applier
from harness.pipeline import Pipeline
from shared.config import ApplierConfig, load_config
from shared.envelope import Envelope
from shared.position import Position

# The table as the versions before partitions made it: keyed by slot alone.
OLD_TABLE = """CREATE TABLE _cdc_checkpoint (
  slot VARCHAR(63) NOT NULL, commit_lsn BIGINT UNSIGNED NOT NULL,
  done INTEGER UNSIGNED NOT NULL, complete BOOL NOT NULL, chunk INTEGER UNSIGNED NOT NULL,
  snapshot BOOL NOT NULL, xid BIGINT UNSIGNED NOT NULL, commit_time VARCHAR(40) NOT NULL,
  applied_at DATETIME(6) NOT NULL, position VARCHAR(80) NULL, PRIMARY KEY (slot)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"""


OTHER = [("other", 0, "0/5")]  # another slot's row, in the same table


def appliers(pipeline: Pipeline, partitions: int) -> list[Applier]:
    cfg = load_config(ApplierConfig, environ=pipeline.env)
    cfg = dataclasses.replace(cfg, target=dataclasses.replace(cfg.target, partitions=partitions))
    return [Applier(cfg, p) for p in range(partitions)]


def marker(lsn: int) -> Envelope:
    return Envelope("s", lsn, lsn, "", False, 0, True, None, False, [])


def rows(pipeline: Pipeline) -> list[tuple[object, ...]]:
    maria = pipeline.maria()
    try:
        cur = maria.cursor()
        cur.execute("SELECT slot, part, position FROM _cdc_checkpoint ORDER BY slot, part")
        return list(cur.fetchall())
    finally:
        maria.close()


def test_an_old_checkpoint_row_becomes_partition_0s(pipeline: Pipeline) -> None:
    maria = pipeline.maria()
    cur = maria.cursor()
    cur.execute(OLD_TABLE)
    cur.execute(
        "INSERT INTO _cdc_checkpoint VALUES (%s, 600, 0, 1, 0, 0, 7, '', NOW(6), '0/258')",
        (pipeline.name,),
    )
    # Another slot's row in the same table keeps its own place too.
    cur.execute("INSERT INTO _cdc_checkpoint VALUES ('other', 5, 0, 1, 0, 0, 1, '', NOW(6), '0/5')")
    maria.close()

    zero, one = appliers(pipeline, 2)
    old = Position.parse("0/258")
    try:
        assert zero.checkpoint() == old
        # One queue drained (the applier starts only then) into two partitions: the new one
        # starts where the single queue's chain ended.
        assert one.checkpoint() == old
        assert one.checkpoints() == [old, old]
        name = pipeline.name
        assert sorted(rows(pipeline)) == sorted([(name, 0, "0/258"), (name, 1, "0/258"), *OTHER])
        # Started again (or by a second applier at once): nothing more changes.
        again = appliers(pipeline, 2)[1]
        assert again.checkpoints() == [old, old]
        again.close()
    finally:
        zero.close()
        one.close()


def test_each_partition_writes_its_own_row(pipeline: Pipeline) -> None:
    parts = appliers(pipeline, 3)
    try:
        parts[1].skip(marker(0x300), None)
        parts[2].skip(marker(0x500), None, at=Position.before(0x400))
        # Checked against its own row only: partition 1's write did not move partition 2's.
        parts[2].skip(marker(0x500), Position.before(0x400))
        assert [p.checkpoint() for p in parts] == [
            None,
            Position.end_of(0x300),
            Position.end_of(0x500),
        ]
        assert parts[0].checkpoints() == [None, Position.end_of(0x300), Position.end_of(0x500)]
        assert rows(pipeline) == [(pipeline.name, 1, "0/300"), (pipeline.name, 2, "0/500")]
    finally:
        for p in parts:
            p.close()


def test_a_change_of_partitions_starts_every_partition_from_the_newest_row(
    pipeline: Pipeline,
) -> None:
    """From four partitions to two, then back to four: each time every partition's row is
    the newest of the slot's rows, and rows past N are gone (a transaction the slot sends
    again is then a duplicate on every partition, wherever it goes now)."""
    four = appliers(pipeline, 4)
    try:
        for i, lsn in enumerate((0x300, 0x700, 0x500, 0x100)):
            four[i].skip(marker(lsn), None)
        assert four[0].checkpoints() == [Position.end_of(n) for n in (0x300, 0x700, 0x500, 0x100)]
    finally:
        for p in four:
            p.close()
    two = appliers(pipeline, 2)
    try:
        assert [p.checkpoint() for p in two] == [Position.end_of(0x700)] * 2
        assert rows(pipeline) == [(pipeline.name, 0, "0/700"), (pipeline.name, 1, "0/700")]
        two[1].skip(marker(0x900), Position.end_of(0x700))
    finally:
        for p in two:
            p.close()
    again = appliers(pipeline, 4)
    try:
        assert again[3].checkpoints() == [Position.end_of(0x900)] * 4
        # The same layout started again: the rows stay as they are.
        again[2].skip(marker(0xA00), Position.end_of(0x900))
        again += appliers(pipeline, 4)
        assert again[-1].checkpoints() == [
            *[Position.end_of(0x900)] * 2,
            Position.end_of(0xA00),
            Position.end_of(0x900),
        ]
    finally:
        for p in again:
            p.close()
