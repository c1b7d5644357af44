"""PostgreSQL type names as format_type prints them (the envelope's ``types``), parsed once.

Examples: ``integer``, ``numeric(12,4)``, ``character varying(20)``, ``timestamp(3) with time
zone``, ``interval day to second(3)``, ``integer[]``, ``"Mood"`` (a user-defined type).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

_TYPE = re.compile(
    r"""^(?P<base>[^(\[]+?)            # name, possibly several words
        (?:\((?P<args>[^)]*)\))?       # typmod
        (?P<suffix>\s+with(?:out)?\s+time\s+zone)?
        (?P<array>(?:\[\])*)$""",
    re.VERBOSE,
)
# An interval's fields, which format_type prints between the name and the typmod.
_INTERVAL_FIELDS = re.compile(
    r"interval (?:year|month|day|hour|minute|second)(?: to (?:month|hour|minute|second))?"
)
# A typmod as format_type prints it: (n) or (p,s), s possibly negative.
_TYPMOD = re.compile(r"\d+(?:,-?\d+)?")

# Other spellings of built-in types (PostgreSQL's internal names, SQL's short forms): read as
# the type format_type names. A quoted name is never one of them ("char" is its own type).
_ALIASES = {
    "int2": "smallint",
    "int4": "integer",
    "int": "integer",
    "int8": "bigint",
    "float4": "real",
    "float8": "double precision",
    "decimal": "numeric",
    "varchar": "character varying",
    "char": "character",
    "bpchar": "character",
    "bool": "boolean",
    "timestamptz": "timestamp with time zone",
    "timetz": "time with time zone",
    "timestamp": "timestamp without time zone",
    "time": "time without time zone",
}


@dataclass(frozen=True)
class PgType:
    name: str  # canonical base name, e.g. "numeric", "timestamp with time zone"
    args: tuple[int, ...]  # typmod numbers, e.g. (12, 4)
    array: bool

    @property
    def with_time_zone(self) -> bool:
        return self.name in ("timestamp with time zone", "time with time zone")


@dataclass(frozen=True)
class _Spelling:
    """A type text taken apart, before any alias is applied."""

    printed: str  # the base name as printed (several words, with time zone), or quoted
    quoted: bool
    typmod: str | None
    array: bool


def _spelling(text: str) -> _Spelling | None:
    m = _TYPE.match(text.strip())
    if m is None:
        return None
    raw = m.group("base").strip()
    suffix = (m.group("suffix") or "").strip()
    quoted = raw.startswith('"') and raw.endswith('"') and len(raw) > 1
    # A quoted (user-defined) name keeps its case; built-in names are lower case anyway.
    name = raw[1:-1] if quoted else raw.lower()
    if suffix:
        name = f"{name} {' '.join(suffix.split())}"
    return _Spelling(name, quoted, m.group("args"), bool(m.group("array")))


@lru_cache(maxsize=4096)
def parse_type(text: str) -> PgType:
    s = _spelling(text)
    if s is None:
        return PgType(text.strip().lower(), (), False)
    name = s.printed
    if not s.quoted:
        if _INTERVAL_FIELDS.fullmatch(name):
            name = "interval"  # its fields only restrict what it holds: stored alike
        name = _ALIASES.get(name, name)
    args: tuple[int, ...] = ()
    if s.typmod:
        try:
            args = tuple(int(a) for a in s.typmod.split(","))
        except ValueError:
            args = ()
    return PgType(name, args, s.array)


def printed_name(text: str) -> str | None:
    """The unquoted base name of a type text exactly as printed (``interval`` for an interval
    with fields, ``bpchar`` stays ``bpchar``), for telling format_type's spellings of built-in
    types from other names; None for a quoted name or one with a typmod format_type never
    prints."""
    s = _spelling(text)
    if s is None or s.quoted or (s.typmod is not None and not _TYPMOD.fullmatch(s.typmod)):
        return None
    return "interval" if _INTERVAL_FIELDS.fullmatch(s.printed) else s.printed
