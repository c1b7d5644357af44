"""wal2json as the output plugin: its start options, and its records -> the records of decode.py.

Each replication message from wal2json v2 is one JSON object. Numbers are parsed without
ever becoming a binary float: wal2json 2.5 prints numeric, real and double as bare JSON numbers,
and the decoder hands each such literal's text to ``float_hook=str``, so it stays that exact
text (integers, of any size, stay exact Python ints). msgspec's decoder does this about three
times faster than json's with ``parse_float`` (the extractor's largest cost per change).

The object is in the source database's encoding: a database that is not UTF8 has its records
converted by its SourceCodec (encoding.py) first. wal2json 2.5 also writes a type name that
starts with a quote without escaping it (``"type":"Other S"."My Dom"``), which is not JSON: such
a record is repaired, and read again, before it is refused.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from operator import attrgetter
from typing import Any

import msgspec

from extractor.decode import Begin, Commit, LogicalMessage, Record, RowChange
from extractor.encoding import SourceCodec
from shared.envelope import DELETE, INSERT, TRUNCATE, UPDATE
from shared.errors import DecodeError
from shared.lsn import parse_lsn
from shared.tables import Part, Pattern, TableFilter, TableRef

log = logging.getLogger(__name__)


class _Column(msgspec.Struct, gc=False):
    """One column of a wal2json record (``pk`` has no value).

    ``gc=False`` (here and below): these objects hold text, numbers and lists of each other,
    never a cycle, so the cycle collector need not track the thousands made per message."""

    name: str
    type: str = ""
    value: Any = None


class _Record(msgspec.Struct, gc=False):
    """Every member of a wal2json v2 record the extractor reads; others are skipped.

    Decoded into these types rather than into dicts: msgspec then builds no dict per column
    (measured: the decoding of a bulk row about twice as fast; python -m bench.cpu)."""

    action: str = ""
    lsn: Any = None
    nextlsn: Any = None
    xid: Any = None
    timestamp: Any = None
    schema: Any = None
    table: Any = None
    columns: list[_Column] | None = None
    pk: list[_Column] | None = None
    identity: list[_Column] | None = None
    transactional: Any = None
    prefix: Any = None
    content: Any = None


# One decoder, made once; every number that is not an integer stays the text it was written as.
_JSON = msgspec.json.Decoder(_Record, float_hook=str)

PLUGIN = "wal2json"
NUMERIC_AS_STRING = "numeric-data-types-as-string"
_WAL2JSON_SPECIAL = {",", ".", "*", " ", "\\"}


_OPS = {"I": INSERT, "U": UPDATE, "D": DELETE, "T": TRUNCATE}
_NAME, _TYPE, _VALUE = attrgetter("name"), attrgetter("type"), attrgetter("value")
# A type name as wal2json 2.5 writes it when format_type's text starts with a quote and does not
# end with "[]": unescaped, up to the next member of the column or its end. Only a key can be
# written "type": inside a JSON string every quote is escaped.
_RAW_TYPE = re.compile(
    rb'(,"type":)("(?:[^"]|"")*"(?:\.(?:"(?:[^"]|"")*"|[^",(){}\[\]]+))?(?:\([^)]*\))?)'
    rb'(?=,"value":|,"typeoid":|})'
)


class Wal2Json:
    """wal2json format-version 2 (an OutputPlugin, decode.py)."""

    name = PLUGIN

    def publish(self, conn: Any, tables: list[TableRef], at_start: bool) -> list[TableRef]:
        return []  # wal2json streams every table; add-tables only narrows it

    def start_options(self, capture: TableFilter, partitioned: bool) -> dict[str, str]:
        return {**wal2json_options(capture, partitioned), NUMERIC_AS_STRING: "1"}

    def fallback_options(self, options: Mapping[str, str], refusal: str) -> dict[str, str] | None:
        # wal2json before 2.6 does not know the option; numbers then come as bare JSON
        # numbers, which decode_record reads as exact text. Any other bad option is ours.
        if NUMERIC_AS_STRING not in options or NUMERIC_AS_STRING not in refusal:
            return None
        return {k: v for k, v in options.items() if k != NUMERIC_AS_STRING}

    def started(self, options: Mapping[str, str]) -> str:
        numeric_as_string = NUMERIC_AS_STRING in options
        if not numeric_as_string:
            _warn_nan_once()
        return f"numeric_as_string={numeric_as_string}"

    def decoder(self, codec: SourceCodec | None) -> Wal2JsonDecoder:
        return Wal2JsonDecoder(codec)


class Wal2JsonDecoder:
    """Reads wal2json's records; each carries its own LSNs, so the message's is not needed."""

    def __init__(self, codec: SourceCodec | None) -> None:
        self._codec = codec

    def decode(self, payload: bytes, wal_start: int) -> Record:
        return decode_record(payload, self._codec)


def decode_record(payload: bytes, codec: SourceCodec | None = None) -> Record:
    """One wal2json record; ``codec``: the source database's encoding, if it is not UTF8."""
    text = payload if codec is None else codec.to_utf8(payload)
    try:
        doc = _JSON.decode(text)
    except msgspec.DecodeError as e:
        repaired = _RAW_TYPE.sub(_quote_type, text)
        try:
            doc = _JSON.decode(repaired)
        except msgspec.DecodeError:
            raise DecodeError(f"wal2json output is not JSON: {e}: {payload[:200]!r}") from e
    try:
        action = doc.action
        if action in _OPS:
            return RowChange(_change(_OPS[action], doc), len(payload))
        if action == "B":
            return Begin(
                xid=int(doc.xid) if doc.xid is not None else 0,
                commit_lsn=parse_lsn(_required(doc.lsn, "lsn")),
                commit_time=_required(doc.timestamp, "timestamp"),
                commit_end=parse_lsn(_required(doc.nextlsn, "nextlsn")),
            )
        if action == "C":
            return Commit(parse_lsn(doc.nextlsn) if doc.nextlsn is not None else 0)
        if action == "M":
            return LogicalMessage(
                bool(_required(doc.transactional, "transactional")),
                _required(doc.prefix, "prefix"),
                _required(doc.content, "content"),
                doc.lsn if doc.lsn is not None else "",
            )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DecodeError(f"unexpected wal2json record ({e}): {payload[:200]!r}") from e
    raise DecodeError(f"unknown wal2json action {doc.action!r}")


