"""Target tables the applier must not write, and source tables that would share one."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest

from applier.checkpoint import TABLE_NAME
from applier.metrics import ApplierMetrics
from applier.refusal import TargetFacts, owners_table, refusal
from applier.schema import TableShape, columns_table
from extractor.targets import refuse_shared_targets
from shared.config import NamingConfig
from shared.envelope import Change
from shared.errors import SetupError
from shared.naming import APPLIER_TABLES, Naming, TargetRef
from shared.tables import TableRef

T = TargetRef(None, "t")
A, B = TableRef("public", "t"), TableRef("s", "t")


def facts(owner: TableRef | None = A, **uniques: tuple[str, ...]) -> TargetFacts:
    return TargetFacts(owner, dict(uniques))


# ---------------------------------------------------------------- unique indexes


def test_the_key_as_primary_key_is_fine() -> None:
    assert refusal(T, [A], ["id"], facts(PRIMARY=("id",))) is None


def test_extra_unique_index_holding_the_key_is_fine() -> None:
    # It can only meet the row with the same key.
    assert refusal(T, [A], ["id"], facts(PRIMARY=("id",), uq=("email", "id"))) is None


def test_unique_index_without_the_key_is_refused() -> None:
    found = refusal(T, [A], ["id"], facts(PRIMARY=("id",), uq_email=("email",)))
    assert found is not None
    assert (found.source, found.reason) == (A, "unique_index")
    assert "target table t has the unique index uq_email on (email)" in found.text
    assert "public.t (id)" in found.text
    assert "ALTER TABLE `t` DROP INDEX `uq_email`" in found.text
    assert "applier dlq replay" in found.text


def test_another_primary_key_is_refused_with_the_right_one_as_fix() -> None:
    found = refusal(T, [A], ["a", "b"], facts(PRIMARY=("a",)))
    assert found is not None and found.reason == "unique_index"
    assert "the primary key on (a)" in found.text
    assert "ALTER TABLE `t` DROP PRIMARY KEY, ADD PRIMARY KEY (`a`, `b`)" in found.text


def test_no_unique_index_on_the_key_is_refused() -> None:
    # An upsert would add a row instead of changing it.
    found = refusal(TargetRef("db", "t"), [A], ["id"], facts(uq=("id", "x")))
    assert found is not None and found.reason == "no_unique_key"
    assert "ALTER TABLE `db`.`t` ADD PRIMARY KEY (`id`)" in found.text


def test_key_columns_compare_without_case() -> None:
    assert refusal(T, [A], ["Id"], facts(PRIMARY=("id",))) is None


def test_keyless_source_refuses_any_unique_index() -> None:
    assert refusal(T, [A], [], facts()) is None
    found = refusal(T, [A], [], facts(uq_a=("a",)))
    assert found is not None and found.reason == "unique_index"
    assert "has no primary key" in found.text


def test_unknown_key_or_missing_table_checks_no_index() -> None:
    assert refusal(T, [A], None, facts(uq=("x",))) is None  # a TRUNCATE alone
    assert refusal(T, [A], ["id"], TargetFacts(None, None)) is None  # made with the key
    assert refusal(T, [A], ["id"], None) is None
    assert refusal(T, [], ["id"], facts(uq=("x",))) is None


# ---------------------------------------------------------------- one source table per target


def test_the_recorded_owner_goes_on_another_source_is_refused() -> None:
    assert refusal(T, [A], ["id"], facts(A, PRIMARY=("id",))) is None
    found = refusal(T, [B], ["id"], facts(A, PRIMARY=("id",)))
    assert found is not None
    assert (found.source, found.reason) == (B, "shared_target")
    assert found.text.startswith("target table t takes the changes of public.t; s.t would share")
    assert "target.rename" in found.text


def test_two_sources_in_one_batch_without_an_owner_yet() -> None:
    found = refusal(T, [A, B], ["id"], facts(None))
    assert found is not None and found.source == B


def test_no_source_goes_to_an_applier_table() -> None:
    for name in APPLIER_TABLES:
        found = refusal(TargetRef(None, name), [A], ["id"], None)
        assert found is not None and found.reason == "applier_table"
    assert refusal(TargetRef("other", "_cdc_checkpoint"), [A], ["id"], None) is None


def test_the_applier_tables_are_all_named() -> None:
    assert {TABLE_NAME, columns_table.name, owners_table.name} == APPLIER_TABLES


def change(schema: str, table: str, *columns: str) -> Change:
    return Change(
        "insert", "0/1", schema, table, list(columns), ["integer"] * len(columns), [1] * len(columns),
        ["id"], None,
    )  # fmt: skip


def test_a_shape_takes_its_columns_from_its_first_source_only() -> None:
    shape = TableShape(T)
    shape.add(change("public", "t", "id", "a"))
    shape.add(change("s", "t", "id", "b"))
    shape.add(change("s", "t", "id", "c"))
    assert shape.sources == [A, B]
    assert list(shape.columns) == ["id", "a"]


# ---------------------------------------------------------------- at the extractor's start


def target(
    rename: dict[TableRef, str] | None = None, schemas: dict[str, str] | None = None
) -> NamingConfig:
    return NamingConfig(rename=rename or {}, schemas=schemas or {})


def test_shared_targets() -> None:
    naming = Naming({TableRef("public", "a"): "b"}, {"x": "db"})
    tables = [
        TableRef("public", "a"),
        TableRef("public", "b"),
        TableRef("s", "t"),
        TableRef("public", "s__t"),
        TableRef("x", "t"),  # db.t: apart from public.t
        TableRef("public", "t"),
        TableRef("public", "_cdc_columns"),
    ]
    assert naming.shared_targets(tables) == [
        (TargetRef(None, "b"), [TableRef("public", "a"), TableRef("public", "b")]),
        (TargetRef(None, "s__t"), [TableRef("s", "t"), TableRef("public", "s__t")]),
        (TargetRef(None, "_cdc_columns"), [TableRef("public", "_cdc_columns")]),
    ]


def test_the_extractor_refuses_two_tables_for_one_target() -> None:
    tables = [TableRef("public", "s__t"), TableRef("s", "t")]
    with pytest.raises(SetupError) as e:
        refuse_shared_targets(tables, target())
    assert str(e.value).startswith(
        "source tables public.s__t and s.t would both go to target table s__t;"
    )
    assert "CDC_TARGET_RENAME='s.t=<new name>'" in str(e.value)
    refuse_shared_targets(tables, target({TableRef("s", "t"): "other"}))
    refuse_shared_targets(tables, target(schemas={"s": "db"}))


def test_the_extractor_refuses_a_target_of_the_applier_s_own() -> None:
    with pytest.raises(SetupError, match="one of the applier's own tables"):
        refuse_shared_targets([TableRef("public", "_cdc_checkpoint")], target())


def test_refusals_are_a_labelled_gauge() -> None:
    refused = [("t", "s.t", "shared_target")]
    metrics = ApplierMetrics()
    metrics.watch_refusals(lambda: refused)
    text = generate_latest(metrics.registry).decode()
    assert 'cdc_applier_refused_tables{reason="shared_target",source="s.t",table="t"} 1.0' in text
    refused.clear()
    assert "cdc_applier_refused_tables{" not in generate_latest(metrics.registry).decode()


# ---------------------------------------------------------------- foreign keys, partitions


def test_a_table_with_a_foreign_key_is_refused_with_partitions() -> None:
    fk = TargetFacts(A, {"PRIMARY": ("id",)}, foreign_keys=("lines_order_fk",))
    found = refusal(T, [A], ["id"], fk, partitioned=True)
    assert found is not None and found.reason == "foreign_key_partitions"
    assert "lines_order_fk" in found.text and "target.partitions" in found.text
    # One partition applies in the source's order, whole transactions: a foreign key holds.
    assert refusal(T, [A], ["id"], fk, partitioned=False) is None
    assert refusal(T, [A], ["id"], facts(PRIMARY=("id",)), partitioned=True) is None
