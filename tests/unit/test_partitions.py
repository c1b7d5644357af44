"""Partitions mapped to their root, the filter on partitions, identity reasons (no servers)."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import Any

import pytest

from extractor.catalog import CatalogWatch, _Identity, _why
from extractor.filtering import keep_change
from extractor.metrics import ExtractorMetrics
from extractor.partitions import Layout, Partitions, load_layout, refuse_partition_names
from extractor.snapshot import BACKFILL_PREFIX
from extractor.wal2json import Wal2Json, wal2json_options
from shared.config import SourceConfig
from shared.errors import ConfigError
from shared.secret import Secret
from shared.tables import TableRef, parse_patterns

M, M1, M2, M2A, OLD = (
    TableRef("public", "m"),
    TableRef("public", "m1"),
    TableRef("public", "m2"),
    TableRef("public", "m2a"),
    TableRef("archive", "m_old"),
)
# What the catalog query returns: schema, name, relkind, root schema, root name, root key.
ROWS = [
    ("public", "m", "p", "public", "m", ["id", "k"]),
    ("public", "m1", "r", "public", "m", None),
    ("public", "m2", "p", "public", "m", None),
    ("public", "m2a", "r", "public", "m", None),
    ("archive", "m_old", "r", "public", "m", None),
    ("public", "plain", "r", "public", "plain", None),
    ("public", "nokey", "p", "public", "nokey", []),
    ("public", "nokey1", "r", "public", "nokey", None),
]


class FakeCursor:
    def __init__(self, conn: FakeConn) -> None:
        self._conn = conn
        self._rows: list[Any] = []

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, query: str, params: Any = None) -> None:
        self._conn.executed.append((query, params))
        if "RECURSIVE" in query:
            self._rows = list(self._conn.rows)
        elif "relreplident" in query:
            self._rows = list(self._conn.identities)
        else:
            self._rows = [(False,)]

    def fetchall(self) -> list[Any]:
        return self._rows

    def fetchone(self) -> Any:
        return self._rows[0]


class FakeConn:
    def __init__(self, rows: list[Any], identities: list[Any] | None = None) -> None:
        self.rows = rows
        self.identities = identities or []
        self.executed: list[tuple[str, Any]] = []

    def cursor(self) -> FakeCursor:
        return FakeCursor(self)

    def close(self) -> None:
        pass


def source(tables: str = "", exclude: str = "") -> SourceConfig:
    return SourceConfig(
        dsn=Secret("postgresql://x@127.0.0.1/db"),
        slot="s",
        tables=parse_patterns(tables, "source.tables"),
        exclude_tables=parse_patterns(exclude, "source.exclude_tables"),
    )


def partitions(cfg: SourceConfig, rows: list[Any] = ROWS) -> tuple[Partitions, FakeConn]:
    conn = FakeConn(rows)
    parts = Partitions(cfg, lambda: conn)
    parts.adopt(load_layout(conn), conn)
    conn.executed.clear()
    return parts, conn


def change(table: str, op: str = "insert", schema: str = "public", lsn: str = "0/10") -> Any:
    if op == "truncate":
        return {"op": op, "lsn": lsn, "schema": schema, "table": table}
    return {
        "op": op,
        "lsn": lsn,
        "schema": schema,
        "table": table,
        "columns": ["id", "k", "secret"],
        "types": ["integer", "integer", "text"],
        "values": [1, 2, "s"],
        "key": ["id", "k"],
    }


def test_layout_maps_every_level_to_the_root() -> None:
    layout = load_layout(FakeConn(ROWS))
    assert layout.roots == {M: ["id", "k"], TableRef("public", "nokey"): []}
    assert layout.partitions[M2A] == M and layout.partitions[M2] == M
    assert layout.leaves_of(M) == [OLD, M1, M2A]  # not the intermediate partition
    assert TableRef("public", "plain") in layout.tables and M1 not in layout.tables


def test_a_partitions_change_becomes_its_roots() -> None:
    cfg = source("public.m", exclude="")
    parts, _ = partitions(cfg)
    out = keep_change(change("m_old", schema="archive"), cfg.capture, parts)
    assert out is not None and (out["schema"], out["table"]) == ("public", "m")
    out = keep_change(change("m2a"), cfg.capture, parts)
    assert out is not None and out["table"] == "m"
    assert keep_change(change("plain"), cfg.capture, parts) is None


def test_partitions_follow_their_root_whatever_their_own_name() -> None:
    # public.m1 matches the wildcard, but its root is excluded: not captured.
    cfg = source("public.*", exclude="public.m")
    parts, _ = partitions(cfg)
    assert keep_change(change("m1"), cfg.capture, parts) is None
    assert keep_change(change("plain"), cfg.capture, parts) is not None


def test_excluded_columns_are_the_roots() -> None:
    cfg = replace(
        source("public.m"), exclude_columns=parse_patterns("public.m.secret", "c", parts=3)
    )
    parts, _ = partitions(cfg)
    out = keep_change(change("m1"), cfg.capture, parts)
    assert out is not None and out["columns"] == ["id", "k"]


def test_the_roots_key_replaces_a_partitions_own() -> None:
    cfg = source("public.nokey")
    parts, _ = partitions(cfg)
    out = keep_change(change("nokey1"), cfg.capture, parts)
    assert out is not None and out["table"] == "nokey" and out["key"] == []


def test_truncate_of_the_root_passes_and_its_partitions_are_covered() -> None:
    cfg = source("public.m")
    parts, conn = partitions(cfg)
    kept = [
        keep_change(change(t, "truncate", schema=s, lsn="0/20"), cfg.capture, parts)
        for s, t in (("public", "m"), ("public", "m1"), ("public", "m2"), ("archive", "m_old"))
    ]
    assert kept[0] is not None and kept[0]["table"] == "m"
    assert kept[1:] == [None, None, None]
    assert conn.executed == []  # no copy asked for


def test_truncate_of_some_partitions_asks_for_one_copy_of_the_root() -> None:
    cfg = source("public.m")
    parts, conn = partitions(cfg)
    # One statement (one LSN) truncating an intermediate partition and its leaf.
    assert keep_change(change("m2", "truncate", lsn="0/30"), cfg.capture, parts) is None
    assert keep_change(change("m2a", "truncate", lsn="0/30"), cfg.capture, parts) is None
    # Another statement: another copy.
    assert keep_change(change("m1", "truncate", lsn="0/40"), cfg.capture, parts) is None
    emitted = [p for q, p in conn.executed if "pg_logical_emit_message" in q]
    assert len(emitted) == 2
    prefix, body = emitted[0]
    assert prefix == BACKFILL_PREFIX
    assert json.loads(body) == {"slot": "s", "tables": [["public", "m"]]}


def test_a_name_never_seen_reloads_the_layout_once() -> None:
    cfg = source("public.m")
    parts, conn = partitions(cfg)
    conn.rows = [*ROWS, ("public", "m3", "r", "public", "m", None)]
    out = keep_change(change("m3"), cfg.capture, parts)
    assert out is not None and out["table"] == "m"
    reloads = [q for q, _ in conn.executed if "RECURSIVE" in q]
    assert len(reloads) == 1
    # A new name that is no partition: looked up once, then remembered.
    for _ in range(3):
        keep_change(change("other"), cfg.capture, parts)
    assert len([q for q, _ in conn.executed if "RECURSIVE" in q]) == 2


@pytest.mark.parametrize(
    ("tables", "exclude", "message"),
    [
        ("public.m2a", "", "source.tables: public.m2a is a partition of public.m: name the root"),
        ("public.m2", "", "source.tables: public.m2 is a partition of public.m"),
        ("public.m", "public.m1", "source.exclude_tables: public.m1 is a partition of public.m"),
    ],
)
def test_a_filter_naming_a_partition_is_refused(tables: str, exclude: str, message: str) -> None:
    cfg = source(tables, exclude)
    with pytest.raises(ConfigError, match=message):
        refuse_partition_names(cfg.capture, load_layout(FakeConn(ROWS)))


@pytest.mark.parametrize(
    ("tables", "exclude"),
    [("public.m,public.m1", ""), ("public.*", ""), ("public.plain", "public.m1"), ("", "")],
)
def test_filters_naming_roots_are_fine(tables: str, exclude: str) -> None:
    refuse_partition_names(source(tables, exclude).capture, load_layout(FakeConn(ROWS)))


def test_wal2json_does_not_filter_by_name_while_a_captured_table_is_partitioned() -> None:
    capture = source("public.m,public.plain").capture
    assert wal2json_options(capture)["add-tables"] == "public.m,public.plain"
    assert "add-tables" not in wal2json_options(capture, partitioned=True)
    excluding = source("", "public.tmp").capture
    assert "filter-tables" not in wal2json_options(excluding, partitioned=True)


@pytest.mark.parametrize(
    ("tables", "exclude", "by_name"),
    [("public.m,public.plain", "", True), ("", "public.tmp", True), ("public.tmp_*", "", False)],
)
def test_the_catalog_check_knows_when_the_plugin_filters_by_name(
    tables: str, exclude: str, by_name: bool
) -> None:
    """Only then does a table that became partitioned restart the session (without it)."""
    watch = CatalogWatch(source(tables, exclude), ExtractorMetrics(), Wal2Json())
    assert watch._filters_by_name() is by_name


T = TableRef("public", "t")
FULL_FIX = "ALTER TABLE public.t REPLICA IDENTITY FULL"


@pytest.mark.parametrize(
    ("facts", "root_key", "reason"),
    [
        (_Identity("r", "d", True, True, True, False), None, None),
        (_Identity("r", "f", False, True, False, False), None, None),
        (_Identity("r", "d", False, True, False, False), None, "no primary key"),
        (_Identity("r", "d", True, False, False, False), None, "DEFERRABLE"),
        (_Identity("r", "d", True, True, False, False), None, "not valid"),
        (_Identity("r", "n", True, True, True, False), None, "NOTHING"),
        (_Identity("r", "i", True, True, True, False), None, "index was dropped"),
        (_Identity("r", "i", True, True, True, True), None, None),
        (_Identity("f", "d", False, True, False, False), ["id"], "foreign table"),
        (_Identity("r", "d", True, True, True, False), [], "has no primary key"),
        (_Identity("r", "f", False, True, False, False), [], None),
        (_Identity("r", "d", True, True, True, False), ["id"], None),
    ],
)
def test_why_postgres_cannot_identify_rows(
    facts: _Identity, root_key: list[str] | None, reason: str | None
) -> None:
    why = _why(T, M if root_key is not None else T, facts, root_key)
    if reason is None:
        assert why is None
    else:
        assert why is not None and reason in why[0]
        assert why[1].startswith(FULL_FIX) or facts.kind == "f" or "FULL" in why[1]


def test_an_empty_layout_knows_nothing() -> None:
    assert not Layout().knows(M)


def test_each_identity_problem_is_named_once_per_process(caplog: pytest.LogCaptureFixture) -> None:
    metrics = ExtractorMetrics()
    plain = TableRef("public", "plain")
    nothing = [("public", "plain", "r", "n", True, True, True, False)]
    tables = [plain, M]
    gauge = metrics.registry.get_sample_value

    caplog.set_level(logging.INFO, logger="extractor.catalog")
    CatalogWatch(source(), metrics, Wal2Json()).start(FakeConn(ROWS, nothing), tables)
    assert [r.levelname for r in caplog.records if r.name == "extractor.catalog"] == ["ERROR"]
    assert "table_without_identity table=public.plain: REPLICA IDENTITY NOTHING" in caplog.text
    assert gauge("cdc_extractor_unidentified_tables") == 1
    caplog.clear()
    # A new session of the same process (a reconnect, a standby's next try): said already.
    CatalogWatch(source(), metrics, Wal2Json()).start(FakeConn(ROWS, nothing), tables)
    assert [r for r in caplog.records if r.name == "extractor.catalog"] == []
    # Given back: said once, with the fix for what was lost meanwhile.
    CatalogWatch(source(), metrics, Wal2Json()).start(FakeConn(ROWS, []), tables)
    assert [r.levelname for r in caplog.records if r.name == "extractor.catalog"] == ["WARNING"]
    assert "table_identified table=public.plain" in caplog.text
    assert "python -m extractor backfill public.plain" in caplog.text
    assert gauge("cdc_extractor_unidentified_tables") == 0
