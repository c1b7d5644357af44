"""Each stage's own limit, measured alone: decoding (pg_recvlogical, with the pipeline's
decoder plugin: wal2json or pgoutput), RabbitMQ
publishing with confirms (the extractor's publisher), MariaDB batched upserts. The slowest of
the three bounds what the whole pipeline can do on this machine.

MariaDB's upserts are measured three ways on the same rows (``apply_paths``): executemany
(the applier's path for small groups), one multi-row statement per batch with the values
bound, and the applier's bulk path (applier/bulk.py: LOAD DATA LOCAL INFILE into a staging
table, then one INSERT ... SELECT), Python's work in each included."""

from __future__ import annotations

import subprocess
import time

from pika.adapters.select_connection import IOLoop

from applier.bulk import BulkPath
from applier.plan import Group
from applier.target import create_target_engine
from applier.upsert import Compiled, driver_safe
from bench.measure import flush_innodb
from bench.parts import BULK_ROW
from devstack.postgres import BIN
from extractor.pgoutput import PROTO_VERSION
from extractor.publisher import Publisher
from extractor.wal2json import wal2json_options
from harness.pipeline import Pipeline
from shared import wire
from shared.config import BrokerConfig, TargetConfig
from shared.errors import CdcError
from shared.naming import TargetRef
from shared.secret import Secret
from shared.tables import TableFilter
from shared.topology import Topology


def decoding_alone(p: Pipeline, rows: int) -> float:
    """The pipeline's decoder plugin alone (``p.decoder``): pg_recvlogical writing the decoded
    stream to /dev/null, with the options the extractor starts it with. Rows/s."""
    slot = f"{p.name}_decode"
    conn = p.pg()
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE stage_decode (LIKE bulk)")
        cur.execute("SELECT pg_create_logical_replication_slot(%s, %s)", (slot, p.decoder))
        for lo in range(1, rows + 1, 1000):
            cur.execute(
                f"INSERT INTO stage_decode SELECT {BULK_ROW} FROM generate_series(%s, %s) g",
                (lo, min(lo + 999, rows)),
            )
        cur.execute("SELECT pg_current_wal_lsn()::text")
        end = cur.fetchone()[0]
    conn.close()
    argv = [
        str(BIN / "pg_recvlogical"), "-d", p.stack.postgres.dsn(p.source_db), "-S", slot, "--start",
        "-E", end, "-f", "/dev/null", "--no-loop",
    ]  # fmt: skip
    for name, value in _plugin_options(p).items():
        argv += ["-o", f"{name}={value}"]
    started = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True, timeout=1800)
    took = time.monotonic() - started
    conn = p.pg()
    with conn.cursor() as cur:
        cur.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
        cur.execute("DROP TABLE stage_decode")
    conn.close()
    return rows / took


def _plugin_options(p: Pipeline) -> dict[str, str]:
    if p.decoder == "pgoutput":
        # The pipeline's publication (FOR ALL TABLES, harness/pipeline.py), so stage_decode's
        # rows are sent as the extractor would have them sent.
        return {
            "proto_version": PROTO_VERSION,
            "publication_names": f"cdc_{p.name}",
            "messages": "true",
        }
    return wal2json_options(TableFilter())


_STAGE_TABLE = (
    "CREATE TABLE stage_upsert (id BIGINT PRIMARY KEY, account INT NOT NULL,"
    " amount DECIMAL(12,2) NOT NULL, note LONGTEXT, at DATETIME(6) NOT NULL)"
    " CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin"
)
_STAGE_COLUMNS = ("id", "account", "amount", "note", "at")
_UPSERT = (
    "INSERT INTO stage_upsert (id, account, amount, note, at) VALUES {values}"
    " ON DUPLICATE KEY UPDATE account = VALUES(account), amount = VALUES(amount),"
    " note = VALUES(note), at = VALUES(at)"
)
APPLY_PATHS = ("executemany", "multi-row statement", "LOAD DATA (bulk path)")


def _stage_batches(rows: int, per: int = 1000) -> list[list[tuple[object, ...]]]:
    """The rows as the applier binds them for the bulk table (ints, numeric and time as text)."""
    return [
        [
            (g, g % 1000, f"{(g % 100000) / 100:.2f}", f"row {g}", "2026-01-01 00:00:00.000000")
            for g in range(lo, min(lo + per - 1, rows) + 1)
        ]
        for lo in range(1, rows + 1, per)
    ]


def upserts_alone(p: Pipeline, rows: int) -> float:
    """MariaDB alone: 1,000-row executemany upserts, one commit each, into a fresh table."""
    return apply_paths(p, rows, ("executemany",))["executemany"]


