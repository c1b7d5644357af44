"""A message's changes grouped into the runs that carry them on the wire (the form is
shared/wire.py's): consecutive changes of one table, operation and shape share one run's
names and types, and list only their values. Built one change at a time, as the extractor
reads them."""

from __future__ import annotations

from typing import Any

from shared.envelope import DDL, DELETE, TRUNCATE


class Runs:
    """Changes in the form above -> the runs that carry them on the wire, one change at a
    time as they come (stream order kept): the extractor builds a message's runs while it
    reads its changes, holding no change object once it is added.

    Once per change on the extractor's hot path: the common case (one more change of the run
    before, of the same shape) is a few comparisons and a few appends."""

    __slots__ = ("_lsns", "_olds", "_rows", "_run", "_shape", "runs")

    def __init__(self) -> None:
        self.runs: list[dict[str, Any]] = []
        self._run: dict[str, Any] = {}
        self._lsns: list[str] = []
        self._rows: list[Any] | None = None
        self._olds: list[Any] | None = None
        # What changes of the run in progress share; a ddl change never has a run's company.
        self._shape: tuple[Any, ...] = (DDL,)

    def add(self, c: dict[str, Any]) -> None:
        old = c.get("old_key")
        # One tuple compared in C, rather than a comparison per member in Python.
        shape = (
            c["op"],
            c["table"],
            c["schema"],
            c.get("columns"),
            c.get("types"),
            c.get("key"),
            None if old is None else old["columns"],
            None if old is None else old["types"],
        )
        if shape != self._shape or shape[0] == DDL:
            self._start(c, shape)
        run = self._run
        lsns = self._lsns
        lsns.append(c["lsn"])
        n = c.get("n")
        if n or "n" in run:
            run.setdefault("n", [0] * (len(lsns) - 1)).append(n or 0)
        rows = self._rows
        if rows is not None:
            rows.append(c["values"])
        olds = self._olds
        if olds is not None:
            olds.append(old["values"])  # type: ignore[index]

    def _start(self, c: dict[str, Any], shape: tuple[Any, ...]) -> None:
        self._shape = shape
        op, table, schema, columns, types, key, ocols, otypes = shape
        self._lsns = []
        run = self._run = {"op": op, "schema": schema, "table": table, "lsn": self._lsns}
        if columns:
            run["columns"], run["types"] = columns, types
        if key:
            run["key"] = key
        self._rows = self._olds = None
        if op == DDL:
            run["ddl"] = c.get("ddl")
            run["values"] = c.get("values", [])
        elif op not in (TRUNCATE, DELETE):
            self._rows = run["values"] = []
        elif c.get("ddl"):
            run["ddl"] = c["ddl"]  # a copy's truncate: the table's OID and attnums
        if ocols is not None:
            run["old"] = {"columns": ocols, "types": otypes}
            self._olds = run["old_values"] = []
        self.runs.append(run)


def runs_of(changes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Changes in the form above -> the runs that carry them on the wire (``Runs``)."""
    runs = Runs()
    for c in changes:
        runs.add(c)
    return runs.runs
