"""The bulk path's statements (applier/bulk.py), against a fake connection that records them;
the real server runs them in tests/e2e/test_bulk.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.dialects.mysql import mariadbconnector

from applier.bulk import SEQ, STAGE, BulkPath
from applier.plan import Group
from applier.upsert import Compiled, driver_safe
from shared.errors import RowRejected
from shared.naming import TargetRef


class FakeResult:
    def __init__(self, row: tuple[Any, ...] | None) -> None:
        self._row = row

    def first(self) -> tuple[Any, ...] | None:
        return self._row


class FakeDriver:
    warnings = 0


class FakeConnection:
    def __init__(self, warning: tuple[str, int, str] | None = None) -> None:
        self.sql: list[str] = []
        self.files: list[bytes] = []
        self._warning = warning
        self.connection = type("Pooled", (), {"driver_connection": FakeDriver()})()

    def exec_driver_sql(self, sql: str) -> FakeResult:
        self.sql.append(sql)
        if sql.startswith("LOAD DATA"):
            path = sql.split("'")[1]
            self.files.append(Path(path).read_bytes())
            self.connection.driver_connection.warnings = 1 if self._warning else 0
        if sql.startswith("SHOW WARNINGS"):
            return FakeResult(self._warning)
        return FakeResult(None)


def bulk(min_rows: int = 2) -> BulkPath:
    return BulkPath(driver_safe(mariadbconnector.dialect()), min_rows, "test")


def group(
    op: str, names: tuple[str, ...], rows: list[tuple[Any, ...]], key: tuple[str, ...]
) -> Group:
    stmt = Compiled("", tuple(range(len(names))), names)
    return Group(TargetRef("db", "t`x"), op, stmt, rows, key)


def test_an_upsert_group_is_loaded_then_applied_in_order() -> None:
    path, conn = bulk(), FakeConnection()
    g = group("upsert", ("id", "b", "v"), [(1, b"\x00\t", "a\tb"), (1, None, None)], ("id",))
    assert path.takes(g)
    assert path.send(conn, g)  # type: ignore[arg-type]
    path.close()
    drop, create, load, upsert, drop_again = conn.sql
    assert drop == f"DROP TEMPORARY TABLE IF EXISTS `{STAGE}`"
    assert create == (
        f"CREATE TEMPORARY TABLE `{STAGE}` (`{SEQ}` BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY)"
        " SELECT `id`, `b`, `v` FROM `db`.`t``x` WHERE 0"
    )
    assert load.startswith("LOAD DATA LOCAL INFILE '")
    assert load.endswith(
        f"INTO TABLE `{STAGE}` CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\t' ESCAPED BY '\\'"
        " LINES TERMINATED BY '\n' (`id`, @b1, `v`) SET `b` = UNHEX(@b1)"
    )
    assert upsert == (
        f"INSERT INTO `db`.`t``x` (`id`, `b`, `v`) SELECT `id`, `b`, `v` FROM `{STAGE}`"
        f" ORDER BY `{SEQ}` ON DUPLICATE KEY UPDATE `b` = VALUES(`b`), `v` = VALUES(`v`)"
    )
    assert drop_again == f"DROP TEMPORARY TABLE `{STAGE}`"
    assert conn.files == [b"1\t00" + b"09" + b"\ta\\tb\n1\t\\N\t\\N\n"]


def test_a_delete_group_joins_on_its_key() -> None:
    path, conn = bulk(), FakeConnection()
    g = group("delete", ("a", "b"), [("x", 1), ("y", 2)], ("a", "b"))
    assert path.send(conn, g)  # type: ignore[arg-type]
    assert conn.sql[3] == (
        f"DELETE t FROM `db`.`t``x` AS t JOIN `{STAGE}` AS s ON t.`a` = s.`a` AND t.`b` = s.`b`"
    )


def test_which_groups_take_the_bulk_path() -> None:
    rows = [(1, 2), (3, 4)]
    assert bulk(2).takes(group("upsert", ("id", "v"), rows, ("id",)))
    assert bulk(2).takes(group("upsert", ("id", "v"), rows, ()))  # plain inserts
    assert not bulk(3).takes(group("upsert", ("id", "v"), rows, ("id",)))  # too few rows
    assert not bulk(0).takes(group("upsert", ("id", "v"), rows, ("id",)))  # off
    assert bulk(2).takes(group("delete", ("id",), [(1,), (2,)], ("id",)))
    # Without a key a delete matches the whole row, NULL-safely, one row only.
    assert not bulk(2).takes(group("delete", ("id", "v"), rows, ()))
    assert not bulk(2).takes(group("update", ("id", "v"), rows, ("id",)))
    assert not bulk(2).takes(group("upsert", (SEQ, "v"), rows, (SEQ,)))


def test_a_warning_of_the_load_refuses_the_group_naming_the_row() -> None:
    path = bulk()
    conn = FakeConnection(("Warning", 1265, "Data truncated for column 'd' at row 2"))
    g = group("upsert", ("id", "d"), [(7, "2024-01-01"), (8, "infinity")], ("id",))
    with pytest.raises(RowRejected) as e:
        path.send(conn, g)  # type: ignore[arg-type]
    assert "1265" in str(e.value) and "id=8" in str(e.value), str(e.value)
    assert not any(s.startswith("INSERT") for s in conn.sql)


def test_values_without_a_file_form_go_by_executemany() -> None:
    path, conn = bulk(), FakeConnection()
    g = group("upsert", ("id", "v"), [(1, {"a": 1}), (2, {"b": 2})], ("id",))
    assert not path.send(conn, g)  # type: ignore[arg-type]
    assert conn.sql == []
