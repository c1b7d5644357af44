"""The source database's encoding: reading wal2json's output as PostgreSQL itself would convert it.

wal2json writes its output in the database's encoding, not in UTF-8, and the replication
protocol converts nothing. For a database that is not UTF8 the extractor therefore converts
each record to Unicode itself, and it must do so exactly as PostgreSQL converts that encoding
for a UTF8 client (what the copies, which ask PostgreSQL for UTF8, and anyone reading the
source see). Python's codecs do not always agree: its euc_jp reads 0xA1C1 as U+301C where
PostgreSQL gives U+FF5E, and knows no EUC_TW at all.

So at start PostgreSQL converts every character of the encoding once (every byte above 0x7F
of a single-byte encoding, every two- and three-byte sequence of an EUC one), and the
conversion used is Python's codec corrected by that table: characters Python reads otherwise
are mapped to PostgreSQL's, characters only PostgreSQL converts are filled in, and
characters PostgreSQL cannot convert are refused (a DecodeError naming them) rather than
read as Python would. An encoding for which this cannot be made exact, SQL_ASCII (bytes of
no declared encoding) or one Python has no codec for, is refused at start with one line.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import psycopg2.extensions

from shared.errors import DecodeError, SetupError

UTF8 = "UTF8"

# Python's codec for each PostgreSQL encoding (psycopg2's table, which covers them all).
_PY_CODECS: dict[str, str] = dict(psycopg2.extensions.encodings)


def _sequences(encoding: str) -> list[bytes]:
    """Every character of the encoding outside ASCII, as PostgreSQL's validation lets it in."""
    if not encoding.startswith("EUC_"):
        return [bytes([b]) for b in range(0x80, 0x100)]
    high = range(0xA1, 0xFF)
    return (
        [bytes([a, b]) for a in high for b in high]
        + [bytes([0x8E, b]) for b in high]
        + [bytes([0x8F, a, b]) for a in high for b in high]
    )


def pg_conversion(cur: Any, encoding: str, sequences: list[bytes]) -> list[str | None]:
    """PostgreSQL's conversion of each sequence to UTF-8 (None: it has no Unicode equivalent).

    A DO block, because a failed conversion is an error and only PL/pgSQL can go on after one
    (without creating a function: the extractor's role owns nothing)."""
    cur.execute(
        "DO $$ DECLARE out text[] := '{}'; s bytea; BEGIN"
        " FOREACH s IN ARRAY %s::bytea[] LOOP"
        "  BEGIN out := out || encode(convert(s, %s, 'UTF8'), 'hex');"
        "  EXCEPTION WHEN others THEN out := out || NULL::text; END;"
        " END LOOP;"
        " PERFORM set_config('pg2maria.conversion', array_to_string(out, ',', '-'), true);"
        " END $$; SELECT current_setting('pg2maria.conversion')",
        ([psycopg2.Binary(s) for s in sequences], encoding),
    )
    hexes = str(cur.fetchone()[0]).split(",")
    return [None if h == "-" else bytes.fromhex(h).decode() for h in hexes]


@dataclass
class SourceCodec:
    """Reads a record in the database's encoding as PostgreSQL converts it (see above)."""

    encoding: str
    codec: str
    errors: str = "strict"
    # Python's reading of a character -> PostgreSQL's, where the two differ.
    translate: dict[int, str] = field(default_factory=dict)
    # Sequences Python reads but PostgreSQL cannot convert: the first bytes of any of them, and
    # a pattern that finds one where a character starts.
    suspect: tuple[bytes, ...] = ()
    unconvertible: re.Pattern[bytes] | None = None

    def to_utf8(self, payload: bytes) -> bytes:
        if self.unconvertible is not None and any(b in payload for b in self.suspect):
            m = self.unconvertible.match(payload)
            if m is not None:
                raise self._refused(m.group(1))
        try:
            text = payload.decode(self.codec, self.errors)
        except UnicodeDecodeError as e:
            raise self._refused(e.object[e.start : e.end]) from e
        if self.translate:
            text = text.translate(self.translate)
        return text.encode()

    def _refused(self, sequence: bytes) -> DecodeError:
        return DecodeError(
            f"the source holds the byte sequence 0x{sequence.hex()}, which has no equivalent "
            f"in Unicode in encoding {self.encoding} (PostgreSQL cannot convert it either): "
            "change that value at the source"
        )


