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
    ) -> None:
        self._decoder = decoder
        self._capture = capture
        self._partitions = partitions
        self._types = types
        self._outbox = outbox
        self._copies = copies
        self._slot = slot
        self._metrics = metrics
        # Transactional logical messages, by prefix (pg_logical_emit_message(true, ...)).
        self._messages: dict[str, Callable[[str], None]] = {
            HEARTBEAT_PREFIX: self._heartbeat,
            BACKFILL_PREFIX: copies.request,
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
                act(record.content)

    def _change(self, record: RowChange) -> None:
        change = keep_change(record.change, self._capture, self._partitions)
        if change is None:
            return
        self._types.resolve(change)
        self._outbox.add(change, record.size)

    def _commit(self, record: Commit) -> None:
        self._metrics.commit_seen()
        end = record.end or self._outbox.commit_end()
        if self._outbox.commit(end) is not None:
            self.transactions += 1
        else:
            # Nothing captured in it: the slot may pass it once all before is confirmed.
            self._outbox.pass_empty(end)
        self._copies.committed()

    def _heartbeat(self, content: str) -> None:
        # Another slot's heartbeat (same database) is nothing to this one.
        if content == self._slot:
            self._outbox.mark()
