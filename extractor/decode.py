"""wal2json format-version 2 records -> begin / change / commit events.

Each replication message from wal2json v2 is one JSON object. Numbers are parsed without
ever becoming a binary float: wal2json 2.5 prints numeric, real and double as bare JSON numbers,
and ``parse_float=str`` keeps their exact text (integers stay exact Python ints).

The object is in the source database's encoding: a database that is not UTF8 has its records
converted by its SourceCodec (encoding.py) first. wal2json 2.5 also writes a type name that
starts with a quote without escaping it (``"type":"Other S"."My Dom"``), which is not JSON: such
a record is repaired, and read again, before it is refused.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from extractor.encoding import SourceCodec
from shared.envelope import DELETE, INSERT, TRUNCATE, UPDATE, loads_exact
from shared.errors import DecodeError
from shared.lsn import parse_lsn

_OPS = {"I": INSERT, "U": UPDATE, "D": DELETE, "T": TRUNCATE}
_NAME, _TYPE, _VALUE = itemgetter("name"), itemgetter("type"), itemgetter("value")
# A type name as wal2json 2.5 writes it when format_type's text starts with a quote and does not
# end with "[]": unescaped, up to the next member of the column or its end. Only a key can be
# written "type": inside a JSON string every quote is escaped.
_RAW_TYPE = re.compile(
    rb'(,"type":)("(?:[^"]|"")*"(?:\.(?:"(?:[^"]|"")*"|[^",(){}\[\]]+))?(?:\([^)]*\))?)'
    rb'(?=,"value":|,"typeoid":|})'
)


@dataclass(slots=True)
class Begin:
    xid: int
    commit_lsn: int  # where the commit record begins: the transaction's place in the stream
    commit_time: str
    # Where the commit record ends (the slot position once it is confirmed), when the decoder
    # knows it at the beginning (wal2json does); else 0 and the Commit record brings it.
    commit_end: int = 0


@dataclass(slots=True)
class RowChange:
    change: dict[str, Any]  # already in envelope form
    size: int  # bytes of wal2json text it came from: a cheap bound for chunking


@dataclass(slots=True)
class Commit:
    end: int = 0  # where the commit record ends, if the decoder gives it here


@dataclass(slots=True)
class LogicalMessage:
    transactional: bool
    prefix: str
    content: str


Record = Begin | RowChange | Commit | LogicalMessage


def decode_record(payload: bytes, codec: SourceCodec | None = None) -> Record:
    """One wal2json record; ``codec``: the source database's encoding, if it is not UTF8."""
    text = payload if codec is None else codec.to_utf8(payload)
    try:
        doc = loads_exact(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        repaired = _RAW_TYPE.sub(_quote_type, text)
        try:
            doc = loads_exact(repaired)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise DecodeError(f"wal2json output is not JSON: {e}: {payload[:200]!r}") from e
    try:
        action = doc["action"]
        if action in _OPS:
            return RowChange(_change(_OPS[action], doc), len(payload))
        if action == "B":
            return Begin(
                xid=int(doc["xid"]) if "xid" in doc else 0,
                commit_lsn=parse_lsn(doc["lsn"]),
                commit_time=doc["timestamp"],
                commit_end=parse_lsn(doc["nextlsn"]),
            )
        if action == "C":
            return Commit(parse_lsn(doc["nextlsn"]) if "nextlsn" in doc else 0)
        if action == "M":
            return LogicalMessage(bool(doc["transactional"]), doc["prefix"], doc["content"])
    except (KeyError, TypeError, ValueError) as e:
        raise DecodeError(f"unexpected wal2json record ({e}): {payload[:200]!r}") from e
    raise DecodeError(f"unknown wal2json action {doc.get('action')!r}")


def _quote_type(m: re.Match[bytes]) -> bytes:
    raw = m.group(2).decode()
    try:
        json.loads(raw)
        return m.group(0)  # a JSON string already (an escaped name, or a lone quoted one)
    except json.JSONDecodeError:
        return m.group(1) + json.dumps(raw, ensure_ascii=False).encode()


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
