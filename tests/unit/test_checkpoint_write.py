"""The checkpoint's write, once per batch: the statement it sends, and no garbage left for the
cycle collector."""

from __future__ import annotations

import gc
from typing import Any

from sqlalchemy.dialects.mysql import mariadbconnector

from applier.checkpoint import CheckpointStore, another_layout
from shared import wire
from tests.support.applier_fakes import body


class _Connection:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, dict[str, Any]]] = []

    def execute(self, stmt: Any, params: dict[str, Any] | None = None) -> None:
        self.calls.append((stmt, params or {}))


def test_a_checkpoint_write_upserts_every_column_of_the_slots_row() -> None:
    conn = _Connection()
    env = wire.decode_all(body(100, None))[0]
    CheckpointStore("s").write(conn, env)  # type: ignore[arg-type]
    [(stmt, params)] = conn.calls
    assert params["slot"] == "s" and params["position"] == str(env.end)
    assert params["part"] == 0  # the partition's row (0: the only one with one partition)
    sql = str(stmt.compile(dialect=mariadbconnector.dialect(), column_keys=list(params)))
    insert, update = sql.split("ON DUPLICATE KEY UPDATE")
    assert all(name in insert for name in params)
    key = ("slot", "part")
    assert all(f"{name} = VALUES({name})" in update for name in params if name not in key)
    assert "slot =" not in update and "part =" not in update


def test_a_checkpoint_write_leaves_no_cyclic_garbage() -> None:
    """Garbage in reference cycles waits for the cycle collector, which the applier runs rarely
    and which then pauses it for as long as it scans: 100-300 ms under load, once the
    statement built per batch had left a hundred thousand such objects."""
    conn = _Connection()
    env = wire.decode_all(body(100, None))[0]
    store = CheckpointStore("s")
    gc.collect()
    for _ in range(10):
        store.write(conn, env)  # type: ignore[arg-type]
        conn.calls.clear()  # as MariaDB's connection, nothing of it is kept
    assert gc.collect() == 0


def test_rows_of_another_layout_are_told_apart() -> None:
    """(part, parts) of each of the slot's rows: parts is target.partitions when written,
    None when written by a version that did not record it."""
    assert not another_layout([], 4)
    assert not another_layout([(0, 4), (1, 4), (2, 4), (3, 4)], 4)
    assert another_layout([(0, 1)], 4)  # one queue before: from 1 to 4
    assert another_layout([(0, 4), (1, 4), (2, 4), (3, 4)], 2)  # from 4 to 2
    assert another_layout([(0, 2), (1, 2)], 4)  # from 2 to 4
    assert another_layout([(0, None)], 4)  # a single queue's row, from before partitions
    assert not another_layout([(0, None)], 1)
    # Rows that do not say, all within N: taken as this layout's (written before parts was
    # recorded, by N partitions).
    assert not another_layout([(0, None), (1, None), (2, None)], 4)
    assert another_layout([(0, None), (1, None), (2, None), (3, None)], 2)
