"""The bytes of pgoutput's messages (PostgreSQL docs, "Logical Replication Message Formats"):
a cursor over a message, a relation as its Relation message describes it, and a TupleData
read into values in the form wal2json's JSON gives them (pgoutput.py makes changes of them).

The tuple reader is the extractor's hot path with pgoutput: one pass over a relation's
precomputed column kinds, lengths unpacked from the message where they stand, and an ASCII
text value one slice of the message decoded once."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from shared.errors import DecodeError

_BOOL, _INT8, _INT2, _INT4, _OID, _BYTEA = 16, 20, 21, 23, 26, 17
_INTEGERS = frozenset((_INT8, _INT2, _INT4, _OID))
_U8 = struct.Struct("!B")
_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
U32 = struct.Struct("!I")  # also the relation OID that starts a row message

UNCHANGED = object()  # an unchanged TOASTed value ('u'): left out of the change


_TEXT, _INT, _BOOLEAN, _HEX = 0, 1, 2, 3


def kind_of(oid: int) -> int:
    if oid in _INTEGERS:
        return _INT
    if oid == _BOOL:
        return _BOOLEAN
    if oid == _BYTEA:
        return _HEX
    return _TEXT


def read_tuple(buf: bytes, text: str, pos: int, kinds: tuple[int, ...]) -> tuple[list[Any], int]:
    """A TupleData at ``pos``: its values, and where it ends. ``text``: ``buf`` decoded as
    latin-1 (a slice of it that is ASCII is the value's UTF-8 text too; isascii() on a str
    costs nothing, CPython knows it from building the slice)."""
    (n,) = _I16.unpack_from(buf, pos)
    if n != len(kinds):
        raise DecodeError(f"pgoutput sent {n} columns of a relation of {len(kinds)}")
    pos += 2
    out: list[Any] = []
    append = out.append
    size_at = _I32.unpack_from
    for kind in kinds:
        k = buf[pos]
        if k == 0x74:  # 't'
            (size,) = size_at(buf, pos + 1)
            start = pos + 5
            pos = start + size
            if kind == _TEXT:
                value = text[start:pos]
                append(value if value.isascii() else buf[start:pos].decode())
            elif kind == _INT:
                append(int(buf[start:pos]))
            elif kind == _BOOLEAN:
                append(buf[start:pos] == b"t")
            else:
                # bare hex, as wal2json prints it (the session asks for bytea_output=hex)
                raw = buf[start:pos]
                append((raw[2:] if raw[:2] == b"\\x" else raw).decode())
        elif k == 0x6E:  # 'n'
            append(None)
            pos += 1
        elif k == 0x75:  # 'u'
            append(UNCHANGED)
            pos += 1
        else:
            raise DecodeError(f"unknown pgoutput column kind {chr(k)!r}")
    return out, pos


def columns_into(
    into: dict[str, Any], rel: Relation, values: list[Any], only: list[bool] | None
) -> dict[str, Any]:
    """The columns of a tuple into ``into`` (all, or those ``only`` marks), in wal2json's form;
    unchanged TOASTed values left out."""
    if only is None and UNCHANGED not in values:
        # The relation's own lists, shared by its changes (decode.py: never edited in place).
        into["columns"], into["types"], into["values"] = rel.columns, rel.types, values
        return into
    keep = [i for i, v in enumerate(values) if v is not UNCHANGED and (only is None or only[i])]
    into["columns"] = [rel.columns[i] for i in keep]
    into["types"] = [rel.types[i] for i in keep]
    into["values"] = [values[i] for i in keep]
    return into


@dataclass(slots=True)
class Relation:
    schema: str
    table: str
    columns: list[str]
    types: list[str]
    oids: list[int]
    identity: list[bool]  # the column is part of the replica identity
    full: bool  # REPLICA IDENTITY FULL
    key: list[str]
    kinds: tuple[int, ...] = ()  # what each column's text value becomes (kind_of)
    has_identity: bool = False  # not FULL, and some column is the identity's

    def __post_init__(self) -> None:
        self.kinds = tuple(map(kind_of, self.oids))
        self.has_identity = not self.full and any(self.identity)


class Reader:
    """A cursor over one message's bytes."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int = 1) -> None:
        self.buf = buf
        self.pos = pos

    def u8(self) -> int:
        (v,) = _U8.unpack_from(self.buf, self.pos)
        self.pos += 1
        return int(v)

    def i16(self) -> int:
        (v,) = _I16.unpack_from(self.buf, self.pos)
        self.pos += 2
        return int(v)

    def i32(self) -> int:
        (v,) = _I32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return int(v)

    def u32(self) -> int:
        (v,) = U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return int(v)

    def string(self) -> bytes:
        end = self.buf.index(b"\0", self.pos)
        s = self.buf[self.pos : end]
        self.pos = end + 1
        return s

    def take(self, n: int) -> bytes:
        s = self.buf[self.pos : self.pos + n]
        if len(s) != n:
            raise DecodeError("pgoutput message ends early")
        self.pos += n
        return s
