"""Apply a batch of messages to MariaDB in one transaction, checkpoint included.

The batch arrives in order, duplicates already left out (applier/sequence.py). Inside one call:
1. create missing tables / add missing columns (DDL commits implicitly, so before the txn);
2. BEGIN; read the checkpoint row FOR UPDATE and check it is the one the batch follows;
3. run the plan's statements (executemany per group);
4. write the batch's last position as the new checkpoint; COMMIT.
Only after the COMMIT returns does the caller ack the messages to RabbitMQ.

A schema change (a message with one ``ddl`` change) is a batch of its own: its DDL statements
(applier/ddl.py), then the transaction with the checkpoint.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from sqlalchemy.engine import Connection, Engine

from applier import relations
from applier.bulk import BulkPath
from applier.checkpoint import CheckpointStore
from applier.ddl import SchemaChanges
from applier.packets import located, packets
from applier.plan import Group, Plan, build_plan
from applier.schema import TableShape, TargetSchema
from applier.target import (
    classify,
    create_target_engine,
    is_galera,
    keyless_tables,
    local_infile,
    max_allowed_packet,
    target_nodes,
)
from applier.upsert import Statements, driver_safe
from shared.config import ApplierConfig
from shared.envelope import Envelope
from shared.errors import CdcError, CheckpointMoved, RowTooLarge, SchemaMismatch, TargetUnavailable
from shared.naming import Naming, TargetRef
from shared.position import Position

log = logging.getLogger(__name__)


@dataclass
class Prepared:
    batch: list[Envelope]
    shapes: dict[TargetRef, TableShape]
    plan: Plan


@dataclass
class BatchResult:
    applied: int = 0  # messages
    rows: dict[tuple[TargetRef, str], int] = field(default_factory=dict)
    bulk: dict[TargetRef, int] = field(default_factory=dict)  # rows by the bulk path
    checkpoint: Position | None = None
    seconds: float = 0.0
    committed_at: float = 0.0  # wall clock, just after the COMMIT returned


class Applier:
    def __init__(self, cfg: ApplierConfig, partition: int = 0) -> None:
        self._cfg = cfg
        self._where = str(cfg.target.url)
        self._engine: Engine | None = None
        self._naming = Naming(cfg.target.rename, cfg.target.schemas)
        self._schema = TargetSchema(self._naming)
        self._schema.partitioned = cfg.target.partitions > 1
        self._checkpoints = CheckpointStore(cfg.source.slot, partition, cfg.target.partitions)
        self._statements: Statements | None = None
        self._max_packet = 0  # the server's max_allowed_packet, read on connecting
        self._bulk: BulkPath | None = None  # large groups by LOAD DATA, where the server allows
        self._ddl = SchemaChanges(self._naming, self._schema, cfg.target.dropped)

    def _connect(self) -> Engine:
        if self._engine is None:
            engine = create_target_engine(self._cfg.target)
            try:
                with engine.connect() as conn:
                    self._checkpoints.ensure_table(conn)
                    start = self._checkpoints.relayout(conn)
                    if start is not None:
                        log.warning(
                            "checkpoint_relayout partitions=%d at=%s (target.partitions "
                            "changed: every partition starts from the newest checkpoint)",
                            self._cfg.target.partitions,
                            start,
                        )
                    self._schema.ensure_catalog(conn)
                    self._max_packet = max_allowed_packet(conn)
                    relations.ensure_table(conn)
                    self._schema.galera = is_galera(conn)
                    if self._schema.galera:
                        self._refuse_keyless(conn)
                    bulk_rows = self._bulk_rows(conn)
            except Exception as e:
                engine.dispose()
                fault = classify(e, self._where)
                if isinstance(fault, TargetUnavailable):
                    target_nodes(self._cfg.target).lost()
                raise fault from e
            self._engine = engine
            self._statements = Statements(engine.dialect)
            if self._bulk is not None:
                self._bulk.close()
            self._bulk = BulkPath(driver_safe(engine.dialect), bulk_rows, self._where)
            log.info("target_ready target=%s", self._where)
        return self._engine

    def _refuse_keyless(self, conn: Connection) -> None:
        """Galera replicates rows by their primary key: a table without one is named at
        start, with the fix (its changes are refused, applier/refusal.py)."""
        home = str(conn.exec_driver_sql("SELECT DATABASE()").scalar() or "")
        databases = sorted({home, *self._cfg.target.schemas.values()} - {""})
        for table in keyless_tables(conn, databases):
            log.error(
                "galera_table_without_key table=%s: Galera needs a primary key on every "
                "table; its changes are refused: fix: add a primary key to the table "
                "(ALTER TABLE ... ADD PRIMARY KEY) or to its source table, then send its "
                "dead letters back (applier dlq replay)",
                table,
            )

    def _bulk_rows(self, conn: Connection) -> int:
        """target.bulk_rows, or 0 where the bulk path cannot or may not run."""
        bulk_rows = self._cfg.target.bulk_rows
        if not bulk_rows:
            return 0
        if not local_infile(conn):
            log.warning(
                "bulk_path_off reason=local_infile_off (the server refuses LOAD DATA LOCAL "
                "INFILE: every group goes by executemany; SET GLOBAL local_infile=ON to allow it)"
            )
            return 0
        return bulk_rows

    def reset(self) -> None:
        """Drop the connections (after a transient fault) and forget cached schema."""
        engine, self._engine = self._engine, None
        self._schema.forget()
        if engine is not None:
            engine.dispose()

    def close(self) -> None:
        self.reset()
        if self._bulk is not None:
            self._bulk.close()

    def refused(self) -> list[tuple[str, str, str]]:
        """(target table, source table, reason) of each refusal in force."""
        refused = list(self._schema.refused.items())
        return [(str(t), str(s), r.reason) for (t, s), r in refused]

    def checkpoint(self) -> Position | None:
        engine = self._connect()
        try:
            with engine.connect() as conn:
                return self._checkpoints.read(conn, lock=False)
        except Exception as e:
            raise self._fault(e) from e

    def checkpoints(self) -> list[Position | None]:
        """Every partition's checkpoint row, read afresh (what a barrier waits on)."""
        engine = self._connect()
        try:
            with engine.connect() as conn:
                return self._checkpoints.read_all(conn, self._cfg.target.partitions)
        except Exception as e:
            raise self._fault(e) from e

    def forget(self) -> None:
        """Another partition changed the target's tables or _cdc_relations (a barrier's
        schema change or copy): what this one knew of them is looked up again."""
        self._schema.forget()

    def prepare(self, batch: list[Envelope]) -> Prepared:
        """The batch's statements and rows: work without the target, so it can be done while
        the batch before is still being applied. Needs one connection made before (the
        checkpoint read at start-up) for the dialect. Its faults are classified as
        ``execute``'s are, but drop nothing: it runs beside the batch in flight, and neither
        reads the target nor the schema it caches."""
        try:
            return self._prepare(batch)
        except Exception as e:
            raise classify(e, self._where) from e

    def _prepare(self, batch: list[Envelope]) -> Prepared:
        if self._statements is None:
            self._connect()
        assert self._statements is not None
        if len(batch) == 1 and batch[0].schema_change is not None:
            return Prepared(batch, {}, Plan([], {}))  # applied by applier/ddl.py
        changes = [c for env in batch for c in env.changes]
        shapes = self._schema.shapes(changes)
        # Every table is assumed to exist; TRUNCATEs of tables that do not are dropped in
        # ``execute``, once the schema is known.
        plan = build_plan(changes, self._statements, set(shapes), self._naming)
        return Prepared(batch, shapes, plan)

    def execute(
        self, prepared: Prepared, expect: Position | None, *, replay: bool = False
    ) -> BatchResult:
        """Apply a prepared batch, all of it in one MariaDB transaction or nothing (an
        exception): schema first (DDL commits on its own), then one transaction with the
        checkpoint check, the statements and the new checkpoint.

        ``expect`` is the checkpoint the caller's ordering was based on; if the table says
        otherwise (another applier was active meanwhile), CheckpointMoved is raised and nothing
        is written. A replay (a dead letter sent back by ``applier dlq replay``) is applied
        without checking or moving the checkpoint.
        """
        started = time.monotonic()
        engine = self._connect()
        batch, shapes, plan = prepared.batch, prepared.shapes, prepared.plan
        ddl = batch[0].schema_change if len(batch) == 1 else None
        result = BatchResult()
        try:
            # One connection for the whole batch: each checkout would cost a round trip.
            with engine.connect() as conn:
                if ddl is not None:
                    if not replay:
                        self._expect(conn, expect, lock=False)  # before any DDL
                    finish = self._ddl.run(conn, ddl)
                elif shapes and self._schema.needs_look(shapes):
                    self._schema.ensure(conn, shapes)
                self._schema.refuse(shapes)
                with conn.begin():
                    if not replay:
                        self._expect(conn, expect)
                    if ddl is not None:
                        finish(conn)
                    else:
                        result.bulk = self._run(conn, batch, plan)
                    if not replay and batch:
                        result.checkpoint = self._checkpoints.write(conn, batch[-1])
                result.rows = plan.counts
                result.applied = len(batch)
        except CheckpointMoved:
            raise
        except Exception as e:
            raise self._fault(e) from e
        result.seconds = time.monotonic() - started
        result.committed_at = time.time()
        return result

    def _run(self, conn: Connection, batch: list[Envelope], plan: Plan) -> dict[TargetRef, int]:
        """The plan's statements, inside the batch's transaction; the rows that went by the
        bulk path, per table."""
        bulk: dict[TargetRef, int] = {}
        for group in plan.groups:
            if group.op == "truncate" and not self._schema.exists(group.table):
                continue
            if self._send(conn, group):
                bulk[group.table] = bulk.get(group.table, 0) + len(group.rows)
        relations.record_copies(conn, batch, self._naming)
        return bulk

    def _send(self, conn: Connection, group: Group) -> bool:
        """One group's statement over its rows: a large group through a staging table
        (applier/bulk.py; True), else executemany in packets MariaDB takes
        (applier/packets.py)."""
        if not group.rows:
            conn.exec_driver_sql(group.statement.sql)
            return False
        bulk = self._bulk
        if bulk is not None and bulk.takes(group) and bulk.send(conn, group):
            return True
        for rows in packets(group, self._max_packet):
            try:
                conn.exec_driver_sql(group.statement.sql, rows)
            except Exception as e:
                raise located(e, group, rows, self._where) from e
        return False

    def skip(self, env: Envelope, expect: Position | None, at: Position | None = None) -> None:
        """Move the checkpoint past a message that went to the dead-letter queue, or a
        barrier's marker (to ``at``, when arriving at the barrier: applier/barrier.py)."""
        engine = self._connect()
        try:
            with engine.begin() as conn:
                self._expect(conn, expect)
                self._checkpoints.write(conn, env, at)
        except CheckpointMoved:
            raise
        except Exception as e:
            raise self._fault(e) from e

    def _expect(self, conn: Connection, expect: Position | None, *, lock: bool = True) -> None:
        actual = self._checkpoints.read(conn, lock=lock)
        if not lock:
            conn.commit()
        if actual != expect:
            raise CheckpointMoved(actual)

    def _fault(self, e: Exception) -> CdcError:
        fault = classify(e, self._where)
        if isinstance(fault, TargetUnavailable):
            # On a Galera cluster the next connection goes to another node (1047: this one
            # left the primary component, or is still joining).
            target_nodes(self._cfg.target).lost()
        if isinstance(fault, TargetUnavailable | RowTooLarge):
            # RowTooLarge: the limit may have been raised since; only new sessions see it.
            self.reset()
        elif isinstance(fault, SchemaMismatch):
            # Someone may have changed the target behind our back: look again next time.
            self._schema.forget()
        return fault


def describe(env: Envelope) -> str:
    tables = sorted({f"{c.schema}.{c.table}" for c in env.changes})
    return (
        f"xid={env.xid} message_id={env.message_id}{' copy' if env.copy else ''} "
        f"tables={','.join(tables) or '-'}"
    )