def apply_paths(p: Pipeline, rows: int, paths: tuple[str, ...] = APPLY_PATHS) -> dict[str, float]:
    """MariaDB alone, each path into a fresh table: 1,000-row batches, one commit each, the
    rows' Python formatting included. Rows/s per path. Each path starts once InnoDB has
    written out the pages the one before dirtied: measured after another, a path had paid
    for its flushing (executemany, measured first, came out ahead of LOAD DATA)."""
    out: dict[str, float] = {}
    for path in paths:
        flush_innodb(p.stack.mariadb.sql, 120)
        batches = _stage_batches(rows)
        conn = p.maria()
        conn.cursor().execute(_STAGE_TABLE)
        conn.close()
        started = time.monotonic()
        if path == "LOAD DATA (bulk path)":
            _load_data(p, batches)
        else:
            _statements(p, batches, multi_row=path == "multi-row statement")
        out[path] = rows / (time.monotonic() - started)
        conn = p.maria()
        conn.cursor().execute("DROP TABLE stage_upsert")
        conn.close()
    return out


def _statements(p: Pipeline, batches: list[list[tuple[object, ...]]], *, multi_row: bool) -> None:
    conn = p.maria()
    conn.autocommit = False  # one commit per 1,000-row batch, as the applier does
    cur = conn.cursor()
    one = "(" + ", ".join("?" * len(_STAGE_COLUMNS)) + ")"
    for batch in batches:
        if multi_row:
            params = [v for row in batch for v in row]
            cur.execute(_UPSERT.format(values=", ".join([one] * len(batch))), params)
        else:
            cur.executemany(_UPSERT.format(values=one), batch)
        conn.commit()
    conn.close()


def _load_data(p: Pipeline, batches: list[list[tuple[object, ...]]]) -> None:
    """The applier's own bulk path (applier/bulk.py), as it runs inside a batch."""
    engine = create_target_engine(TargetConfig(url=Secret(p.env["CDC_TARGET_URL"])))
    bulk = BulkPath(driver_safe(engine.dialect), 1, "bench")
    order = tuple(range(len(_STAGE_COLUMNS)))
    statement = Compiled("", order, _STAGE_COLUMNS)
    table = TargetRef(None, "stage_upsert")
    try:
        with engine.connect() as conn:
            for batch in batches:
                with conn.begin():
                    bulk.send(conn, Group(table, "upsert", statement, batch, ("id",)))
    finally:
        bulk.close()
        engine.dispose()


def publishing_alone(p: Pipeline, rows: int) -> float:
    """RabbitMQ alone: our publisher, persistent messages of 1,000 rows, confirms, into a
    scratch queue. Rows/s."""
    rows_per_message = 1000
    messages = max(rows // rows_per_message, 50)
    took = publish_with_confirms(p.stack.rabbitmq.url(), f"{p.name}.stage", sample_body(), messages)
    return messages * rows_per_message / took


def sample_body() -> bytes:
    """A message as the extractor builds it for 1,000 rows of the bulk table."""
    changes = [
        {
            "op": "insert", "lsn": "0/1", "schema": "public", "table": "bulk",
            "columns": ["id", "account", "amount", "note", "at"],
            "types": ["bigint", "integer", "numeric(12,2)", "text", "timestamp with time zone"],
            "values": [g, g % 1000, f"{(g % 100000) / 100:.2f}", f"row {g}", "2026-01-01 00:00:00.123456+00"],
            "key": ["id"],
        }
        for g in range(1000)
    ]  # fmt: skip
    return wire.encode(
        slot="s", xid=1, commit_lsn=1, commit_time="", copy=False, after=None,
        resumed=False, chunk=0, last=True, changes=changes,
    )  # fmt: skip


def publish_with_confirms(
    url: str, name: str, body: bytes, messages: int, window: int = 512
) -> float:
    """Seconds to publish ``messages`` copies of ``body`` and have every one confirmed, with
    the extractor's publisher: persistent messages, confirms, the same window of unconfirmed
    messages, into a scratch durable queue."""
    ioloop = IOLoop()
    cfg = BrokerConfig(url=Secret(url), exchange=name, queue=name, max_inflight=window, prefetch=1)
    topology = Topology(name, name, name, name + ".dlx", name + ".dead", "classic")
    state = {"sent": 0, "confirmed": 0, "started": 0.0, "took": 0.0}
    failure: list[CdcError] = []

    def pump() -> None:
        while state["sent"] < messages and state["sent"] - state["confirmed"] < window:
            publisher.publish(body, f"m{state['sent']}", {})
            state["sent"] += 1

    def ready() -> None:
        state["started"] = time.monotonic()
        pump()

    def confirm(tag: int, multiple: bool, ack: bool) -> None:
        state["confirmed"] = tag if multiple else state["confirmed"] + 1
        if state["confirmed"] >= messages:
            state["took"] = time.monotonic() - state["started"]
            publisher.close()
            ioloop.stop()
        else:
            pump()

    def fail(e: CdcError) -> None:
        failure.append(e)
        ioloop.stop()

    publisher = Publisher(cfg, topology, ioloop)
    publisher.connect(on_ready=ready, on_confirm=confirm, on_failure=fail)
    ioloop.start()
    if failure:
        raise failure[0]
    return state["took"]
