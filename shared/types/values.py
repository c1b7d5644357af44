"""The value conversions into MariaDB: the envelope's value -> the value to bind.

Values arrive as the text PostgreSQL printed (see shared/wire.py). Most are bound as they
are and MariaDB parses them exactly (a DECIMAL from its decimal text, a DATE from ISO text);
only a few need work here: timestamptz is moved to UTC, bytea from hex to bytes, arrays to JSON.
Which type gets which conversion is the registry's (shared/types/registry.py).

A value the MariaDB column cannot hold is refused, never changed: by MariaDB itself (strict
sql_mode), whose error names the value and the column, or here (RowRejected) where MariaDB
would store it changed (a numeric rounded) or the conversion could not keep it (an array's
subscripts). Either way the message goes to the dead-letter queue with the reason. What
MariaDB refuses can be replayed after changing the target column; what is refused here
cannot. docs/types.md has the whole mapping and every such case.
"""

from __future__ import annotations

import enum
import json
import logging
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from shared.errors import RowRejected

log = logging.getLogger(__name__)

Converter = Callable[[Any], Any]

# MariaDB's DECIMAL holds at most 65 digits, 30 of them after the point.
MAX_DECIMAL_PRECISION = 65
MAX_DECIMAL_SCALE = 30
# MariaDB's JSON_VALID (the CHECK of a JSON column) refuses documents nested deeper than this
# (measured on 10.11: 31 nested arrays or objects pass, 32 do not).
MAX_JSON_DEPTH = 31


def number_text(value: Any) -> Any:
    # Always text: the JSON holds integers for whole values and text for the rest, and one
    # executemany must bind the same type all down a column. NaN and ±Infinity (text from
    # wal2json 2.6+) are bound too: MariaDB refuses them ("Incorrect double value: 'NaN'").
    return None if value is None else str(value)


def wide_numeric(value: Any) -> Any:
    """An unconstrained numeric into DECIMAL(65,30): refuse what would not fit exactly."""
    if value is None:
        return None
    text = str(value)
    digits = text.lstrip("+-")
    whole, _, fraction = digits.partition(".")
    if "e" in digits.lower() or not whole.isdigit() or (fraction and not fraction.isdigit()):
        raise RowRejected(f"numeric {text[:60]!r} has no exact DECIMAL equivalent")
    whole = whole.lstrip("0")
    fraction = fraction.rstrip("0")
    if len(whole) > MAX_DECIMAL_PRECISION - MAX_DECIMAL_SCALE or len(fraction) > MAX_DECIMAL_SCALE:
        raise RowRejected(
            f"numeric {text[:60]!r} does not fit DECIMAL({MAX_DECIMAL_PRECISION},"
            f"{MAX_DECIMAL_SCALE}) (at most {MAX_DECIMAL_PRECISION - MAX_DECIMAL_SCALE} digits "
            f"before the point and {MAX_DECIMAL_SCALE} after)"
        )
    return text


def timestamptz(value: Any) -> Any:
    if value is None:
        return None
    text = str(value)
    # The extractor's session runs in UTC, so this is the usual case and needs no parsing.
    if text.endswith("+00"):
        return text[:-3]
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            return text
        return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
    except (ValueError, OverflowError) as e:
        raise RowRejected(f"timestamptz {text!r} has no MariaDB DATETIME equivalent") from e


def bytea(value: Any) -> Any:
    if value is None:
        return None
    text = str(value)
    if text.startswith("\\x"):
        text = text[2:]
    try:
        return bytes.fromhex(text)
    except ValueError as e:
        raise RowRejected(f"bytea value is not hex: {text[:40]!r}") from e


# A JSON string, for stripping strings before counting brackets.
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_JSON_BRACKET = re.compile(r"[\[\]{}]")
# A \u escape of a UTF-16 surrogate (D800-DFFF), as json (not jsonb) may keep one unpaired.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]", re.ASCII)


def json_text(value: Any) -> Any:
    """json and jsonb, bound as PostgreSQL printed them.

    MariaDB's JSON column (LONGTEXT with a JSON_VALID check) refuses two kinds of document
    PostgreSQL accepts, and says only "CONSTRAINT `t.c` failed" (the message then goes to the
    dead-letter queue): say why, in a log line. The value is still bound as it is, so that
    after the column is made LONGTEXT, ``applier dlq replay`` carries it exactly.
    """
    if value is None:
        return None
    text = str(value)
    # Cheap tests first: most documents have few brackets and no surrogate escapes at all.
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH:
        depth = _json_depth(text)
        if depth > MAX_JSON_DEPTH:
            log.warning(
                "json_refused_by_mariadb reason=nested depth=%d limit=%d (a JSON column's "
                "JSON_VALID check refuses it; a LONGTEXT column holds it)",
                depth,
                MAX_JSON_DEPTH,
            )
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(text):
        log.warning(
            "json_refused_by_mariadb reason=unpaired_surrogate_escape (a \\uD800-\\uDFFF "
            "escape without its pair; a JSON column's JSON_VALID check refuses it; a LONGTEXT "
            "column holds it)"
        )
    return text


def _json_depth(text: str) -> int:
    depth = deepest = 0
    for m in _JSON_BRACKET.finditer(_JSON_STRING.sub('""', text)):
        if m.group() in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _has_lone_surrogate(text: str) -> bool:
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return False  # not for us to judge: MariaDB's check will say what it says

    def lone(v: Any) -> bool:
        if isinstance(v, str):
            # A paired escape decodes to one character above U+FFFF; a lone one stays a
            # surrogate, which UTF-8 cannot encode.
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return True
            return False
        if isinstance(v, list):
            return any(lone(x) for x in v)
        if isinstance(v, dict):
            return any(lone(k) or lone(x) for k, x in v.items())
        return False

    try:
        return lone(doc)
    except RecursionError:
        return False