def build_codec(encoding: str, database: str, pg: Mapping[bytes, str | None]) -> SourceCodec | None:
    """The codec for ``encoding`` given PostgreSQL's conversion of its characters; None for
    UTF8. SetupError when no exact conversion exists."""
    if encoding == UTF8:
        return None
    if encoding == "SQL_ASCII":
        raise SetupError(
            f"source database {database!r} has encoding SQL_ASCII: its bytes above 0x7F have "
            "no declared encoding, so its text cannot be converted to Unicode exactly; convert "
            "the database to UTF8 (or to the encoding its text really is in)"
        )
    codec = _PY_CODECS.get(encoding)
    if codec is None:
        raise SetupError(
            f"source database {database!r} has encoding {encoding}, which the extractor cannot "
            "convert to Unicode (Python has no codec for it); convert the database to UTF8"
        )
    translate: dict[str, str] = {}
    refused: list[bytes] = []
    fill: dict[bytes, str] = {}
    # Python's reading -> PostgreSQL's readings of the same bytes (ASCII is ASCII in both).
    readings: dict[str, set[str]] = {chr(c): {chr(c)} for c in range(0x80)}
    for seq, theirs in pg.items():
        try:
            ours = seq.decode(codec)
        except UnicodeDecodeError:
            if theirs is not None:
                fill[seq] = theirs
            continue
        if theirs is None:
            refused.append(seq)
            continue
        readings.setdefault(ours, set()).add(theirs)
        if theirs != ours:
            translate[ours] = theirs
    # Exact only if each of Python's readings stands for one of PostgreSQL's, and no filled-in
    # character is taken for one to correct afterwards.
    unclear = [ours for ours, theirs in readings.items() if len(theirs) > 1 or len(ours) > 1]
    unclear += [c for c in fill.values() if c in translate]
    if unclear:
        raise SetupError(
            f"source database {database!r} has encoding {encoding}, which the extractor cannot "
            f"convert to Unicode exactly as PostgreSQL does ({len(unclear)} characters Python "
            "reads otherwise); convert the database to UTF8"
        )
    errors = "strict"
    if fill:
        errors = f"pg2maria-{encoding}"
        codecs.register_error(errors, _filler(fill))
    codec_ = SourceCodec(encoding, codec, errors, {ord(k): v for k, v in translate.items()})
    if refused:
        codec_.suspect = tuple(sorted({s[:1] for s in refused}))
        # From the start, whole characters only, so a match is never the tail of one character
        # and the head of the next.
        chars = _EUC_CHAR if encoding.startswith("EUC_") else rb"[\x00-\xff]"
        codec_.unconvertible = re.compile(
            rb"(?:" + chars + rb")*?(" + b"|".join(map(re.escape, refused)) + rb")"
        )
    return codec_


# One character of an EUC encoding: ASCII, SS3 and two bytes, or two bytes.
_EUC_CHAR = rb"[\x00-\x7f]|\x8f[\x80-\xff]{2}|[\x80-\xff]{2}"


def _filler(fill: dict[bytes, str]) -> Any:
    longest = max(map(len, fill))

    def handler(e: UnicodeError) -> tuple[str, int]:
        if isinstance(e, UnicodeDecodeError):
            for n in range(longest, 0, -1):
                seq = e.object[e.start : e.start + n]
                if seq in fill:
                    return fill[seq], e.start + n
        raise e

    return handler


_built: dict[tuple[str, str], SourceCodec | None] = {}


def source_codec(conn: Any, database: str) -> SourceCodec | None:
    """The codec for the source database ``conn`` is connected to (None: it is UTF8); read
    once per process, encoding and server version. psycopg2's errors pass through."""
    with conn.cursor() as cur:
        cur.execute("SELECT current_setting('server_encoding'), current_setting('server_version')")
        encoding, version = cur.fetchone()
        key = (encoding, version)
        if key not in _built:
            table: dict[bytes, str | None] = {}
            if encoding not in (UTF8, "SQL_ASCII") and encoding in _PY_CODECS:
                seqs = _sequences(encoding)
                table = dict(zip(seqs, pg_conversion(cur, encoding, seqs), strict=True))
            _built[key] = build_codec(encoding, database, table)
    return _built[key]
