"""The rows of a statement group, cut into bulk packets MariaDB accepts; the row a refusal is
about, named by its table and key.

MariaDB Connector/Python sends an ``executemany`` as one bulk packet however large it is (seen
with 1.1.14 on MariaDB 10.11), and the server refuses a packet larger than its
``max_allowed_packet`` — error 1153, then it drops the connection, so the client usually sees
only "Server has gone away" (2006), "Lost connection" (2013) or "Write error" (5014): an
outage, by its looks, retried for ever while nothing after it is applied. Measured on the
server: what counts is the whole command, a few dozen bytes more than the values.

So a group whose values may come near the limit is cut into packets below it, and a single
row that can never fit is refused (``RowTooLarge``, a dead letter naming the table and the
key) — it needs the server's limit raised, which no retry does.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from applier.plan import Group
from applier.target import classify
from shared.errors import CdcError, RowRejected, RowTooLarge, SchemaMismatch

Row = tuple[object, ...]

# Room for the packet header, the command, the statement id and flags (measured: under 40
# bytes in all for a one-row statement of two values).
_PACKET_OVERHEAD = 64
# Per value at most: its type (2 bytes), an indicator byte, and a length prefix of up to 9
# bytes (or the 8 bytes of an integer).
_VALUE_OVERHEAD = 12
# A character of text takes at most this many bytes in utf8mb4.
_CHAR_BYTES = 4


def packets(group: Group, limit: int) -> Iterator[list[Row]]:
    """The group's rows in order, in lists that each fit one packet of ``limit`` bytes
    (0: not known, one list)."""
    rows = group.rows
    budget = limit - _PACKET_OVERHEAD
    # Nearly always one packet, found without looking at each row.
    if limit <= 0 or _bound(rows) <= budget:
        yield rows
        return
    packet: list[Row] = []
    size = 0
    for row in rows:
        n = row_bytes(row)
        if n > budget:
            raise RowTooLarge(
                f"a row of table {group.table} ({describe(group, row)}) takes {n} bytes, more "
                f"than MariaDB's max_allowed_packet ({limit}) allows for one statement: raise "
                f"max_allowed_packet on the server to at least {n + _PACKET_OVERHEAD} (SET "
                "GLOBAL, and in its configuration for restarts), then send the dead letter back "
                "(applier dlq replay)"
            )
        if packet and size + n > budget:
            yield packet
            packet, size = [], 0
        packet.append(row)
        size += n
    if packet:
        yield packet


# MariaDB names the failing row of a statement by its place in the bulk: "... at row 3".
_AT_ROW = re.compile(r" at row (\d+)")


def located(error: BaseException, group: Group, rows: list[Row], where: str) -> CdcError:
    """``error`` of the statement that sent ``rows`` of ``group``, classified; a refusal of a
    row or of the schema names the table and, where MariaDB says which, the row's key."""
    fault = classify(error, where)
    if not isinstance(fault, RowRejected | SchemaMismatch) or isinstance(fault, RowTooLarge):
        return fault
    text = str(fault)
    found = _AT_ROW.search(text)
    row = None
    if found and 0 < int(found.group(1)) <= len(rows):
        row = rows[int(found.group(1)) - 1]
    elif len(rows) == 1:
        row = rows[0]
    which = f" ({describe(group, row)})" if row is not None else ""
    return type(fault)(f"table {group.table}{which}: {text}")


def row_bytes(row: Row) -> int:
    """Bytes the row's values take in a packet, at most."""
    return sum(_value_bytes(v) for v in row)


def describe(group: Group, row: Row) -> str:
    """The row's key, as ``column=value`` (values shortened)."""
    if not group.key:
        return "no primary key"
    shown: dict[str, str] = {}
    for name, value in zip(group.statement.names, row, strict=False):
        if name in group.key and name not in shown:
            text = repr(value)
            shown[name] = text if len(text) <= 60 else text[:57] + "..."
    return ", ".join(f"{k}={v}" for k, v in shown.items())


def _bound(rows: list[Row]) -> int:
    """An upper bound of the bytes of all the rows, column by column (a few C-level passes,
    no Python work per value)."""
    if not rows:
        return 0
    total = len(rows) * len(rows[0]) * _VALUE_OVERHEAD
    for column in zip(*rows, strict=True):
        sample = next((v for v in column if v is not None), None)
        if isinstance(sample, str):
            scale = _CHAR_BYTES
        elif isinstance(sample, bytes | bytearray):
            scale = 1
        else:
            continue  # numbers, booleans, NULLs: within the per-value allowance
        try:
            total += scale * sum(map(len, filter(None, column)))
        except TypeError:  # a value of another kind in the column: count it exactly
            total += sum(map(_payload, column))
    return total


def _value_bytes(value: object) -> int:
    return _payload(value) + _VALUE_OVERHEAD


def _payload(value: object) -> int:
    if isinstance(value, str):
        return len(value) if value.isascii() else len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, bytes | bytearray):
        return len(value)
    return 0
