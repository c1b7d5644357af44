"""The type each column travels under: its base type, whatever name wal2json printed.

wal2json (``include-types``, ``include-typmod``) names a column's type as format_type prints
it in the walsender's session: a domain by its own name (``price``, ``"Other S"."My Dom"``),
an array of a domain as ``price[]``. The applier chooses the MariaDB column from that text
alone, so a domain over numeric(10,3) would become LONGTEXT and a bigint-domain key a
VARCHAR. Here a name that is not a built-in type is looked up in the catalog once (then
cached) and replaced by the text of its base type (``numeric(10,3)``, ``bigint``,
``numeric(10,3)[]``): the envelope carries the base type and nothing downstream knows a
domain was there. The copier describes its columns with the same function (base_type_text),
so a copy and the stream give every column the same type text.

wal2json 2.5 writes a type name that format_type quoted without escaping it for JSON: a lone
quoted name reads as the bare name (``"Mood"`` arrives as ``Mood``, the one-byte ``"char"``
as ``char``), which is looked up as the name it was; a qualified or otherwise longer one is not
JSON at all, and decode.py repairs the record before it gets here.

The applier splits array literals on ``,`` (``;`` for box, the one built-in type with another
delimiter). An array of another type whose elements PostgreSQL separates with something else
(an extension's type may choose any delimiter) is named by its array type's own name
(``_geometry``), which the applier stores as PostgreSQL's text of the whole array.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import psycopg2

from shared.errors import SourceUnavailable
from shared.postgres import first_line
from shared.types import element_delimiter, is_builtin

log = logging.getLogger(__name__)

# One identifier as format_type prints it: quoted ("Other S", with "" for a quote) or not.
_IDENT = r'(?:"(?:[^"]|"")*"|[^".()\[\]\s"]+)'
_NAME = re.compile(rf"(?:(?P<schema>{_IDENT})\.)?(?P<name>{_IDENT})(?P<typmod>\([^)]*\))?")
# The cache of whole rows of types is cleared beyond this many (a bound, never reached by a
# sane schema: one entry per distinct list of column types).
_MAX_ROWS = 10_000

_TYPE_INFO = (
    "SELECT t.typtype, t.typbasetype, t.typtypmod, t.typelem, t.typarray, t.typdelim,"
    " t.typelem <> 0 AND t.typlen = -1, n.nspname, t.typname"
    " FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace"
    " WHERE t.oid = %s"
)


@dataclass(frozen=True)
class _Type:
    typtype: str
    basetype: int
    typmod: int
    elem: int
    array: int
    delimiter: str
    is_array: bool
    schema: str
    name: str


def _info(cur: Any, oid: int) -> _Type:
    cur.execute(_TYPE_INFO, (oid,))
    row = cur.fetchone()
    if row is None:
        # Dropped between two queries: reading again finds out what is there now.
        raise SourceUnavailable(f"type {oid} vanished from the catalog while being read")
    return _Type(*row)


def _base(cur: Any, oid: int, typmod: int) -> tuple[int, int]:
    """The type under every domain (of the type, or of an array's elements) and its typmod."""
    while True:
        t = _info(cur, oid)
        if t.typtype == "d":
            # A domain's own typmod is its base's (numeric(10,3)); a column of a domain has
            # none (PostgreSQL allows no typmod on a domain).
            oid, typmod = t.basetype, typmod if typmod != -1 else t.typmod
            continue
        if t.is_array:
            elem, elem_typmod = _base(cur, t.elem, typmod)
            if elem == t.elem:
                return oid, typmod
            under = _info(cur, elem)
            # An array of a domain over an array is an array of the same element type (more
            # dimensions, which PostgreSQL's array types do not count).
            return (elem, elem_typmod) if under.is_array else (under.array, elem_typmod)
        return oid, typmod


def base_type_text(cur: Any, oid: int, typmod: int, printed: str | None = None) -> str:
    """The type text a column of this type travels under (see the module's docstring).

    ``printed`` is what wal2json printed for it, if known: kept when it is format_type's own
    text and no domain is involved (a typmod of a non-domain type, e.g. ``geometry(Point,4326)``,
    is only known from it).
    """
    base, base_typmod = _base(cur, oid, typmod)
    t = _info(cur, base)
    if t.is_array and t.elem:
        elem = _info(cur, t.elem)
        # The delimiter the applier splits such an array on (the type registry's).
        expected = element_delimiter(elem.name) if elem.schema == "pg_catalog" else ","
        if elem.delimiter != expected:
            cur.execute(
                "SELECT CASE WHEN pg_catalog.pg_type_is_visible(%s) THEN quote_ident(%s)"
                " ELSE quote_ident(%s) || '.' || quote_ident(%s) END",
                (base, t.name, t.schema, t.name),
            )
            return str(cur.fetchone()[0])
    if printed is not None and base == oid and "(" in printed:
        return printed
    cur.execute("SELECT pg_catalog.format_type(%s, %s)", (base, base_typmod))
    return str(cur.fetchone()[0])


def _lookup(cur: Any, printed: str) -> int | None:
    """The OID of the type wal2json printed as ``printed`` (without its ``[]``), or None."""
    m = _NAME.fullmatch(printed)
    if m is not None and m.group("schema") is not None:
        cur.execute(
            "SELECT t.oid FROM pg_catalog.pg_type t"
            " JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace"
            " WHERE n.nspname = %s AND t.typname = %s",
            (_unquote(m.group("schema")), _unquote(m.group("name"))),
        )
        row = cur.fetchone()
        if row is not None:
            return int(row[0])
    # Unqualified: visible in the search path, as format_type found it. A bare name format_type
    # would have quoted (Mood, my type, user, char) is that very name, its quotes lost.
    name = _unquote(m.group("name")) if m is not None and m.group("schema") is None else printed
    cur.execute(
        "SELECT t.oid FROM pg_catalog.pg_type t"
        " WHERE t.typname = %s AND pg_catalog.pg_type_is_visible(t.oid)",
        (name,),
    )
    row = cur.fetchone()
    return int(row[0]) if row else None


def _unquote(ident: str) -> str:
    if ident.startswith('"') and ident.endswith('"') and len(ident) > 1:
        return ident[1:-1].replace('""', '"')
    return ident


def resolve_name(cur: Any, printed: str) -> str:
    """The type text for a type wal2json printed as ``printed``; itself when it is built in
    or no longer in the catalog."""
    if is_builtin(printed):
        return printed
    elem, array = (printed[:-2], True) if printed.endswith("[]") else (printed, False)
    oid = _lookup(cur, elem)
    if oid is not None and array:
        oid = _info(cur, oid).array or None
    if oid is None:
        # Dropped since the change was written (decoding reads the catalog as it was then).
        log.warning("type_not_found type=%s (carried under the name wal2json printed)", printed)
        return printed
    return base_type_text(cur, oid, -1, printed)


def catalog_lookup(connect: Callable[[], Any]) -> Callable[[list[str]], dict[str, str]]:
    """Resolves names over a connection opened for the purpose (names come rarely)."""

    def look_up(names: list[str]) -> dict[str, str]:
        try:
            with closing(connect()) as conn, conn.cursor() as cur:
                return {printed: resolve_name(cur, printed) for printed in names}
        except psycopg2.Error as e:
            raise SourceUnavailable(f"cannot read the type catalog: {first_line(e)}") from e

    return look_up


class TypeResolver:
    """Replaces the type names of a change by their base types (see the module's docstring).

    The work per change is one dictionary lookup keyed by its list of type names; ``look_up``
    (the catalog) is asked only about names not seen before in this session.
    """

    def __init__(self, look_up: Callable[[list[str]], dict[str, str]]) -> None:
        self._look_up = look_up
        self._names: dict[str, str] = {}
        # types of a change -> the types it travels under, or None when they are the same.
        self._rows: dict[tuple[str, ...], list[str] | None] = {}

    def resolve(self, change: dict[str, Any]) -> None:
        """Rewrites ``change`` (and its old key) in place."""
        self._part(change)
        old = change.get("old_key")
        if old:
            self._part(old)

    def _part(self, part: dict[str, Any]) -> None:
        types = part.get("types")
        if not types:
            return
        key = tuple(types)
        try:
            resolved = self._rows[key]
        except KeyError:
            resolved = self._rows[key] = self._resolve_row(key)
        if resolved is not None:
            part["types"] = resolved

    def _resolve_row(self, types: tuple[str, ...]) -> list[str] | None:
        if len(self._rows) >= _MAX_ROWS:
            self._rows.clear()
        missing = {t for t in types if t not in self._names and not is_builtin(t)}
        if missing:
            found = self._look_up(sorted(missing))
            for printed, text in found.items():
                if text != printed:
                    log.info("type_resolved type=%s travels_as=%s", printed, text)
            self._names.update(found)
        resolved = [self._names.get(t, t) for t in types]
        return None if resolved == list(types) else resolved
