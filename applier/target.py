"""The MariaDB connection: engine, session settings, and which errors are worth a retry.

SQLAlchemy and MariaDB Connector exceptions stop here and become TargetUnavailable or
TargetConflict (transient), or RowRejected / SchemaMismatch / SetupError (permanent).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Engine

from shared.config import TargetConfig
from shared.errors import (
    CdcError,
    RowRejected,
    SchemaMismatch,
    SetupError,
    TargetConflict,
    TargetUnavailable,
)

# Strict: a value MariaDB cannot store is an error, never a silent truncation or a zero date.
SQL_MODE = (
    "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,"
    "NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO,NO_BACKSLASH_ESCAPES"
)

_CONFLICT = {1205, 1213}  # lock wait timeout, deadlock
_UNAVAILABLE = {
    1040,  # too many connections
    1053,  # server shutdown in progress
    1152,
    1153,
    1158,
    1159,
    1160,
    1161,  # aborted connection, packet errors
    1290,  # read-only (a failover in progress)
    1927,  # connection killed
    2002,
    2003,
    2005,
    2006,
    2013,
    2026,
    2055,  # client: cannot connect, gone away, lost
    4031,  # idle client disconnected
}
# 2026 is any TLS failure of the client library, a handshake cut short by a restarting server
# too; these words mark the ones that fail the same way on every attempt.
_TLS_ERROR = 2026
_TLS_SETUP_FAILURES = (
    "certificate",
    "verify",
    "not support",
    "unknown ca",
    "self-signed",
    "self signed",
    "hostname",
    "host name",
    "mismatch",
    "no such file",
    "wrong version number",
)
_SETUP = {1044, 1045, 1049, 1142, 1143, 1227, 1698}  # access denied, unknown database
# unknown column/table, field without default, multiple pk, row or key too large, and the
# DDL refusals (bad precision/scale, length, name, duplicate column, syntax): the same again
# on every retry, so permanent.
_SCHEMA = {
    1054,
    1146,
    1364,
    1068,
    1071,
    1118,
    1059,
    1060,
    1064,
    1074,
    1101,
    1103,
    1166,
    1170,
    1280,
    1425,
    1426,
    1427,
    1439,
}
_ROW = {
    1048,
    1062,
    1264,
    1265,
    1292,
    1366,
    1367,
    1406,
    1416,
    1690,
    3140,
    4025,
    4078,
    1918,
}


def tls_connect_args(target: TargetConfig) -> dict[str, Any]:
    """MariaDB Connector/Python's TLS arguments: with target.ssl, the server's certificate
    and host name are verified (against target.ssl_ca, else the system's CA certificates)."""
    if not target.ssl:
        return {}
    args: dict[str, Any] = {"ssl": True, "ssl_verify_cert": True}
    for name, value in (
        ("ssl_ca", target.ssl_ca),
        ("ssl_cert", target.ssl_cert),
        ("ssl_key", target.ssl_key),
    ):
        if value is not None:
            args[name] = value
    return args


def create_target_engine(target: TargetConfig) -> Engine:
    engine = sa.create_engine(
        target.url.reveal(),
        # No ping before each use: it was a round trip per batch (a tenth of the applier's
        # time). A connection that died idle fails its batch's first statement instead, as a
        # transient fault: the batch is rolled back, the pool emptied, and the batch retried.
        pool_pre_ping=False,
        pool_size=2,
        max_overflow=0,
        pool_recycle=1800,
        hide_parameters=True,  # values of rows never appear in exception texts or logs
        connect_args={
            "connect_timeout": 10,
            "read_timeout": 600,
            "write_timeout": 600,
            **tls_connect_args(target),
        },
    )

    @event.listens_for(engine, "connect")
    def _session_settings(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("SET NAMES utf8mb4 COLLATE utf8mb4_nopad_bin")
        cursor.execute("SET time_zone = '+00:00'")
        cursor.execute("SET sql_mode = ?", (SQL_MODE,))
        cursor.close()

    return engine


def errno_of(exc: BaseException) -> int | None:
    orig = getattr(exc, "orig", exc)
    value = getattr(orig, "errno", None)
    if isinstance(value, int):
        return value
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return int(args[0])
    return None


def classify(exc: BaseException, where: str) -> CdcError:
    """What a database exception means for the pipeline."""
    if isinstance(exc, CdcError):
        return exc
    code = errno_of(exc)
    text = _first_line(exc)
    if code in _CONFLICT:
        return TargetConflict(f"MariaDB {code}: {text}")
    if code == _TLS_ERROR and any(m in text.lower() for m in _TLS_SETUP_FAILURES):
        return SetupError(
            f"MariaDB TLS failed ({where}): {text}: check target.ssl_ca (the CA that signed "
            "the server's certificate), that the URL's host is a name the certificate holds, "
            "and that the server has TLS on"
        )
    if code in _SETUP:
        return SetupError(f"MariaDB refused ({where}): {text}")
    if code in _SCHEMA:
        return SchemaMismatch(f"MariaDB {code}: {text}")
    if code in _ROW:
        return RowRejected(f"MariaDB {code}: {text}")
    if code in _UNAVAILABLE or getattr(exc, "connection_invalidated", False):
        return TargetUnavailable(f"MariaDB unavailable ({where}): {text}")
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.TimeoutError):
        return TargetUnavailable(f"MariaDB unavailable ({where}): {text}")
    if isinstance(exc, sa.exc.DBAPIError | sa.exc.StatementError):
        return RowRejected(f"MariaDB {code}: {text}")
    if isinstance(exc, OSError):
        return TargetUnavailable(f"MariaDB unavailable ({where}): {text}")
    # Anything else (the driver refusing a value, a message our code cannot map) will fail
    # the same way every time: retrying it would stall the pipeline for ever.
    return RowRejected(f"cannot apply: {type(exc).__name__}: {text}")


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip()
    return text.splitlines()[0] if text else type(orig).__name__
