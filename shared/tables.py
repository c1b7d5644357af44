"""Table and column names in settings, as PostgreSQL would read them, with wildcards.

``public.orders, "Mixed Case".items, items, sales.*, public.tmp_*`` — a name without a schema is
in ``public``; unquoted names fold to lower case; ``*`` and ``?`` are wildcards in unquoted
names (a quoted name is taken literally). Columns are ``schema.table.column``.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from functools import lru_cache

from shared.errors import ConfigError

_GLOB = re.compile(r"[*?\[]")


@dataclass(frozen=True, order=True)
class TableRef:
    schema: str
    table: str

    def __str__(self) -> str:
        return f"{_show(self.schema)}.{_show(self.table)}"


def _show(name: str) -> str:
    if name.isidentifier() and name == name.lower():
        return name
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Part:
    """One part of a name: a literal, or (unquoted, with * or ?) a glob."""

    text: str
    glob: bool

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.text) if self.glob else name == self.text

    @property
    def everything(self) -> bool:
        return self.glob and self.text == "*"


@dataclass(frozen=True)
class Pattern:
    parts: tuple[Part, ...]

    def matches(self, *names: str) -> bool:
        return len(names) == len(self.parts) and all(
            p.matches(n) for p, n in zip(self.parts, names, strict=True)
        )

    @property
    def exact(self) -> TableRef | None:
        if len(self.parts) == 2 and not any(p.glob for p in self.parts):
            return TableRef(self.parts[0].text, self.parts[1].text)
        return None

    def __str__(self) -> str:
        return ".".join(p.text if p.glob else _show(p.text) for p in self.parts)


def parse_patterns(text: str, setting: str, parts: int = 2) -> tuple[Pattern, ...]:
    """A comma-separated list of names with ``parts`` parts (the schema may be left out)."""
    out: list[Pattern] = []
    for raw in _split(text, ",", setting):
        item = raw.strip()
        if not item:
            continue
        pieces = [_part(p.strip(), setting) for p in _split(item, ".", setting)]
        if len(pieces) == parts - 1:
            pieces.insert(0, Part("public", False))
        if len(pieces) != parts:
            shape = "schema.table" if parts == 2 else "schema.table.column"
            raise ConfigError(f"{setting}: {item!r} is not a name of the form {shape}")
        out.append(Pattern(tuple(pieces)))
    return tuple(dict.fromkeys(out))


def parse_table_list(text: str, setting: str = "source.tables") -> tuple[TableRef, ...]:
    """Exact table names only (no wildcards)."""
    refs = []
    for p in parse_patterns(text, setting):
        ref = p.exact
        if ref is None:
            raise ConfigError(f"{setting}: {p} has a wildcard; name the tables one by one")
        refs.append(ref)
    return tuple(refs)


def _split(text: str, sep: str, setting: str) -> list[str]:
    out: list[str] = []
    buf: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            out.append("".join(buf))
            buf = []
        else:
            buf.append(ch)
    if quoted:
        raise ConfigError(f"{setting}: unbalanced double quote in {text!r}")
    out.append("".join(buf))
    return out


def _part(part: str, setting: str) -> Part:
    if not part:
        raise ConfigError(f"{setting}: empty name")
    if part.startswith('"'):
        if len(part) < 2 or not part.endswith('"'):
            raise ConfigError(f"{setting}: bad quoted name {part!r}")
        name = part[1:-1].replace('""', '"')
        if not name:
            raise ConfigError(f"{setting}: empty name")
        return Part(name, False)
    return Part(part.lower(), bool(_GLOB.search(part)))


@dataclass(frozen=True)
class TableFilter:
    """Which tables and columns the pipeline carries."""

    include: tuple[Pattern, ...] = ()  # empty: every table
    exclude: tuple[Pattern, ...] = ()
    exclude_columns: tuple[Pattern, ...] = ()
    _cache: dict[tuple[str, str], bool] = field(default_factory=dict, compare=False, repr=False)

    def captures(self, ref: TableRef) -> bool:
        return self.captures_table(ref.schema, ref.table)

    def captures_table(self, schema: str, table: str) -> bool:
        """``captures`` without a TableRef (once per change: no object made for it)."""
        key = (schema, table)
        hit = self._cache.get(key)
        if hit is None:
            hit = (not self.include or any(p.matches(*key) for p in self.include)) and not any(
                p.matches(*key) for p in self.exclude
            )
            self._cache[key] = hit
        return hit

    def drops_column(self, ref: TableRef, column: str, key: list[str]) -> bool:
        """Excluded columns are left out; a key column never is (rows need it)."""
        if not self.exclude_columns or column in key:
            return False
        return _drops(self.exclude_columns, ref.schema, ref.table, column)

    def __str__(self) -> str:
        text = ",".join(str(p) for p in self.include) or "*"
        if self.exclude:
            text += " except " + ",".join(str(p) for p in self.exclude)
        return text


@lru_cache(maxsize=4096)
def _drops(patterns: tuple[Pattern, ...], schema: str, table: str, column: str) -> bool:
    return any(p.matches(schema, table, column) for p in patterns)
