"""The message format between extractor and applier: one JSON envelope per chunk of a
transaction (the objects it becomes: shared/envelope.py).

Version 2::

    {"v": 2, "slot": "cdc", "xid": 731,
     "commit_lsn": "0/196D868",            # where the commit record begins: orders transactions
     "commit_time": "2026-11-22 06:57:26.636428+00",
     "copy": false,                        # true: a copy of tables, not a source transaction
     "chunk": 0, "last": true,             # large transactions span several chunks
     "after": "0/196C858",                 # the position this message continues from
     "resumed": false,                     # true: the first message of an extractor session
     "changes": [
        {"op": "insert", "lsn": "0/196D980", "schema": "public", "table": "ck",
         "columns": ["a", "b", "v"], "types": ["integer", "text", "text"],
         "values": [5, "z", "q"], "key": ["a", "b"]},
        {"op": "insert", "lsn": "0/196D980", "n": 1, ...},   # n: ordinal among the changes
                                                             # of one WAL record (0: left out)
        {"op": "update", ..., "old_key": {"columns": [...], "types": [...], "values": [...]}},
        {"op": "delete", "lsn": ..., "schema": ..., "table": ..., "key": [...],
         "old_key": {...}},
        {"op": "truncate", "lsn": ..., "schema": ..., "table": ...},
        {"op": "ddl", "lsn": "0/196DA07", "schema": "public", "table": "ck",
         "columns": [...], "types": [...], "values": [null, "7"], "key": ["a", "b"],
         "ddl": {"action": "alter", "relid": 16429, "attnums": [1, 3], "recopy": false}}]}

``after`` is a position (shared/position.py): the end of the message the extractor published
before this one in the same session (or, for a session's first message, the slot position it
resumed from); ``null`` for the very first message of a new slot, before which nothing exists.
The message carries every captured change after ``after`` up to its own end, which is the end
of its transaction (``last``) or its last change. A copy's truncate of a table also carries the
table's ``columns``, ``types`` and ``key`` (no values), so an empty table is created too, and
``ddl``: ``{"relid": ..., "attnums": [...]}``, the table's OID and its columns' numbers.

A ``ddl`` change is a schema change the DDL capture (sql/ddl-capture.sql) reported, at its
place in the transaction; it always travels alone in its message (MariaDB commits DDL on its
own). ``columns``/``types``/``key`` are the table's shape right after the command (``ddl.
attnums``: each column's number, which a rename keeps; ``ddl.relid``: the table's OID), and
``values`` what rows that existed before the command hold in each column where PostgreSQL
filled them without writing them (a column added with a constant default), else null.
``ddl.action`` is ``create`` (a new table), ``alter`` or ``drop``; ``ddl.recopy``: the command
rewrote the table's rows, which a copy later in the stream brings. Its ``lsn`` is one less than
the message's (wal2json gives the end of the message's record, where the next one starts).

On the wire, ``changes`` is a list of *runs*: consecutive changes of one operation and one
shape (table, columns, types, key, old key's columns) share one object, and what differs from
change to change comes as parallel lists, so the names and types of a bulk load's columns are
written once per message, not once per row::

    {"op": "insert", "schema": "public", "table": "ck", "columns": ["a", "b", "v"],
     "types": ["integer", "text", "text"], "key": ["a", "b"],
     "lsn": ["0/196D980", "0/196D980"], "n": [0, 1],        # n: left out when all are 0
     "values": [[5, "z", "q"], [6, "y", null]]}
    {"op": "delete", ..., "key": ["a", "b"], "lsn": [...],
     "old": {"columns": ["a", "b"], "types": ["integer", "text"]}, "old_values": [[5, "z"]]}

A ``ddl`` change is always a run of its own. The form of each change described above is what
the extractor builds and the applier reads (``Change``); only the wire groups them.

Version 3 is version 2 for a stream split into partitions (``target.partitions`` N > 1; the
contract: shared/envelope.py and ARCHITECTURE.md, "Parallel apply"). With N = 1 the extractor
writes version 2, byte for byte as before partitions existed, and the applier reads both.
Version 3 adds::

     "partition": 2, "partitions": 4,        # this message's queue is <queue>.p2 of 4
     "barrier": true,                        # only on a barrier's copies (left out: false)
     "afters": ["0/196C858", null, "0/196C858:0/196C900.0", "0/196C000"],
                                             # each partition's ``after`` of the barrier
     "end": "0/196D868:0/196DA07.0"          # a barrier copy's end (a marker has no changes)

``after`` is then the end of the message before this one *on this partition*. A marker (a
barrier's copy on a partition other than 0) has no changes and ends at ``end``, which may be a
change inside the transaction (a barrier in the middle of a long one) or, with ``last``, the
transaction's end. An older applier refuses version 3 rather than misread it.

Values keep the text PostgreSQL printed: integers are JSON integers, every other number
(numeric, real, double) is a JSON string holding its exact decimal text, so no reader ever
passes one through a binary float. Other types are strings as wal2json prints them.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson

from shared.envelope import (
    DDL,
    DELETE,
    DESIGNATED,
    INSERT,
    OPERATIONS,
    UPDATE,
    Change,
    Envelope,
    OldKey,
)
from shared.errors import DecodeError, UnsupportedVersion
from shared.lsn import format_lsn, parse_lsn
from shared.position import Position, optional
from shared.runs import runs_of

VERSION = 2
PARTITIONED_VERSION = 3  # version 2 with a partition, and barriers (above)


def _big_ints_as_text(runs: list[dict[str, Any]]) -> None:
    """orjson (and the applier's orjson parser) stop at 64 bits: a wider integer, which only a
    numeric column can hold, travels as its decimal text like every other numeric value."""
    for run in runs:
        for field in ("values", "old_values"):
            rows = run.get(field)
            if rows and run.get("op") != DDL:
                run[field] = [
                    [str(v) if type(v) is int and not -(2**63) <= v < 2**64 else v for v in row]
                    for row in rows
                ]
            elif rows:  # a ddl change's values are one row, not a list of rows
                run[field] = [
                    str(v) if type(v) is int and not -(2**63) <= v < 2**64 else v for v in rows
                ]


def encode(
    *,
    slot: str,
    xid: int,
    commit_lsn: int,
    commit_time: str,
    copy: bool,
    chunk: int,
    last: bool,
    after: Position | None,
    resumed: bool,
    changes: list[dict[str, Any]] | None = None,
    runs: list[dict[str, Any]] | None = None,
    partition: int = 0,
    partitions: int = 1,
    afters: tuple[Position | None, ...] | None = None,
    end: Position | None = None,
) -> bytes:
    """Serialize a chunk whose changes are already dicts in the form shown above (each
    change; the wire groups them into runs), or already grouped into ``runs`` (Runs).
    ``partition``/``partitions``, and for a barrier's copy ``afters`` and its ``end``:
    version 3 (above); with one partition, version 2."""
    if runs is None:
        runs = runs_of(changes or [])
    doc: dict[str, Any] = {
        "v": VERSION,
        "slot": slot,
        "xid": xid,
        "commit_lsn": format_lsn(commit_lsn),
        "commit_time": commit_time,
        "copy": copy,
        "chunk": chunk,
        "last": last,
        "after": None if after is None else str(after),
        "resumed": resumed,
        "changes": runs,
    }
    if partitions != 1:
        doc["v"] = PARTITIONED_VERSION
        doc["partition"] = partition
        doc["partitions"] = partitions
        if afters is not None:
            if end is None:
                raise ValueError("a barrier's copy needs its end")
            doc["barrier"] = True
            doc["afters"] = [None if a is None else str(a) for a in afters]
            doc["end"] = str(end)
    elif afters is not None:
        raise ValueError("a barrier needs partitions")
    # orjson: several times faster than json.dumps; no binary float ever reaches it.
    try:
        return orjson.dumps(doc)
    except orjson.JSONEncodeError:
        _big_ints_as_text(runs)
        return orjson.dumps(doc)


def decode_all(body: bytes) -> list[Envelope]:
    """A message's envelopes: one, or several in an array (small transactions batched, in
    stream order, each continuing from the one before). DecodeError if it is not that."""
    try:
        # No binary floats can appear (numbers that are not integers travel as text), so
        # orjson's fast parser loses nothing.
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise DecodeError(f"body is not JSON: {e}") from e
    if not isinstance(doc, list):
        return [_envelope(doc)]
    if not doc:
        raise DecodeError("an empty array of envelopes")
    envs = [_envelope(d) for d in doc]
    for before, env in itertools.pairwise(envs):
        if env.after != before.end:
            raise DecodeError("a batch whose envelopes do not follow one another")
    return envs


def part_of(body: bytes, env: Envelope) -> bytes:
    """The JSON of the one envelope of ``body`` that is ``env`` (for a dead letter of it
    alone); the whole body if it holds only that one."""
    if not body.lstrip().startswith(b"["):
        return body
    for d in orjson.loads(body):
        if _envelope(d).end == env.end:
            return orjson.dumps(d)
    return body


def decode(body: bytes) -> Envelope:
    """Parse and check a message holding one envelope. Raises DecodeError (or
    UnsupportedVersion) if it is not one."""
    envs = decode_all(body)
    if len(envs) != 1:
        raise DecodeError(f"{len(envs)} envelopes where one was expected")
    return envs[0]


def _envelope(doc: Any) -> Envelope:
    if not isinstance(doc, dict):
        raise DecodeError("body is not a JSON object")
    version = doc.get("v")
    if type(version) is not int or version not in (VERSION, PARTITIONED_VERSION):
        raise UnsupportedVersion(
            f"envelope version {version!r} is not supported (expected {VERSION} or "
            f"{PARTITIONED_VERSION}; an extractor of another version wrote it: see the "
            "README's upgrade notes)"
        )
    try:
        changes = [c for run in doc["changes"] for c in _run(run)]
        after = doc["after"]
        if after is not None and not isinstance(after, str):
            raise DecodeError("malformed envelope: after is not a position")
        env = Envelope(
            slot=str(doc["slot"]),
            xid=int(doc["xid"]),
            commit_lsn=parse_lsn(doc["commit_lsn"]),
            commit_time=str(doc["commit_time"]),
            copy=_flag(doc["copy"]),
            chunk=int(doc["chunk"]),
            last=_flag(doc["last"]),
            after=optional(after),
            resumed=_flag(doc["resumed"]),
            changes=changes,
        )
        if version == PARTITIONED_VERSION:
            _partitioned(env, doc)
    except DecodeError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DecodeError(f"malformed envelope: {type(e).__name__}: {e}") from e
    if env.chunk < 0 or (not env.last and not env.changes and not env.marker):
        raise DecodeError("malformed envelope: bad chunk, or a chunk without changes")
    # Where it starts and ends: computed here once, so a malformed LSN is found now.
    if env.sort_key > env.end:
        raise DecodeError("malformed envelope: its changes are not in order")
    return env


def _partitioned(env: Envelope, doc: dict[str, Any]) -> None:
    """Version 3's fields into ``env``, checked against one another."""
    partition, partitions = doc["partition"], doc["partitions"]
    if not (type(partition) is int and type(partitions) is int and 0 <= partition < partitions):
        raise DecodeError("malformed envelope: partition is not one of partitions")
    env.partition, env.partitions = partition, partitions
    if not _flag(doc.get("barrier", False)):
        return
    afters = doc["afters"]
    if not isinstance(afters, list) or len(afters) != partitions:
        raise DecodeError("malformed envelope: a barrier needs one after per partition")
    if not all(a is None or isinstance(a, str) for a in afters):
        raise DecodeError("malformed envelope: an after is not a position")
    env.afters = tuple(optional(a) for a in afters)
    if env.afters[partition] != env.after:
        raise DecodeError("malformed envelope: a barrier's after is not its partition's")
    end = doc["end"]
    if not isinstance(end, str):
        raise DecodeError("malformed envelope: a barrier without its end")
    given = Position.parse(end)
    if env.changes or env.last:
        if env.end != given:
            raise DecodeError("malformed envelope: a barrier's end is not its changes' end")
    elif partition == DESIGNATED:
        raise DecodeError("malformed envelope: partition 0 holds a barrier's changes")
    else:
        env.stub_end = given


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise DecodeError(f"malformed envelope: {value!r} is not true or false")
    return value


