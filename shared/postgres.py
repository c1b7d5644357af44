"""PostgreSQL access for both processes: connecting, what a failed connection means, the catalog.

Every connection (the replication stream, copies, the heartbeat, the side commands) takes its
parameters from connect_kwargs; classify_connect_error turns libpq's failure into a transient
SourceUnavailable or a permanent SetupError that says what to fix.
"""

from __future__ import annotations

from typing import Any

import psycopg2
import psycopg2.errorcodes
import psycopg2.extensions
from psycopg2 import sql

from shared.config import SourceConfig
from shared.errors import SetupError, SourceUnavailable
from shared.secret import redact
from shared.tables import TableFilter, TableRef

# The walsender prints values with these session settings: timestamptz always in UTC, floats
# with all their digits, dates in ISO order.
_SESSION_OPTIONS = (
    "-c TimeZone=UTC -c DateStyle=ISO -c IntervalStyle=postgres -c extra_float_digits=3"
    " -c bytea_output=hex"
)
# Noticing a dead server or a cut network within seconds, not the kernel's fifteen minutes.
_CONNECT_DEFAULTS = {
    "connect_timeout": "10",
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
    "application_name": "pg2maria-extractor",
    # Text as PostgreSQL itself converts it to Unicode, whatever the database's encoding (the
    # stream, whose bytes are not converted, is read the same way: extractor/encoding.py).
    "client_encoding": "UTF8",
}


# libpq's words for a TLS set-up that fails the same way on every attempt: a certificate that
# does not verify, a server without TLS under sslmode=require, files it cannot use. A TLS
# connection cut in the middle ("SSL SYSCALL error", "SSL connection has been closed
# unexpectedly") is not among them: that is an outage, retried.
_TLS_SETUP_FAILURES = (
    "certificate verify failed",
    "does not match host name",
    "server does not support ssl",
    "root certificate file",
    "certificate present, but not private key",
    "could not load private key",
    "could not read certificate",
    "could not load ssl certificate",
    "could not open certificate file",
    "private key file",
    "alert unknown ca",
    "alert bad certificate",
    "certificate required",
    "sslmode value",
    "wrong version number",
)


def connect_kwargs(source: SourceConfig) -> dict[str, Any]:
    """Parameters of every PostgreSQL connection the extractor makes: the DSN's, with the TLS
    settings laid over them (an explicit setting wins over the same key in the DSN)."""
    params = dsn_kwargs(source.dsn.reveal())
    params.update(source.tls_params())
    return params


def connect(source: SourceConfig) -> Any:
    """A plain autocommit connection to the source database (the caller closes it); a failure
    is classified as transient or permanent."""
    try:
        conn = psycopg2.connect(**connect_kwargs(source))
    except psycopg2.Error as e:
        raise classify_connect_error(e, source.dsn.reveal()) from e
    conn.autocommit = True
    return conn


def dsn_kwargs(dsn: str) -> dict[str, Any]:
    """The user's DSN, our defaults where it is silent, our session options."""
    params = dict(psycopg2.extensions.parse_dsn(dsn))
    for key, value in _CONNECT_DEFAULTS.items():
        params.setdefault(key, value)
    params["options"] = (params.get("options", "") + " " + _SESSION_OPTIONS).strip()
    return params


def classify_connect_error(e: psycopg2.Error, dsn: str) -> Exception:
    """Map a failed connection to a transient or a permanent fault, with a clear message."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    where = redact(dsn)
    lowered = text.lower()
    if "password authentication failed" in lowered or "no password supplied" in lowered:
        return SetupError(f"PostgreSQL refused the login ({where}): check the user and password")
    if "does not exist" in lowered and ("database" in lowered or "role" in lowered):
        return SetupError(f"PostgreSQL: {text} ({where})")
    if "conversion between" in lowered and "is not supported" in lowered:
        # The database's encoding has no conversion to UTF8 (MULE_INTERNAL): no client can
        # read its text as Unicode, and no retry changes that.
        return SetupError(
            f"source database cannot be read as Unicode ({text}); convert the database to UTF8"
        )
    if "no pg_hba.conf entry" in lowered:
        return SetupError(
            f"PostgreSQL: {text}: allow this host for replication and the database in pg_hba.conf"
        )
    if "permission denied" in lowered or e.pgcode == psycopg2.errorcodes.INSUFFICIENT_PRIVILEGE:
        return SetupError(f"PostgreSQL: {text}")
    if any(marker in lowered for marker in _TLS_SETUP_FAILURES):
        return SetupError(
            f"PostgreSQL TLS failed ({where}): {text}: check source.sslmode, "
            "source.sslrootcert (the CA that signed the server's certificate), and that the "
            "DSN's host is a name the certificate holds"
        )
    return SourceUnavailable(f"cannot reach PostgreSQL ({where}): {text}")


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def captured_tables(conn: Any, capture: TableFilter) -> list[TableRef]:
    """The tables of the database that the filter captures, in a stable order.

    A partitioned table is captured as one table, its root: partitions (leaves and
    intermediate ones) are never listed, their rows belong to the root. Inheritance children
    are tables of their own, listed like any other."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT n.nspname, c.relname FROM pg_class c"
            " JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition"
            " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
            " AND n.nspname NOT LIKE 'pg\\_%'"
            " ORDER BY 1, 2"
        )
        refs = [TableRef(s, t) for s, t in cur.fetchall()]
    return [r for r in refs if capture.captures(r)]


def rows_of(conn: Any, ref: TableRef) -> sql.Composable:
    """What a query reading a captured table's rows selects FROM: a partitioned root with all
    its partitions; any other table ONLY itself, as an inheritance parent's children are
    captured tables of their own and must not be read twice."""
    with conn.cursor() as cur:
        cur.execute(
            "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relname = %s",
            (ref.schema, ref.table),
        )
        row = cur.fetchone()
    name = sql.Identifier(ref.schema, ref.table)
    if row is not None and row[0] == "p":
        return name
    return sql.SQL("ONLY {}").format(name)