def boolean(value: Any) -> Any:
    if value is None or isinstance(value, bool):
        return value
    return str(value).lower() in ("t", "true", "1")


class Element(enum.Enum):
    """What an array's element of a type becomes in the JSON array."""

    STRING = "string"  # PostgreSQL's text of it, as a JSON string
    NUMBER = "number"  # a JSON number with PostgreSQL's digits (NaN and ±Infinity: strings)
    BOOLEAN = "boolean"


_ARRAY_SPACE = " \t\n\r\v\f"


def array_converter(element: Element, delimiter: str = ",") -> Converter:
    """A PostgreSQL array literal (``{1,2}``, ``{"a b",NULL}``) -> JSON text (``[1,2]``).
    ``delimiter``: what PostgreSQL writes between the elements (the element type's typdelim)."""
    number = element is Element.NUMBER
    truth = element is Element.BOOLEAN

    def scalar(token: str, quoted: bool) -> Any:
        if not quoted and token.upper() == "NULL":
            return None
        if truth and not quoted:
            return token in ("t", "true")
        if number and not quoted:
            return _JsonNumber(token)
        return token

    def convert(value: Any) -> Any:
        if value is None:
            return None
        try:
            parsed, _ = _parse_array(str(value), 0, scalar, delimiter)
        except IndexError as e:
            raise RowRejected(f"unterminated array literal: {str(value)[:60]!r}") from e
        return _dump(parsed)

    return convert


class _JsonNumber(str):
    """Numeric text to write into JSON as a number, exactly as PostgreSQL printed it."""


def _dump(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ",".join(_dump(v) for v in value) + "]"
    if isinstance(value, _JsonNumber):
        text = str(value)
        return text if text not in ("NaN", "Infinity", "-Infinity") else json.dumps(text)
    return json.dumps(value, ensure_ascii=False)


def _parse_array(
    text: str, pos: int, scalar: Callable[[str, bool], Any], delimiter: str = ","
) -> tuple[list[Any], int]:
    if pos == 0 and text.startswith("["):
        # Explicit bounds, e.g. "[0:1]={1,2}" (PostgreSQL prints them only when a lower bound
        # is not 1). A JSON array always starts at its first element: every subscript would
        # change, so such an array is refused rather than shifted.
        bounds = text.split("=", 1)[0]
        raise RowRejected(
            f"array with lower bounds other than 1 ({bounds[:60]}) cannot be carried as a JSON "
            "array without changing its subscripts"
        )
    if pos >= len(text) or text[pos] != "{":
        raise RowRejected(f"not an array literal: {text[:60]!r}")
    pos += 1
    items: list[Any] = []
    while pos < len(text):
        ch = text[pos]
        if ch == "}":
            return items, pos + 1
        if ch == delimiter:
            pos += 1
            continue
        if ch == "{":
            sub, pos = _parse_array(text, pos, scalar, delimiter)
            items.append(sub)
            continue
        if ch == '"':
            buf = []
            pos += 1
            while text[pos] != '"':
                if text[pos] == "\\":
                    pos += 1
                buf.append(text[pos])
                pos += 1
            items.append(scalar("".join(buf), True))
            pos += 1
            continue
        end = pos
        while end < len(text) and text[end] != delimiter and text[end] != "}":
            end += 1
        # PostgreSQL quotes an element with white space around it, so none is there to
        # strip but the ASCII kind its reader skips; str.strip() would eat U+00A0 and the like.
        items.append(scalar(text[pos:end].strip(_ARRAY_SPACE), False))
        pos = end
    raise RowRejected(f"unterminated array literal: {text[:60]!r}")


# ---------------------------------------------------------------- a column at a time
# The applier converts a run of same-shaped rows column by column (applier/plan.py): the
# conversions of the bulk of any stream then cost no call per value where one pass in C
# over the column does the same, value for value.

_TEXT_OR_NULL = frozenset((str, type(None)))


def number_texts(column: Sequence[Any]) -> Sequence[Any]:
    """``number_text`` of each value: nothing to do when they are all text (or NULL)."""
    if set(map(type, column)) <= _TEXT_OR_NULL:
        return column
    return list(map(number_text, column))


def timestamptzs(column: Sequence[Any]) -> Sequence[Any]:
    """``timestamptz`` of each value. The usual case, every value text in UTC (``+00``),
    is one join, one replace and one split: no value holds a newline, so each ``+00`` before
    one ends a value, and each value ends before one."""
    try:
        joined = "\n".join(column) + "\n"
    except TypeError:  # a NULL (or not text): value by value
        return list(map(timestamptz, column))
    n = len(column)
    if joined.count("\n") != n or joined.count("+00\n") != n:
        return list(map(timestamptz, column))
    return joined.replace("+00\n", "\n").split("\n")[:n]


_COLUMN_FORMS: dict[Converter, Callable[[Sequence[Any]], Sequence[Any]]] = {
    number_text: number_texts,
    timestamptz: timestamptzs,
}


def column_form(conv: Converter) -> Callable[[Sequence[Any]], Sequence[Any]]:
    """``conv`` over a whole column of values, in order."""
    form = _COLUMN_FORMS.get(conv)
    if form is not None:
        return form
    return lambda column: list(map(conv, column))
