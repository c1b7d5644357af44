"""The type resolver's bookkeeping (the catalog side is tested on a real server in
tests/e2e/test_types.py)."""

from __future__ import annotations

from typing import Any

from extractor.basetypes import TypeResolver
from extractor.decode import RowChange
from extractor.wal2json import decode_record
from shared.types import is_builtin


class Catalog:
    """A stand-in for the catalog: records what it is asked."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.asked: list[list[str]] = []

    def __call__(self, names: list[str]) -> dict[str, str]:
        self.asked.append(names)
        return {n: self.answers.get(n, n) for n in names}


def change(types: list[str], old: list[str] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"types": types, "columns": [f"c{i}" for i in range(len(types))]}
    if old is not None:
        out["old_key"] = {"types": old, "columns": ["c0"], "values": [1]}
    return out


def test_each_name_is_looked_up_once() -> None:
    catalog = Catalog({"price": "numeric(10,3)", "bid": "bigint"})
    resolver = TypeResolver(catalog)
    for _ in range(3):
        c = change(["bid", "price", "integer", "text"], old=["bid"])
        resolver.resolve(c)
        assert c["types"] == ["bigint", "numeric(10,3)", "integer", "text"]
        assert c["old_key"]["types"] == ["bigint"]
    c = change(["price", "mood"])
    resolver.resolve(c)
    assert c["types"] == ["numeric(10,3)", "mood"]
    assert catalog.asked == [["bid", "price"], ["mood"]]


def test_built_in_types_are_never_looked_up() -> None:
    catalog = Catalog({})
    resolver = TypeResolver(catalog)
    types = ["integer", "numeric(12,4)", "timestamp(3) with time zone", "text[]", "box[]"]
    c = change(list(types))
    resolver.resolve(c)
    assert c["types"] == types and catalog.asked == []


def test_changes_without_types_are_left_alone() -> None:
    resolver = TypeResolver(Catalog({}))
    truncate = {"op": "truncate", "schema": "s", "table": "t"}
    resolver.resolve(truncate)
    assert truncate == {"op": "truncate", "schema": "s", "table": "t"}
    delete = {"types": [], "old_key": {"types": ["integer"]}}
    resolver.resolve(delete)
    assert delete == {"types": [], "old_key": {"types": ["integer"]}}


def test_every_built_in_type_of_the_golden_output_is_known(
    wal2json_records: dict[str, list[bytes]],
) -> None:
    names: set[str] = set()
    for name in ("types", "keys", "toast", "nokey"):
        for record in wal2json_records[name]:
            rec = decode_record(record)
            if isinstance(rec, RowChange):
                names.update(rec.change.get("types") or ())
    assert names and all(is_builtin(n) for n in names), names
