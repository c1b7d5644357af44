"""The message format between extractor and applier: one JSON envelope per chunk of a transaction.

Version 1::

    {"v": 1, "slot": "cdc", "xid": 731,
     "commit_lsn": "0/196D868",            # end of the commit record; orders transactions
     "commit_time": "2026-11-22 06:57:26.636428+00",
     "prev_lsn": "0/196C858",              # commit_lsn of the message before this transaction
     "resumed": false,                     # true: prev_lsn is where the extractor resumed
     "chunk": 0, "first": 0, "last": true, # large transactions span several chunks;
                                           # first: index of the chunk's first change
     "snapshot": false,                    # true: a copy of tables, not a transaction
     "changes": [
        {"op": "insert", "lsn": "0/196D980", "schema": "public", "table": "ck",
         "columns": ["a", "b", "v"], "types": ["integer", "text", "text"],
         "values": [5, "z", "q"], "key": ["a", "b"]},
        {"op": "update", ..., "old_key": {"columns": [...], "types": [...], "values": [...]}},
        {"op": "delete", "lsn": ..., "schema": ..., "table": ..., "key": [...],
         "old_key": {...}},
        {"op": "truncate", "lsn": ..., "schema": ..., "table": ...}]}

Values keep the text PostgreSQL printed: integers are JSON integers, every other number
(numeric, real, double) is a JSON string holding its exact decimal text, so no reader ever
passes one through a binary float. Other types are strings as wal2json prints them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from shared.errors import DecodeError, UnsupportedVersion
from shared.lsn import format_lsn, parse_lsn

VERSION = 1
CONTENT_TYPE = "application/json"
MESSAGE_TYPE = "cdc.transaction"

INSERT, UPDATE, DELETE, TRUNCATE = "insert", "update", "delete", "truncate"
OPERATIONS = frozenset({INSERT, UPDATE, DELETE, TRUNCATE})


def message_id(commit_lsn: int, chunk: int) -> str:
    """Stable across resends: the same chunk of the same transaction has the same id."""
    return f"{format_lsn(commit_lsn)}.{chunk}"


@dataclass(slots=True)
class OldKey:
    columns: list[str]
    types: list[str]
    values: list[Any]


@dataclass(slots=True)
class Change:
    op: str
    lsn: str
    schema: str
    table: str
    columns: list[str]
    types: list[str]
    values: list[Any]
    key: list[str]
    old_key: OldKey | None


@dataclass(slots=True)
class Envelope:
    slot: str
    xid: int
    commit_lsn: int
    commit_time: str
    prev_lsn: int
    resumed: bool
    chunk: int
    first: int
    last: bool
    changes: list[Change]
    # A copy of tables (initial snapshot or backfill) rather than a source transaction.
    snapshot: bool = False
    # Set on a stand-in for a message whose body cannot be decoded (see ``stub``): why, and
    # how many changes it says it holds.
    undecodable: str | None = None
    stub_count: int = 0

    @property
    def position(self) -> tuple[int, int]:
        """Where the message starts: its transaction, and its first change in it."""
        return (self.commit_lsn, self.first)

    @property
    def end(self) -> int:
        """How many changes of its transaction come up to the end of this message."""
        return self.first + (self.stub_count if self.undecodable else len(self.changes))

    @property
    def message_id(self) -> str:
        return message_id(self.commit_lsn, self.chunk)


def headers_for(
    *,
    commit_lsn: int,
    prev_lsn: int,
    resumed: bool,
    chunk: int,
    first: int,
    last: bool,
    count: int,
    snapshot: bool = False,
) -> dict[str, Any]:
    """The message's place in the stream, repeated in AMQP headers: if the body is ever
    unreadable, the applier can still put the message in order and step over it."""
    return {
        "commit_lsn": format_lsn(commit_lsn),
        "prev_lsn": format_lsn(prev_lsn),
        "resumed": resumed,
        "chunk": chunk,
        "first": first,
        "last": last,
        "changes": count,
        "snapshot": snapshot,
    }


def stub(headers: dict[str, Any] | None, reason: str) -> Envelope | None:
    """A stand-in without changes for an undecodable message, from its headers (None if they
    do not say where it stands)."""
    h = headers or {}
    try:
        return Envelope(
            slot="",
            xid=0,
            commit_lsn=parse_lsn(str(h["commit_lsn"])),
            commit_time="",
            prev_lsn=parse_lsn(str(h["prev_lsn"])),
            resumed=bool(h["resumed"]),
            chunk=int(h["chunk"]),
            first=int(h["first"]),
            last=bool(h["last"]),
            changes=[],
            snapshot=bool(h.get("snapshot", False)),
            undecodable=reason,
            stub_count=int(h["changes"]),
        )
    except (KeyError, TypeError, ValueError, DecodeError):
        return None


@lru_cache(maxsize=1)
def _exact_decoder() -> json.JSONDecoder:
    # One decoder, built once: json.loads with a parse_float builds a new one on every call.
    return json.JSONDecoder(parse_float=str)


def loads_exact(payload: bytes) -> Any:
    """JSON with every non-integer number kept as its exact text, never a binary float."""
    return _exact_decoder().decode(payload.decode())


def _big_ints_as_text(changes: list[dict[str, Any]]) -> None:
    """orjson (and the applier's orjson parser) stop at 64 bits: a wider integer, which only a
    numeric column can hold, travels as its decimal text like every other numeric value."""
    for change in changes:
        for part in (change, change.get("old_key") or {}):
            values = part.get("values")
            if values:
                part["values"] = [
                    str(v) if type(v) is int and not -(2**63) <= v < 2**64 else v for v in values
                ]


def encode(
    *,
    slot: str,
    xid: int,
    commit_lsn: int,
    commit_time: str,
    prev_lsn: int,
    resumed: bool,
    chunk: int,
    first: int,
    last: bool,
    changes: list[dict[str, Any]],
    snapshot: bool = False,
) -> bytes:
    """Serialize a chunk whose changes are already dicts in the form shown above."""
    doc = {
        "v": VERSION,
        "slot": slot,
        "xid": xid,
        "commit_lsn": format_lsn(commit_lsn),
        "commit_time": commit_time,
        "prev_lsn": format_lsn(prev_lsn),
        "resumed": resumed,
        "chunk": chunk,
        "first": first,
        "last": last,
        "snapshot": snapshot,
        "changes": changes,
    }
    # orjson: several times faster than json.dumps; no binary float ever reaches it.
    try:
        return orjson.dumps(doc)
    except orjson.JSONEncodeError:
        _big_ints_as_text(changes)
        return orjson.dumps(doc)


def decode(body: bytes) -> Envelope:
    """Parse and check an envelope. Raises DecodeError (or UnsupportedVersion) if it is not one."""
    try:
        # No binary floats can appear (numbers that are not integers travel as text), so
        # orjson's fast parser loses nothing.
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise DecodeError(f"body is not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise DecodeError("body is not a JSON object")
    version = doc.get("v")
    if type(version) is not int or version != VERSION:
        raise UnsupportedVersion(
            f"envelope version {version!r} is not supported (expected {VERSION})"
        )
    try:
        changes = [_change(c) for c in doc["changes"]]
        env = Envelope(
            slot=str(doc["slot"]),
            xid=int(doc["xid"]),
            commit_lsn=parse_lsn(doc["commit_lsn"]),
            commit_time=str(doc["commit_time"]),
            prev_lsn=parse_lsn(doc["prev_lsn"]),
            resumed=_flag(doc["resumed"]),
            chunk=int(doc["chunk"]),
            first=int(doc["first"]),
            last=_flag(doc["last"]),
            changes=changes,
            snapshot=_flag(doc.get("snapshot", False)),
        )
    except DecodeError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DecodeError(f"malformed envelope: {type(e).__name__}: {e}") from e
    if env.chunk < 0 or env.first < 0 or (env.chunk == 0) != (env.first == 0):
        raise DecodeError("malformed envelope: bad chunk or first")
    return env


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise DecodeError(f"malformed envelope: {value!r} is not true or false")
    return value


_EMPTY: list[Any] = []


def _change(c: dict[str, Any]) -> Change:
    # Once per change on the applier's hot path: no copies, checks that cost little.
    op = c["op"]
    if op not in OPERATIONS:
        raise DecodeError(f"unknown operation {op!r}")
    columns = c.get("columns", _EMPTY)
    types = c.get("types", _EMPTY)
    values = c.get("values", _EMPTY)
    if not (len(columns) == len(types) == len(values)):
        raise DecodeError("columns, types and values differ in length")
    old = c.get("old_key")
    old_key = None
    if old is not None:
        old_key = OldKey(old["columns"], old["types"], old["values"])
        if not (len(old_key.columns) == len(old_key.types) == len(old_key.values)):
            raise DecodeError("old_key columns, types and values differ in length")
    elif op == DELETE:
        raise DecodeError("a delete without old_key cannot be applied")
    schema, table = c["schema"], c["table"]
    if not (isinstance(schema, str) and isinstance(table, str)):
        raise DecodeError("schema and table must be text")
    return Change(
        op, c["lsn"], schema, table, columns, types, values, c.get("key", _EMPTY), old_key
    )
