"""Turn the changes of a batch into few statements, without changing the result.

Changes are grouped by target table, keeping their order within each table. The target has
no foreign keys or triggers of ours, so tables are independent and this reordering across
tables cannot change the final state. Within a table, consecutive changes of the same shape
(same statement, same columns) become one ``executemany``; a change of another shape starts a
new group, so the order of changes to any one row is kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from applier.upsert import Compiled, Statements
from shared.envelope import DELETE, INSERT, TRUNCATE, UPDATE, Change
from shared.naming import Naming, TargetRef
from shared.types import Converter, converter
from shared.types.values import column_form

_converters: dict[tuple[str, ...], tuple[tuple[int, Converter], ...]] = {}

RowsMaker = Callable[[list[list[object]]], list[tuple[object, ...]]]


def _conversions(types: list[str]) -> tuple[tuple[int, Converter], ...]:
    """(index, converter) for the columns whose values need one; cached per list of types."""
    key = tuple(types)
    found = _converters.get(key)
    if found is None:
        found = tuple((i, c) for i, c in enumerate(map(converter, types)) if c is not None)
        _converters[key] = found
    return found


def _converted(types: list[str], values: list[object]) -> list[object]:
    convs = _conversions(types)
    if not convs:
        return values
    out = list(values)
    for i, conv in convs:
        out[i] = conv(out[i])
    return out


def _rows_maker(types: list[str], stmt: Compiled) -> RowsMaker:
    """Values as the envelope holds them -> the rows to bind, for a run of changes of one
    shape: column by column (shared/types/values.py ``column_form``), so the per-row work is
    only what must be."""
    forms = tuple((i, column_form(c)) for i, c in _conversions(types))
    order = stmt.order
    width = len(types)
    identity = order == tuple(range(width))
    if identity and not forms:
        return lambda raw: list(map(tuple, raw))

    def make(raw: list[list[object]]) -> list[tuple[object, ...]]:
        if not width:
            return [stmt.params(values) for values in raw]
        # The envelope's rows all have ``width`` values (shared/wire.py checks).
        columns: list[Sequence[object]] = list(zip(*raw, strict=True))
        for i, form in forms:
            columns[i] = form(columns[i])
        if not identity:
            columns = [columns[i] for i in order]
        return list(zip(*columns, strict=True))

    return make


@dataclass
class _Run:
    """The last upsert shape seen for one source table, and the group it fills: its values
    gather in ``raw`` and become the group's rows at once (``flush``), before anything else
    goes into the group and at the end of the plan."""

    columns: list[str]
    types: list[str]
    key: list[str]
    groups: list[Group]
    group: Group
    make: RowsMaker
    count: list[int]  # the (table, "I"/"U") counter cell this run adds to
    raw: list[list[object]] = field(default_factory=list)

    def flush(self) -> None:
        if self.raw:
            self.group.rows.extend(self.make(self.raw))
            self.raw = []


AddFn = Callable[[TargetRef, str, Compiled, "tuple[object, ...] | None", "tuple[str, ...]"], None]


@dataclass
class Group:
    table: TargetRef
    op: str  # "upsert", "update", "delete" or "truncate"
    statement: Compiled
    rows: list[tuple[object, ...]] = field(default_factory=list)
    key: tuple[str, ...] = ()  # the source key, to name a row in an error


@dataclass
class Plan:
    groups: list[Group]
    counts: dict[tuple[TargetRef, str], int]  # (table, op) -> changes


def build_plan(
    changes: Iterable[Change],
    statements: Statements,
    has_table: set[TargetRef],
    naming: Naming | None = None,
) -> Plan:
    naming = naming or Naming()
    per_table: dict[TargetRef, list[Group]] = {}
    cells: dict[tuple[TargetRef, str], list[int]] = {}
    runs: dict[tuple[str, str, str], _Run] = {}
    # The run whose rows were gathered last: only its ``raw`` may hold rows, so rows go into
    # a group (which runs of inserts and plain updates may share) in the order of their changes.
    active: _Run | None = None

    def add(
        table: TargetRef,
        op: str,
        stmt: Compiled,
        row: tuple[object, ...] | None,
        key: tuple[str, ...],
    ) -> None:
        if active is not None:
            active.flush()
        groups = per_table.setdefault(table, [])
        if groups and groups[-1].statement is stmt:
            group = groups[-1]
        else:
            group = Group(table, op, stmt, key=key)
            groups.append(group)
        if row is not None:
            group.rows.append(row)

    def count(table: TargetRef, op: str) -> list[int]:
        cell = cells.get((table, op))
        if cell is None:
            cell = cells[(table, op)] = [0]
        cell[0] += 1
        return cell

    for ch in changes:
        op = ch.op
        if op == INSERT or (op == UPDATE and ch.old_key is None):
            # The bulk of any stream: runs of inserts (or plain updates) of one shape into one
            # table. The shape's statement, converters and group are looked up once per run.
            run = runs.get((ch.schema, ch.table, op))
            if (
                run is not None
                and run.groups[-1] is run.group
                and ch.columns == run.columns
                and ch.types == run.types
                and ch.key == run.key
            ):
                if run is not active:
                    if active is not None:
                        active.flush()
                    active = run
                run.raw.append(ch.values)
                run.count[0] += 1
                continue
            table = naming.target(ch.schema, ch.table)
            stmt = statements.upsert(table, tuple(ch.columns), tuple(ch.key))
            add(table, "upsert", stmt, None, tuple(ch.key))
            groups = per_table[table]
            runs[(ch.schema, ch.table, op)] = active = _Run(
                ch.columns,
                ch.types,
                ch.key,
                groups,
                groups[-1],
                _rows_maker(ch.types, stmt),
                count(table, op),
                [ch.values],
            )
            continue
        table = naming.target(ch.schema, ch.table)
        count(table, op)
        _add_other(add, statements, table, ch, table in has_table)

    if active is not None:
        active.flush()
    groups = [g for table_groups in per_table.values() for g in table_groups]
    counts = {key: cell[0] for key, cell in cells.items()}
    return Plan(groups, counts)


def _add_other(
    add: AddFn, statements: Statements, table: TargetRef, ch: Change, exists: bool
) -> None:
    """A truncate, a delete, or an update that is not a plain upsert."""
    if ch.op == TRUNCATE:
        if exists:
            add(table, "truncate", statements.truncate(table), None, ())
    elif ch.op == DELETE:
        cols, old, whole_row = _match(ch)
        add(table, "delete", statements.delete(table, cols, whole_row), old, tuple(ch.key))
    elif ch.op == UPDATE:
        match = _match_moved(ch)
        if match is None:
            values = _converted(ch.types, ch.values)
            stmt = statements.upsert(table, tuple(ch.columns), tuple(ch.key))
            add(table, "upsert", stmt, stmt.params(values), tuple(ch.key))
        else:
            # The row is found by its old identity and changed where it is: a column the
            # change leaves out (an unchanged TOASTed value) keeps its value.
            cols, old, whole_row = match
            stmt = statements.update(table, tuple(ch.columns), cols, whole_row)
            row = stmt.params([*_converted(ch.types, ch.values), *old])
            add(table, "update", stmt, row, tuple(ch.key))


Match = tuple[tuple[str, ...], tuple[object, ...], bool]  # columns, old values, whole row


def _match(ch: Change) -> Match:
    """How to find the row an update or delete was made to: its columns, their old values,
    and whether it is a whole row of a table without a key (NULL-safe, one row only)."""
    old = ch.old_key
    assert old is not None
    values = _converted(old.types, old.values)
    index = {name: i for i, name in enumerate(old.columns)}
    if ch.key and all(c in index for c in ch.key):
        # The identity holds the key columns (or the whole row under REPLICA IDENTITY FULL):
        # match on the primary key only.
        cols = tuple(ch.key)
        return cols, tuple(values[index[c]] for c in cols), False
    # REPLICA IDENTITY USING INDEX on another unique index (whose columns PostgreSQL requires
    # to be NOT NULL), or no primary key: match on the identity as it is.
    return tuple(old.columns), tuple(values), not ch.key


def _match_moved(ch: Change) -> Match | None:
    """For an update that an upsert by its new key cannot apply (the key changed, or the
    row can only be found by its identity), how to find the old row; None otherwise."""
    old = ch.old_key
    if old is None:
        return None
    if ch.key and set(ch.key) <= set(old.columns) and not _key_changed(ch):
        return None
    return _match(ch)


def _key_changed(ch: Change) -> bool:
    old = ch.old_key
    if old is None or not ch.key:
        return False
    new = dict(zip(ch.columns, ch.values, strict=True))
    before = dict(zip(old.columns, old.values, strict=True))
    return any(k in new and k in before and new[k] != before[k] for k in ch.key)