def _required(value: Any, name: str) -> Any:
    if value is None:
        raise KeyError(name)
    return value


def _quote_type(m: re.Match[bytes]) -> bytes:
    raw = m.group(2).decode()
    try:
        json.loads(raw)
        return m.group(0)  # a JSON string already (an escaped name, or a lone quoted one)
    except json.JSONDecodeError:
        return m.group(1) + json.dumps(raw, ensure_ascii=False).encode()


def _change(op: str, doc: _Record) -> dict[str, Any]:
    lsn, schema, table = doc.lsn, doc.schema, doc.table
    if lsn is None or schema is None or table is None:
        raise KeyError("lsn" if lsn is None else "schema" if schema is None else "table")
    if op == TRUNCATE:
        return {"op": op, "lsn": lsn, "schema": schema, "table": table}
    # map + attrgetter: the per-change work, in C (this runs for every row of every change).
    columns = doc.columns or ()
    change: dict[str, Any] = {
        "op": op,
        "lsn": lsn,
        "schema": schema,
        "table": table,
        "columns": list(map(_NAME, columns)),
        "types": list(map(_TYPE, columns)),
        "values": list(map(_VALUE, columns)),
        "key": list(map(_NAME, doc.pk or ())),
    }
    identity = doc.identity
    if identity:
        change["old_key"] = {
            "columns": list(map(_NAME, identity)),
            "types": list(map(_TYPE, identity)),
            "values": list(map(_VALUE, identity)),
        }
    return change


def wal2json_options(capture: TableFilter, partitioned: bool = False) -> dict[str, str]:
    """The plugin options of every session (see docs and the golden fixtures in tests/).

    wal2json filters by the table names it reports, and it reports a partitioned table's
    changes under each partition's name: while a captured table is partitioned, it must not
    filter (the extractor filters exactly anyway)."""
    options = {
        "format-version": "2",
        "include-xids": "1",
        "include-lsn": "1",
        "include-pk": "1",
        "include-types": "1",
        "include-typmod": "1",
        "include-timestamp": "1",
        "include-transaction": "1",
    }
    if not partitioned:
        options.update(filter_options(capture))
    return options


_warned: set[str] = set()


def _warn_nan_once() -> None:
    if "nan" in _warned:
        return
    _warned.add("nan")
    log.warning(
        "wal2json_loses_nan: this wal2json (before 2.6) prints NaN and Infinity of numeric, "
        "real and double columns as null, so they arrive as NULL; install wal2json 2.6 or later "
        "(see docs/types.md)"
    )


def filter_options(capture: TableFilter) -> dict[str, str]:
    """What wal2json can filter itself (the extractor filters again, exactly)."""
    options: dict[str, str] = {}
    if capture.include and all(_wal2json_ok(p) for p in capture.include):
        options["add-tables"] = ",".join(_wal2json_name(p) for p in capture.include)
    if capture.exclude and all(_wal2json_ok(p) for p in capture.exclude):
        options["filter-tables"] = ",".join(_wal2json_name(p) for p in capture.exclude)
    return options


def _wal2json_ok(p: Pattern) -> bool:
    # wal2json understands exact names and a whole-part "*" (e.g. sales.* or *.orders).
    return all(not part.glob or part.everything for part in p.parts)


def _wal2json_name(p: Pattern) -> str:
    def esc(part: Part) -> str:
        if part.everything:
            return "*"
        return "".join("\\" + ch if ch in _WAL2JSON_SPECIAL else ch for ch in part.text)

    return ".".join(esc(part) for part in p.parts)


def wal2json_add_tables(refs: tuple[TableRef, ...]) -> str:
    """The value of wal2json's ``add-tables`` option for these exact tables."""
    return _wal2json_name_list(refs)


def _wal2json_name_list(refs: tuple[TableRef, ...]) -> str:
    return ",".join(
        _wal2json_name(Pattern((Part(r.schema, False), Part(r.table, False)))) for r in refs
    )
