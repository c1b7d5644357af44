"""What each captured table looked like when the stream last showed it: columns and types,
and the table's OID where known. A change that does not fit means the table's schema changed
without the DDL capture saying so (sql/ddl-capture.sql not installed, or a change made while
it was off): the table is copied again at that point of the stream, so the target is exact
again from there (README, "Schema changes").

What was seen comes from three places, all in stream order: a copy of the table (its shape as
the copy read it), a schema change the DDL capture reported, and otherwise the first change of
the table this process saw. It is kept durably in the extractor's state (state.py), so a change
made while the extractor was down is noticed at the table's first change after the restart.

A shape goes into the durable state only where that cannot hide a change still to be handled:
a copy's shape once RabbitMQ confirmed the copy, a reported schema change right away (unless a
copy of the table asked for by a mismatch is still pending), a first sight right away. A state
a little ahead of the slot costs at most one copy too many after a crash; never one too few.

Only what the stream shows reliably is compared: an insert lists every column, an update every
column but unchanged TOASTed ones, a delete its key. A column dropped and added again with the
same name and type in the same place looks unchanged; only the DDL capture sees that.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from shared.envelope import INSERT
from shared.tables import TableRef

log = logging.getLogger(__name__)


@dataclass
class Shape:
    columns: list[str]
    types: list[str]
    relid: int | None = None
    by_name: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        self.by_name = dict(zip(self.columns, self.types, strict=True))

    def fits(self, columns: list[str], types: list[str], whole: bool) -> bool:
        """Whether these columns (all of the table's when ``whole``, in any order: each
        partition of a root has its own) are the table's."""
        if columns == self.columns and types == self.types:
            return True
        if whole and len(columns) != len(self.columns):
            return False
        by_name = self.by_name
        return all(by_name.get(c) == t for c, t in zip(columns, types, strict=True))

    def same(self, other: Shape) -> bool:
        return self.by_name == other.by_name

    def to_json(self, table: TableRef) -> dict[str, Any]:
        return {
            "table": [table.schema, table.table],
            "relid": self.relid,
            "columns": self.columns,
            "types": self.types,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> tuple[TableRef, Shape]:
        schema, table = doc["table"]
        relid = doc.get("relid")
        shape = cls(list(doc["columns"]), list(doc["types"]), int(relid) if relid else None)
        return TableRef(str(schema), str(table)), shape


class ShapeWatch:
    def __init__(self, stored: dict[TableRef, Shape] | None = None) -> None:
        self.durable: dict[TableRef, Shape] = dict(stored or {})
        self._seen: dict[tuple[str, str], Shape] = {
            (t.schema, t.table): s for t, s in self.durable.items()
        }
        # Tables copied again because a change did not fit, until that copy is confirmed.
        self._pending: set[TableRef] = set()
        # The shape that last had a table copied again, until a copy that reads it so.
        self._asked: dict[tuple[str, str], Shape] = {}

    def check(self, change: dict[str, Any]) -> TableRef | None:
        """The table, if this (filtered) change does not fit what was last seen of it."""
        key = (change["schema"], change["table"])
        seen = self._seen.get(key)
        columns = change.get("columns")
        if seen is None:
            if columns and change["op"] == INSERT:
                shape = Shape(list(columns), list(change["types"]))
                self._seen[key] = self.durable[TableRef(*key)] = shape
            return None
        fits = True
        if columns:
            fits = seen.fits(columns, change["types"], change["op"] == INSERT)
        old = change.get("old_key")
        if fits and old:
            fits = seen.fits(old["columns"], old["types"], False)
        if fits:
            return None
        ref = TableRef(*key)
        if change["op"] == INSERT:
            now = Shape(list(columns or ()), list(change["types"]), seen.relid)
        else:
            # Only what this change shows: the rest is as it was.
            merged = dict(seen.by_name)
            merged.update(zip(columns or (), change["types"], strict=True))
            now = Shape(list(merged), list(merged.values()), seen.relid)
        self._seen[key] = now
        asked = self._asked.get(key)
        if asked is not None and asked.same(now):
            # The copy asked for by this very shape reads the table otherwise than the stream
            # shows it: copying again would change nothing, and again, for ever.
            log.error(
                "copy_and_stream_disagree table=%s copy=%s stream=%s: not copied again",
                ref,
                ",".join(f"{c} {t}" for c, t in seen.by_name.items()),
                ",".join(f"{c} {t}" for c, t in now.by_name.items()),
            )
            return None
        self._asked[key] = now
        self._pending.add(ref)
        log.warning(
            "schema_changed table=%s lsn=%s: its columns or types are not what the stream showed "
            "before, and the DDL capture did not report it (sql/ddl-capture.sql not installed?); "
            "copying it again at this point",
            ref,
            change["lsn"],
        )
        return ref

    def reported(self, ref: TableRef, shape: Shape) -> None:
        """The DDL capture's word on a table's shape, at its place in the stream."""
        self._seen[(ref.schema, ref.table)] = shape
        if ref not in self._pending:
            self.durable[ref] = shape

    def copied(self, shapes: dict[TableRef, Shape]) -> None:
        """A copy of these tables is confirmed: their shapes are as the copy read them."""
        for ref, shape in shapes.items():
            self.durable[ref] = shape
            self._pending.discard(ref)

    def copying(self, ref: TableRef, shape: Shape) -> None:
        """A copy's rows of this table go out now: later changes are compared with these."""
        key = (ref.schema, ref.table)
        self._seen[key] = shape
        asked = self._asked.get(key)
        if asked is not None and asked.same(shape):
            del self._asked[key]

    def forget(self, ref: TableRef) -> None:
        self._seen.pop((ref.schema, ref.table), None)
        self.durable.pop(ref, None)
        self._pending.discard(ref)

    def named(self, relid: int) -> TableRef | None:
        """The captured table this OID was last seen as."""
        for key, shape in self._seen.items():
            if shape.relid == relid:
                return TableRef(*key)
        return None

    def to_json(self) -> list[dict[str, Any]]:
        return [s.to_json(t) for t, s in sorted(self.durable.items())]
