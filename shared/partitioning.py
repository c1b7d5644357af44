"""Which partition a change belongs to, when ``target.partitions`` is N > 1 (issue 14, part 2).

A row's partition is a stable hash of its table and key, modulo N, computed here once for
both processes: the extractor routes by it, and the applier (or a test, or an operator) can
say where a key went. It must not change between runs, machines or Python versions, so it is
not ``hash()`` (salted per process) but BLAKE2b of a canonical text of the source schema,
table and key values. The canonical text is PostgreSQL's text form of each value, so the two
decoders give the same partition: wal2json sends an integer key as a JSON number and a
boolean as true/false, pgoutput sends PostgreSQL's text ("42", "t"); the copy reads text too.

Changes that span partitions (a truncate, a schema change, a copy's rows, an update that
moves a row's key into another partition) are *barriers*: see ARCHITECTURE.md, "Parallel
apply". The decision of which changes are barriers is here too, so that it has one home.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from typing import Any

from shared.envelope import DDL, DELETE, TRUNCATE, UPDATE, Change

# Separators that cannot occur in PostgreSQL's text of a name or a value: the canonical text
# of ("a", "bc") and ("ab", "c") must differ.
_FIELD = "\x1f"
_NULL = "\x00"


def canonical_value(value: Any) -> str:
    """A key value as PostgreSQL prints it, whichever decoder produced it."""
    if value is None:
        return _NULL
    if isinstance(value, bool):  # before int: bool is an int in Python
        return "t" if value else "f"
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    # Not seen for key columns today (wal2json parses numbers with parse_float=str); a
    # stable text all the same rather than repr().
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def partition_of(schema: str, table: str, key_values: Sequence[Any], partitions: int) -> int:
    """The partition (0 .. partitions-1) of the row of ``schema.table`` with that key."""
    if partitions < 1:
        raise ValueError("partitions must be at least 1")
    if partitions == 1:
        return 0
    text = _FIELD.join([schema, table, *(canonical_value(v) for v in key_values)])
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % partitions


def _values_of(columns: list[str], values: list[Any], key: list[str]) -> list[Any] | None:
    # Once per change on the extractor's hot path: a key has a column or two, found in a
    # short list faster than through a dict built for it.
    try:
        return [values[columns.index(k)] for k in key]
    except ValueError:
        return None


def partitions_of(change: Change, partitions: int) -> frozenset[int]:
    """Every partition the change touches: one for most; all of them for a barrier, and for
    a change whose key cannot be known (an identity that is another unique index): routing
    it to one partition would be a guess, and a wrong guess breaks per-key order."""
    old = change.old_key
    return _partitions(
        change.op,
        change.schema,
        change.table,
        change.key,
        change.columns,
        change.values,
        None if old is None else (old.columns, old.values),
        partitions,
    )


def partitions_of_dict(change: dict[str, Any], partitions: int) -> frozenset[int]:
    """``partitions_of`` for a change in the form the extractor builds (shared/wire.py)."""
    if partitions == 1:
        return _one(0)
    old = change.get("old_key")
    return _partitions(
        change["op"],
        change["schema"],
        change["table"],
        change.get("key") or [],
        change.get("columns") or [],
        change.get("values") or [],
        None if old is None else (old["columns"], old["values"]),
        partitions,
    )


def _partitions(  # noqa: PLR0917 - a change's fields, whichever form carries them
    op: str,
    schema: str,
    table: str,
    key: list[str],
    columns: list[str],
    values: list[Any],
    old: tuple[list[str], list[Any]] | None,
    partitions: int,
) -> frozenset[int]:
    every = _every(partitions)
    if partitions == 1:
        return every
    if op in (TRUNCATE, DDL):
        return every
    if not key:
        # A table without a primary key: its rows cannot be told apart by key, so all its
        # changes go to one partition, in order (as the source wrote them).
        return _one(partition_of(schema, table, (), partitions))
    new = _values_of(columns, values, key) if op != DELETE else None
    before = None if old is None else _values_of(old[0], old[1], key)
    if op == DELETE:
        keys = [before]
    elif op == UPDATE and old is not None:
        keys = [new, before]
    else:  # an insert, or an update that kept its key (no old identity sent)
        keys = [new]
    if None in keys:
        return every
    if len(keys) == 1 or keys[0] == keys[1]:
        return _one(partition_of(schema, table, keys[0], partitions))  # type: ignore[arg-type]
    return frozenset(partition_of(schema, table, k, partitions) for k in keys)  # type: ignore[arg-type]


@functools.cache
def _every(partitions: int) -> frozenset[int]:
    return frozenset(range(partitions))


@functools.cache
def _one(partition: int) -> frozenset[int]:
    return frozenset((partition,))


def is_barrier(change: Change, partitions: int) -> bool:
    """A change that must be applied in order with the rows of more than one partition.
    A copy is a barrier as a whole (its envelopes say ``copy``), whatever its rows."""
    return len(partitions_of(change, partitions)) > 1
