"""The type registry: for each PostgreSQL type, everything the pipeline does with its values.

A type is named as format_type prints it, the envelope's ``types`` (``numeric(12,4)``,
``timestamp(3) with time zone``, ``integer[]``, ``"Mood"``): the name both decoders and the
copier give a column, the applier's schema code maps and records, and verify reads from the
source's catalog. Its rule says:

- its MariaDB column, as a key column or not (docs/types.md, the user's table of this);
- the conversion of its envelope value into the value bound in MariaDB (shared/types/values.py);
- how its value travels in the envelope: ints and bools as such (wal2json's JSON numbers and
  booleans; the copier lets psycopg2 read these types as Python values), every other value as
  the text PostgreSQL's output function prints;
- how verify compares it (shared/types/comparison.py);
- as the element of an array: what it becomes in the JSON array, and the delimiter PostgreSQL
  writes between elements.

An array of any type has one rule of its own, made from its element's. A name the registry
does not know (an enum, a composite, an extension's type) is stored as PostgreSQL's text.
Everything is decided once per type text (cached), never per value.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from shared.types import comparison as cmp
from shared.types import values
from shared.types.comparison import Comparison
from shared.types.names import PgType, parse_type, printed_name
from shared.types.values import MAX_DECIMAL_PRECISION, MAX_DECIMAL_SCALE, Converter, Element

if TYPE_CHECKING:
    from sqlalchemy.types import TypeEngine

# A key column must be bounded; 255 utf8mb4 characters keep three of them under InnoDB's
# 3072-byte key limit.
KEY_VARCHAR = 255
# Longer VARCHARs would eat MariaDB's 65,535-byte row limit; they become TEXT types.
MAX_INLINE_VARCHAR = 4000

Column = Callable[[tuple[int, ...], bool], "TypeEngine[Any]"]  # (typmod, is key) -> column type
Conversion = Callable[[tuple[int, ...]], Converter | None]  # typmod -> converter (None: as is)


class Travels(enum.Enum):
    """How a value of the type travels in the envelope."""

    TEXT = "text"  # the text PostgreSQL's output function prints
    INTEGER = "integer"  # a JSON number (int)
    BOOLEAN = "boolean"  # a JSON boolean


def _mysql(name: str, *args: Any, **kwargs: Any) -> TypeEngine[Any]:
    """MariaDB's column type ``name`` (SQLAlchemy's mysql dialect). Imported here, when the
    applier asks for a column: the extractor loads this registry too, and SQLAlchemy is a
    fifth of its start-up (a drain of a queued backlog is timed from the process's start)."""
    from sqlalchemy.dialects import mysql  # noqa: PLC0415 (see the docstring)

    column: TypeEngine[Any] = getattr(mysql, name)(*args, **kwargs)
    return column


def _text_column(_args: tuple[int, ...], is_key: bool) -> TypeEngine[Any]:
    return _mysql("VARCHAR", KEY_VARCHAR) if is_key else _mysql("LONGTEXT")


def _fixed(name: str, *args: Any, **kwargs: Any) -> Column:
    return lambda _args, _is_key: _mysql(name, *args, **kwargs)


def _as_is(_args: tuple[int, ...]) -> Converter | None:
    return None


def _always(conv: Converter) -> Conversion:
    return lambda _args: conv


@dataclass(frozen=True)
class TypeRule:
    names: tuple[str, ...]  # as format_type prints them (other spellings: names.py)
    column: Column = _text_column
    conversion: Conversion = _as_is
    travels: Travels = Travels.TEXT
    compared: Comparison = cmp.PRINTED
    element: Element = Element.STRING  # as an array's element, in the JSON array
    delimiter: str = ","  # between an array's elements (the element type's typdelim)


# ---------------------------------------------------------------- columns


def decimal_for(args: tuple[int, ...]) -> tuple[int, int] | None:
    """The DECIMAL(M,D) that holds every value of ``numeric(p,s)`` exactly; None when no DECIMAL
    does (no typmod, or too many digits): the column is then DECIMAL(65,30) and each value is
    checked on its own (values.wide_numeric)."""
    if not args:
        return None
    precision = args[0]
    scale = args[1] if len(args) > 1 else 0
    if scale < 0:
        # numeric(3,-2): up to 3 significant digits, rounded to hundreds (99900 at most).
        precision, scale = precision - scale, 0
    elif scale > precision:
        # numeric(2,5): below 0.001, five digits after the point; MariaDB wants M >= D.
        precision = scale
    if precision > MAX_DECIMAL_PRECISION or scale > MAX_DECIMAL_SCALE:
        return None
    return precision, scale


def _numeric_column(args: tuple[int, ...], _is_key: bool) -> TypeEngine[Any]:
    exact = decimal_for(args)
    if exact is not None:
        return _mysql("DECIMAL", *exact)
    return _mysql("DECIMAL", MAX_DECIMAL_PRECISION, MAX_DECIMAL_SCALE)


def _numeric_conversion(args: tuple[int, ...]) -> Converter:
    return values.number_text if decimal_for(args) is not None else values.wide_numeric


def _datetime(args: tuple[int, ...], _is_key: bool) -> TypeEngine[Any]:
    return _mysql("DATETIME", fsp=args[0] if args else 6)


def _time(args: tuple[int, ...], _is_key: bool) -> TypeEngine[Any]:
    return _mysql("TIME", fsp=args[0] if args else 6)


def _bytea(_args: tuple[int, ...], is_key: bool) -> TypeEngine[Any]:
    return _mysql("VARBINARY", KEY_VARCHAR) if is_key else _mysql("LONGBLOB")


def _character(args: tuple[int, ...], is_key: bool) -> TypeEngine[Any]:
    # char(n) too becomes VARCHAR(n): PostgreSQL sends its value padded to n, and MariaDB's
    # CHAR would strip the trailing spaces on the way out.
    if not args:
        return _text_column(args, is_key)
    length = min(args[0], KEY_VARCHAR) if is_key else args[0]
    if length > MAX_INLINE_VARCHAR:
        return _mysql("LONGTEXT")
    return _mysql("VARCHAR", length)


def _array_column(_args: tuple[int, ...], is_key: bool) -> TypeEngine[Any]:
    return _mysql("VARCHAR", KEY_VARCHAR) if is_key else _mysql("JSON")


# ---------------------------------------------------------------- the rules


def _integer(name: str, column: str, **kwargs: Any) -> TypeRule:
    return TypeRule(
        (name,),
        _fixed(column, **kwargs),
        travels=Travels.INTEGER,
        compared=cmp.INTEGER,
        element=Element.NUMBER,
    )


# Other built-in types, stored as PostgreSQL's text. Listed so that the extractor knows them
# as built in (it looks any other name up in the catalog, for a domain's base type); a
# built-in type missing here is looked up once and kept as it is.
_TEXT_BUILTINS = (
    "interval", "money", "inet", "cidr", "macaddr", "macaddr8", "xml", "tsvector", "tsquery",
    "name", "bit", "bit varying", "point", "line", "lseg", "path", "polygon", "circle",
    "int4range", "int8range", "numrange", "daterange", "tsrange", "tstzrange", "pg_lsn",
    "regclass",
)  # fmt: skip

_RULES = (
    _integer("smallint", "SMALLINT"),
    _integer("integer", "INTEGER"),
    _integer("bigint", "BIGINT"),
    _integer("oid", "INTEGER", unsigned=True),
    # DOUBLE, not FLOAT: a real arrives as the shortest decimal text of the float4, and a
    # DOUBLE holds that text exactly, so whole-row matches (tables without a key) compare
    # equal; FLOAT would store a nearby binary value that no longer does.
    TypeRule(
        ("real", "double precision"),
        _fixed("DOUBLE"),
        _always(values.number_text),
        compared=cmp.FLOAT,
        element=Element.NUMBER,
    ),
    TypeRule(
        ("numeric",),
        _numeric_column,
        _numeric_conversion,
        compared=cmp.NUMERIC,
        element=Element.NUMBER,
    ),
    TypeRule(
        ("boolean",),
        _fixed("BOOLEAN"),
        _always(values.boolean),
        Travels.BOOLEAN,
        cmp.BOOLEAN,
        Element.BOOLEAN,
    ),
    TypeRule(("date",), _fixed("DATE"), compared=cmp.DATE),
    TypeRule(("timestamp without time zone",), _datetime, compared=cmp.TIMESTAMP),
    TypeRule(
        ("timestamp with time zone",),
        _datetime,
        _always(values.timestamptz),
        compared=cmp.TIMESTAMPTZ,
    ),
    TypeRule(("time without time zone",), _time, compared=cmp.TIME),
    # MariaDB's TIME has no offset, and a time of day cannot be moved to UTC without a date:
    # kept as PostgreSQL's text, e.g. 12:00:00+02.
    TypeRule(("time with time zone",), _fixed("VARCHAR", 32)),
    TypeRule(("bytea",), _bytea, _always(values.bytea), compared=cmp.BYTEA),
    TypeRule(("text",), compared=cmp.TEXT),
    TypeRule(("character varying",), _character, compared=cmp.TEXT),
    TypeRule(("character", "bpchar"), _character),
    TypeRule(("json", "jsonb"), _fixed("JSON"), _always(values.json_text)),
    TypeRule(("uuid",), _fixed("CHAR", 36)),
    # box's text has commas of its own: the one built-in type with another delimiter. An
    # array of any other type with another delimiter travels under its array type's own name
    # (_geometry), which is stored as PostgreSQL's text of the whole array
    # (extractor/basetypes.py).
    TypeRule(("box",), delimiter=";"),
    # Other built-in types, stored as PostgreSQL's text.
    TypeRule(_TEXT_BUILTINS),
)
_BY_NAME = {name: rule for rule in _RULES for name in rule.names}
# Any type the registry does not know: an enum, a composite, an extension's type, an array
# under its array type's own name.
_OTHER = TypeRule(())


@lru_cache(maxsize=256)
def _array_of(element: TypeRule) -> TypeRule:
    return TypeRule(
        (),
        _array_column,
        _always(values.array_converter(element.element, element.delimiter)),
        compared=cmp.ARRAY,
    )


def _rule(t: PgType) -> TypeRule:
    element = _BY_NAME.get(t.name, _OTHER)
    return _array_of(element) if t.array else element


def rule_of(type_text: str) -> TypeRule:
    return _rule(parse_type(type_text))


# ---------------------------------------------------------------- what the pipeline asks


def column_type(type_text: str, is_key: bool) -> TypeEngine[Any]:
    """The MariaDB column type for a PostgreSQL type (see docs/types.md)."""
    t = parse_type(type_text)
    return _rule(t).column(t.args, is_key)


@lru_cache(maxsize=4096)
def converter(type_text: str) -> Converter | None:
    """How to turn the envelope's value into the value to bind; None: bind it as it is."""
    t = parse_type(type_text)
    return _rule(t).conversion(t.args)


def comparison(type_text: str) -> Comparison:
    """How verify compares values of this type (or of the kind TEXT, "text")."""
    return rule_of(type_text).compared


def is_builtin(type_text: str) -> bool:
    """Whether format_type printed ``type_text`` for a built-in type the registry knows (any
    typmod, an array of it): a name the extractor never needs to look up."""
    name = printed_name(type_text)
    return name is not None and name in _BY_NAME


def element_delimiter(typname: str) -> str:
    """What PostgreSQL writes between the elements of an array of the built-in type named so
    (``box``: ``;``), as the applier splits it."""
    return rule_of(typname).delimiter


def copied_as_values() -> list[str]:
    """The types whose values a copy lets psycopg2 read as Python values (as format_type
    names them, without typmod): those that travel as ints and bools. Every other value is
    read as the text PostgreSQL prints, as a decoder sends it."""
    return [r.names[0] for r in _RULES if r.travels is not Travels.TEXT]
