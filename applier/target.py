"""The MariaDB connection: engine, session settings, and which errors are worth a retry.

SQLAlchemy and MariaDB Connector exceptions stop here and become TargetUnavailable or
TargetConflict (transient), or RowRejected / RowTooLarge / SchemaMismatch / SetupError
(permanent), by what a retry can fix (docs/reliability.md, "MariaDB errors").
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url

from shared.config import TargetConfig
from shared.errors import (
    CdcError,
    RowRejected,
    RowTooLarge,
    SchemaMismatch,
    SetupError,
    TargetConflict,
    TargetUnavailable,
)
from shared.nodes import Nodes, nodes_for

log = logging.getLogger(__name__)

# Strict: a value MariaDB cannot store is an error, never a silent truncation or a zero date.
SQL_MODE = (
    "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,"
    "NO_ENGINE_SUBSTITUTION,NO_AUTO_VALUE_ON_ZERO,NO_BACKSLASH_ESCAPES"
)

# Which MariaDB errors a retry can fix. docs/reliability.md ("MariaDB errors") lists them
# with their meaning; keep the two together. The code decides, not the driver's exception
# class: the connector raises OperationalError for a packet too large as for a server down.
_CONFLICT = {1205, 1213}  # lock wait timeout, deadlock (Galera: a certification conflict)
# The server is away, restarting, overloaded or out of a resource it gets back: transient.
_UNAVAILABLE = {
    1020,  # record changed since last read
    1021,  # disk full
    1030,  # error from the storage engine (out of space, ...)
    1037,  # out of memory
    1038,  # out of sort memory
    1040,  # too many connections
    1041,  # out of memory
    1047,  # Galera: node not ready (state transfer, partition)
    1053,  # server shutdown in progress
    1114,  # table is full (disk)
    1135,  # cannot create a thread
    1152,  # connection aborted
    1158,  # network read error
    1159,  # network read timeout
    1160,  # network write error
    1161,  # network write timeout
    1180,  # error during COMMIT
    1203,  # max_user_connections
    1226,  # a user resource limit
    1290,  # read-only (a failover in progress)
    1317,  # query interrupted
    1412,  # table definition changed: retry the transaction
    1615,  # statement needs to be prepared again
    1637,  # too many active transactions
    1927,  # connection killed
    1969,  # max_statement_time exceeded
    4031,  # idle client disconnected
    # client library: cannot connect, server gone away, connection lost, read/write errors
    2002,
    2003,
    2005,
    2006,
    2013,
    2026,
    2055,
    5013,
    5014,
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
# access denied (user, database, command, column, privilege), unknown database, no auth plugin
_SETUP = {1044, 1045, 1049, 1142, 1143, 1227, 1698, 2059}
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
# A value the column cannot hold, a duplicate key, a CHECK (JSON_VALID) failed.
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
    # client library: a value or statement it cannot send
    2031,
    2034,
    2035,
    2036,
    2057,
}
# A packet larger than max_allowed_packet (server: 1153; client library: 2020).
_TOO_LARGE = {1153, 2020}


def _from_server(code: int) -> bool:
    # 2000-2999 and 5000-5999 are the client library's own codes (connection, protocol).
    return 1000 <= code < 2000 or 3000 <= code < 5000


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


def target_nodes(target: TargetConfig) -> Nodes:
    """The order in which this process tries the hosts of target.url (a Galera cluster's
    nodes); ``lost()`` after a fault moves it to the next."""
    return nodes_for("target", target.urls)


def create_target_engine(target: TargetConfig) -> Engine:
    engine = sa.create_engine(
        target.urls[0].reveal(),
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
            # LOAD DATA LOCAL INFILE for the bulk path (applier/bulk.py). The server names the
            # file the client sends: only on for a target trusted with the applier's files
            # (target.bulk_rows = 0 turns it off; docs/performance.md).
            "local_infile": target.bulk_rows > 0,
            **tls_connect_args(target),
        },
    )

    @event.listens_for(engine, "connect")
    def _session_settings(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("SET NAMES utf8mb4 COLLATE utf8mb4_nopad_bin")
        cursor.execute("SET time_zone = '+00:00'")
        cursor.execute("SET sql_mode = ?", (SQL_MODE,))
        cursor.execute("SHOW VARIABLES LIKE 'wsrep_on'")
        row = cursor.fetchone()
        if row is not None and str(row[1]).upper() == "ON":
            # A Galera node applies the other nodes' commits a moment after they returned:
            # a read waits until this node has applied everything committed before it, so
            # the checkpoint read after a failover is never older than the last commit.
            cursor.execute("SET SESSION wsrep_sync_wait = 1")
        cursor.close()

    if len(target.urls) > 1:
        _connect_to_any_node(engine, target)
    return engine


def _connect_to_any_node(engine: Engine, target: TargetConfig) -> None:
    """Each new connection goes to the first host of target.url that answers, starting with
    the one that worked last (or the next, after ``target_nodes(...).lost()``)."""
    nodes = target_nodes(target)
    places = [(u.host, u.port or 3306) for u in (make_url(s.reveal()) for s in target.urls)]

    @event.listens_for(engine, "do_connect")
    def _any_node(dialect: Any, _record: Any, cargs: Any, cparams: dict[str, Any]) -> Any:
        failure: BaseException | None = None
        for index in nodes.order():
            host, port = places[index]
            try:
                conn = dialect.loaded_dbapi.connect(
                    *cargs, **{**cparams, "host": host, "port": port}
                )
            except dialect.loaded_dbapi.Error as e:
                where = str(target.urls[index])
                if not isinstance(classify(e, where), TargetUnavailable):
                    raise  # a refusal (login, database) is the same on every node
                log.warning("target_node_unreachable node=%s error=%s", where, _first_line(e))
                failure = e
                continue
            if index != nodes.order()[0]:
                log.warning("target_node_changed node=%s", str(target.urls[index]))
            nodes.worked(index)
            return conn
        assert failure is not None  # target.url names at least two hosts here
        raise failure


def is_galera(conn: Connection) -> bool:
    row = conn.exec_driver_sql("SHOW VARIABLES LIKE 'wsrep_on'").first()
    return row is not None and str(row[1]).upper() == "ON"


_KEYLESS = sa.text(
    "SELECT t.table_schema, t.table_name FROM information_schema.tables t"
    " WHERE t.table_schema = :db AND t.table_type = 'BASE TABLE' AND NOT EXISTS ("
    " SELECT 1 FROM information_schema.table_constraints c"
    " WHERE c.table_schema = t.table_schema AND c.table_name = t.table_name"
    " AND c.constraint_type = 'PRIMARY KEY') ORDER BY t.table_name"
)


def keyless_tables(conn: Connection, databases: list[str]) -> list[str]:
    """`db`.`table` of each base table without a primary key in these databases."""
    found = []
    for db in databases:
        found += [f"{row[0]}.{row[1]}" for row in conn.execute(_KEYLESS, {"db": db})]
    conn.commit()
    return found


def max_allowed_packet(conn: Connection) -> int:
    """The largest command the server takes in this session (its value when it connected)."""
    return int(conn.exec_driver_sql("SELECT @@max_allowed_packet").scalar() or 0)


def local_infile(conn: Connection) -> bool:
    """Whether the server takes LOAD DATA LOCAL INFILE (its ``local_infile``)."""
    return bool(conn.exec_driver_sql("SELECT @@local_infile").scalar())


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
    if code in _TOO_LARGE:
        return RowTooLarge(
            f"MariaDB {code}: {text}: raise max_allowed_packet on the server, then send the "
            "dead letter back (applier dlq replay)"
        )
    if code in _ROW:
        return RowRejected(f"MariaDB {code}: {text}")
    if code in _UNAVAILABLE or getattr(exc, "connection_invalidated", False):
        return TargetUnavailable(f"MariaDB unavailable ({where}): {text}")
    if code is not None and _from_server(code):
        # The server is up and answered: the same statement gets the same answer. A batch
        # that fails so is applied again message by message, so only the message that fails
        # on its own is parked.
        return RowRejected(f"MariaDB {code}: {text}")
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
