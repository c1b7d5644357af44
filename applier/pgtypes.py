"""PostgreSQL type names as wal2json prints them (``include-types``), parsed once.

Examples: ``integer``, ``numeric(12,4)``, ``character varying(20)``, ``timestamp(3) with time
zone``, ``integer[]``, ``"Mood"`` (a user-defined type).
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
}


@dataclass(frozen=True)
class PgType:
    name: str  # canonical base name, e.g. "numeric", "timestamp with time zone"
    args: tuple[int, ...]  # typmod numbers, e.g. (12, 4)
    array: bool

    @property
    def with_time_zone(self) -> bool:
        return self.name in ("timestamp with time zone", "time with time zone")


@lru_cache(maxsize=4096)
def parse_type(text: str) -> PgType:
    m = _TYPE.match(text.strip())
    if m is None:
        return PgType(text.strip().lower(), (), False)
    raw = m.group("base").strip()
    suffix = (m.group("suffix") or "").strip()
    # A quoted (user-defined) name keeps its case; built-in names are lower case anyway.
    name = raw[1:-1] if raw.startswith('"') and raw.endswith('"') else raw.lower()
    name = _ALIASES.get(name, name)
    if suffix:
        name = f"{name} {' '.join(suffix.split())}"
    args: tuple[int, ...] = ()
    if m.group("args"):
        try:
            args = tuple(int(a) for a in m.group("args").split(","))
        except ValueError:
            args = ()
    return PgType(name, args, bool(m.group("array")))
