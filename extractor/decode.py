"""wal2json format-version 2 records -> begin / change / commit events.

Each replication message from wal2json v2 is one JSON object. Numbers are parsed without
ever becoming a binary float: wal2json 2.5 prints numeric, real and double as bare JSON numbers,
and ``parse_float=str`` keeps their exact text (integers stay exact Python ints).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from shared.envelope import DELETE, INSERT, TRUNCATE, UPDATE, loads_exact
from shared.errors import DecodeError
from shared.lsn import parse_lsn

_OPS = {"I": INSERT, "U": UPDATE, "D": DELETE, "T": TRUNCATE}
_NAME, _TYPE, _VALUE = itemgetter("name"), itemgetter("type"), itemgetter("value")


@dataclass(slots=True)
class Begin:
    xid: int
    commit_lsn: int  # end of the commit record, known because decoding happens after commit
    commit_time: str
    commit_start: int = 0  # where the commit record begins


@dataclass(slots=True)
class RowChange:
    change: dict[str, Any]  # already in envelope form
    size: int  # bytes of wal2json text it came from: a cheap bound for chunking


@dataclass(slots=True)
class Commit:
    pass


@dataclass(slots=True)
class LogicalMessage:
    transactional: bool
    prefix: str
    content: str
    lsn: str = ""  # where its record ends (wal2json's include-lsn)


Record = Begin | RowChange | Commit | LogicalMessage


def decode_record(payload: bytes) -> Record:
    try:
        doc = loads_exact(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DecodeError(f"wal2json output is not JSON: {e}: {payload[:200]!r}") from e
    try:
        action = doc["action"]
        if action in _OPS:
            return RowChange(_change(_OPS[action], doc), len(payload))
        if action == "B":
            return Begin(
                xid=int(doc["xid"]) if "xid" in doc else 0,
                commit_lsn=parse_lsn(doc["nextlsn"]),
                commit_time=doc["timestamp"],
                commit_start=parse_lsn(doc["lsn"]),
            )
        if action == "C":
            return Commit()
        if action == "M":
            return LogicalMessage(
                bool(doc["transactional"]), doc["prefix"], doc["content"], doc.get("lsn", "")
            )
    except (KeyError, TypeError, ValueError) as e:
        raise DecodeError(f"unexpected wal2json record ({e}): {payload[:200]!r}") from e
    raise DecodeError(f"unknown wal2json action {doc.get('action')!r}")


def _change(op: str, doc: dict[str, Any]) -> dict[str, Any]:
    change: dict[str, Any] = {
        "op": op,
        "lsn": doc["lsn"],
        "schema": doc["schema"],
        "table": doc["table"],
    }
    if op == TRUNCATE:
        return change
    # map + itemgetter: the per-change work, in C (this runs for every row of every change).
    columns = doc.get("columns") or ()
    change["columns"] = list(map(_NAME, columns))
    change["types"] = list(map(_TYPE, columns))
    change["values"] = list(map(_VALUE, columns))
    change["key"] = list(map(_NAME, doc.get("pk") or ()))
    identity = doc.get("identity")
    if identity:
        change["old_key"] = {
            "columns": list(map(_NAME, identity)),
            "types": list(map(_TYPE, identity)),
            "values": list(map(_VALUE, identity)),
        }
    return change
