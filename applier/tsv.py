"""Rows as the text LOAD DATA reads: the bulk path's file (applier/bulk.py).

The format is LOAD DATA's default one, stated in full in every statement (``FIELDS
TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n'``, no enclosing): a field is
its value's text with five characters escaped by a backslash (backslash, tab, newline,
carriage return, NUL); NULL is ``\\N``, which an escaped backslash followed by ``N`` (the
text ``\\N``) can never be mistaken for; an empty string is an empty field. The server
reads the file as utf8mb4.

Values are the ones the executemany path binds (shared/types/values.py): None, str, int,
bool, bytes, and, from a row built elsewhere, float, Decimal and the datetime types. Bytes
travel as hex and the statement loads them through ``UNHEX`` (``hex_columns``), so the file
is text throughout and no byte of a bytea value depends on a character set. A value of any
other kind raises ``Unloadable``: its group goes by executemany instead.

The work is done column by column (one C-level pass per column for the common kinds), not
value by value: building the file is most of the bulk path's Python time.
"""

from __future__ import annotations

import datetime
import decimal
import re
from collections.abc import Callable
from typing import cast

Row = tuple[object, ...]

NULL = "\\N"

# The characters LOAD DATA's ESCAPED BY '\' gives a meaning to, or that end a field or line.
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})
_SPECIAL = re.compile("[" + re.escape("".join(map(chr, _ESCAPES))) + "]")


class Unloadable(TypeError):
    """A value the file cannot carry exactly."""


def _text(v: object) -> str:
    return "\\N" if v is None else str(v).translate(_ESCAPES)


def _number(v: object) -> str:
    return "\\N" if v is None else str(v)


def _float(v: object) -> str:
    return "\\N" if v is None else repr(v)


def _boolean(v: object) -> str:
    return "\\N" if v is None else ("1" if v else "0")


def _hex(v: object) -> str:
    return "\\N" if v is None else v.hex()  # type: ignore[attr-defined]


def _iso(v: object) -> str:
    if v is None:
        return "\\N"
    if isinstance(v, datetime.datetime):
        return v.isoformat(sep=" ")
    return str(v.isoformat())  # type: ignore[attr-defined]


# What each kind of value becomes; the kinds a column may mix with NULLs only.
_FIELD: dict[type, Callable[[object], str]] = {
    str: _text,
    int: _number,
    decimal.Decimal: _number,
    float: _float,
    bool: _boolean,
    bytes: _hex,
    bytearray: _hex,
    memoryview: lambda v: "\\N" if v is None else bytes(v).hex(),  # type: ignore[call-overload]
    datetime.date: _iso,
    datetime.datetime: _iso,
    datetime.time: _iso,
}
_BINARY = (bytes, bytearray, memoryview)


def encode(rows: list[Row], width: int) -> tuple[bytes, tuple[bool, ...]]:
    """The file's bytes for ``rows`` (each of ``width`` values), and for each column whether
    it holds bytes (sent as hex: the statement must UNHEX it)."""
    if not rows:
        return b"", (False,) * width
    columns = list(zip(*rows, strict=True)) if width else []
    if len(columns) != width:
        raise Unloadable(f"rows of {len(columns)} values, expected {width}")
    fields: list[list[str]] = []
    binary: list[bool] = []
    for column in columns:
        kinds = set(map(type, column))
        kinds.discard(type(None))
        fields.append(_column(column, kinds))
        binary.append(bool(kinds) and all(k in _BINARY for k in kinds))
    text = "\n".join(map("\t".join, zip(*fields, strict=True)))
    return (text + "\n").encode("utf-8"), tuple(binary)


def _texts(column: tuple[str | None, ...]) -> list[str]:
    """Text values: most columns hold no character to escape at all, which one scan of them
    all finds (in C) without a call per value."""
    if None in column:
        if _SPECIAL.search("".join(v for v in column if v is not None)):
            return [NULL if v is None else v.translate(_ESCAPES) for v in column]
        return [NULL if v is None else v for v in column]
    texts = cast("tuple[str, ...]", column)
    if _SPECIAL.search("".join(texts)):
        return [v.translate(_ESCAPES) for v in texts]
    return list(texts)


def _column(column: tuple[object, ...], kinds: set[type]) -> list[str]:
    if not kinds:
        return [NULL] * len(column)
    if len(kinds) == 1:
        kind = next(iter(kinds))
        field = _FIELD.get(kind)
        if field is None:
            raise Unloadable(f"a value of type {kind.__name__} has no LOAD DATA form here")
        if kind is str:
            return _texts(column)  # type: ignore[arg-type]
        if kind is int and None not in column:
            return list(map(str, column))
        return list(map(field, column))
    # Mixed kinds in one column (not what the converters produce): only numbers with numbers
    # or text with text keep one meaning once written; bytes mix with bytes only.
    binary = kinds & set(_BINARY)
    if (binary and binary != kinds) or any(k not in _FIELD for k in kinds):
        raise Unloadable(f"a column mixes {sorted(k.__name__ for k in kinds)}")
    return [NULL if v is None else _FIELD[type(v)](v) for v in column]
