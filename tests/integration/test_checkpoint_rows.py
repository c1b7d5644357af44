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
    try:
        assert zero.checkpoint() == Position.parse("0/258")
        assert one.checkpoint() is None
        assert one.checkpoints() == [Position.parse("0/258"), None]
        assert sorted(rows(pipeline)) == sorted([(pipeline.name, 0, "0/258"), ("other", 0, "0/5")])
        # Started again (or by a second applier at once): nothing more changes.
        again = appliers(pipeline, 2)[1]
        assert again.checkpoints() == [Position.parse("0/258"), None]
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
