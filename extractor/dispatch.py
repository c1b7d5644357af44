"""What each record of the stream does: the one place where records meet the session's parts.

decode (the plugin's decoder) -> filter and rename (filtering.py, partitions.py) -> base types
(basetypes.py) -> the transaction in progress (outbox.py). A begin may wait for a copy that
goes first (copying.py); a commit ends the transaction, or lets the slot pass it when nothing
of it is captured. A logical message acts by its prefix: a heartbeat of this slot makes its
transaction a message of its own, a backfill request starts a copy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from extractor.basetypes import TypeResolver
from extractor.copying import Copies
from extractor.ddl import DDL_PREFIX, SchemaChanges
from extractor.decode import Begin, Commit, Decoder, LogicalMessage, RowChange
from extractor.filtering import keep_change
from extractor.heartbeat import HEARTBEAT_PREFIX
from extractor.metrics import ExtractorMetrics
from extractor.outbox import Outbox
from extractor.partitions import Partitions
from extractor.snapshot import BACKFILL_PREFIX
from shared.tables import TableFilter


class Dispatcher:
    def __init__(
        self,
        decoder: Decoder,
        outbox: Outbox,
        copies: Copies,
        *,
        capture: TableFilter,
        partitions: Partitions,
        types: TypeResolver,
        slot: str,
        metrics: ExtractorMetrics,
        ddl: SchemaChanges,
    ) -> None:
        self._decoder = decoder
        self._capture = capture
        self._partitions = partitions
        self._types = types
        self._outbox = outbox
        self._copies = copies
        self._slot = slot
        self._metrics = metrics
        self._ddl = ddl
        # Transactional logical messages, by prefix (pg_logical_emit_message(true, ...)).
        self._messages: dict[str, Callable[[LogicalMessage], None]] = {
            HEARTBEAT_PREFIX: lambda m: self._heartbeat(m.content),
            BACKFILL_PREFIX: lambda m: copies.request(m.content),
            DDL_PREFIX: self._schema_change,
        }
        self.transactions = 0  # published in this session

    def handle(self, msg: Any) -> None:
        """One replication message (``payload``, ``data_start``)."""
        record = self._decoder.decode(msg.payload, msg.data_start)
        if isinstance(record, RowChange):
            self._change(record)
        elif isinstance(record, Begin):
            if not self._copies.goes_first(record):
                self._outbox.begin(record)
        elif isinstance(record, Commit):
            self._commit(record)
        elif isinstance(record, LogicalMessage) and record.transactional:
            act = self._messages.get(record.prefix)
            if act is not None:
                act(record)
        elif isinstance(record, list):
            for change in record:
                self._change(change)

    def _change(self, record: RowChange) -> None:
        change = keep_change(record.change, self._capture, self._partitions)
        if change is None:
            return
        self._types.resolve(change)
        changed = self._copies.watch.check(change)
        if changed is not None:  # a schema change the DDL capture did not report
            self._metrics.unreported_schema_changes.inc()
            self._copies.request_tables([changed])
        self._outbox.add(change, record.size)

    def _commit(self, record: Commit) -> None:
        self._metrics.commit_seen()
        end = record.end or self._outbox.commit_end()
        if self._outbox.commit(end) is not None:
            self.transactions += 1
        else:
            # Nothing captured in it: the slot may pass it once all before is confirmed.
            self._outbox.pass_empty(end)
        self._ddl.committed()
        self._copies.committed()

    def _schema_change(self, record: LogicalMessage) -> None:
        """A schema change the DDL capture reported (ddl.py): its changes, each in a message of
        its own, and the copies it needs, at this point of the stream."""
        copies = self._copies
        out = self._ddl.handle(record.content, record.lsn, copies.copied)
        for change in out.changes:
            self._outbox.alone(change)
        copies.copied.update(out.created)
        if out.copy:
            copies.request_tables(out.copy)
        if out.changes:
            self._metrics.schema_changes.inc(len(out.changes))
            copies.save_state()

    def _heartbeat(self, content: str) -> None:
        # Another slot's heartbeat (same database) is nothing to this one.
        if content == self._slot:
            self._outbox.mark()