_EMPTY: list[Any] = []
_TEXT = frozenset((str,))


def _run(r: dict[str, Any]) -> list[Change]:  # noqa: PLR0912 - one check after another
    # Once per run on the applier's hot path: the checks that cost little, then one Change per
    # change, all sharing the run's lists of names and types.
    op = r["op"]
    if op not in OPERATIONS:
        raise DecodeError(f"unknown operation {op!r}")
    schema, table = r["schema"], r["table"]
    if not (isinstance(schema, str) and isinstance(table, str)):
        raise DecodeError("schema and table must be text")
    columns = r.get("columns", _EMPTY)
    types = r.get("types", _EMPTY)
    key = r.get("key", _EMPTY)
    if len(columns) != len(types):
        raise DecodeError("columns, types and values differ in length")
    lsns = r["lsn"]
    # Checks of every change as one pass in C each (set of types, of lengths): no Python per row.
    if not isinstance(lsns, list) or not set(map(type, lsns)) <= _TEXT:
        raise DecodeError("a change's lsn must be text")
    count = len(lsns)
    ns = r.get("n")
    if ns is not None and (len(ns) != count or not all(type(n) is int and n >= 0 for n in ns)):
        raise DecodeError("a change's n must be a whole number")
    ddl = r.get("ddl")
    if ddl is not None and not isinstance(ddl, dict):
        raise DecodeError("a change's ddl must be an object")
    if op == DDL:
        if ddl is None or count != 1:
            raise DecodeError("a ddl change without its ddl object")
        values = r.get("values", _EMPTY)
        if len(values) != len(columns):
            raise DecodeError("columns, types and values differ in length")
        n = ns[0] if ns is not None else 0
        return [Change(op, lsns[0], schema, table, columns, types, values, key, None, n, ddl)]
    rows: list[Any] = r.get("values") or []
    if op in (INSERT, UPDATE):
        if len(rows) != count or (rows and set(map(len, rows)) != {len(columns)}):
            raise DecodeError("columns, types and values differ in length")
    elif rows:
        raise DecodeError("columns, types and values differ in length")
    old = r.get("old")
    old_rows: list[Any] = r.get("old_values") or []
    if old is not None:
        ocols, otypes = old["columns"], old["types"]
        if (
            not (len(ocols) == len(otypes))
            or len(old_rows) != count
            or (old_rows and set(map(len, old_rows)) != {len(ocols)})
        ):
            raise DecodeError("old_key columns, types and values differ in length")
    elif op == DELETE:
        raise DecodeError("a delete without old_key cannot be applied")
    return [
        Change(
            op,
            lsns[i],
            schema,
            table,
            columns,
            types,
            rows[i] if rows else _EMPTY,
            key,
            OldKey(ocols, otypes, old_rows[i]) if old is not None else None,
            ns[i] if ns is not None else 0,
            ddl,
        )
        for i in range(count)
    ]
