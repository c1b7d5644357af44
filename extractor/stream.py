"""One extractor session: slot -> decode -> chunks -> RabbitMQ -> confirms -> slot feedback.

Everything runs on one thread, on pika's I/O loop (loop.py). The session ties its parts
together and owns their life: reading the slot with flow control (reading.py), what each record
does (dispatch.py), what goes out and what came back confirmed (outbox.py), when the flush
position goes to PostgreSQL (feedback.py), and copies (copying.py). Any fault ends the session:
the caller reconnects and PostgreSQL resends from the last confirmed position, which is why a
crash can cause a resend but never a loss.

Once a session has failed (a nack, a returned message, a lost connection), nothing it still
receives moves the slot: confirms that arrive after the failure are ignored.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass

import pika.exceptions

from extractor.catalog import CHECK_SECONDS
from extractor.collaborators import Collaborators
from extractor.confirms import ConfirmTracker
from extractor.copying import Copies
from extractor.ddl import SchemaChanges
from extractor.decode import Decoder
from extractor.dispatch import Dispatcher
from extractor.feedback import Feedback
from extractor.loop import Scheduler
from extractor.metrics import ExtractorMetrics
from extractor.outbox import Outbox
from extractor.reading import SlotReader, StallWatch
from extractor.replication import Exported
from extractor.routing import outbox_for
from extractor.shapes import ShapeWatch
from extractor.targets import refuse_shared_targets
from shared.amqp import classify_broker_error
from shared.config import ExtractorConfig
from shared.errors import BrokerUnavailable, CdcError, PermanentError, SourceUnavailable
from shared.lsn import format_lsn
from shared.position import Position
from shared.tables import TableRef

log = logging.getLogger(__name__)

# How often the slot's lag is sampled for the metrics.
_LAG_SECONDS = 5.0
# How long small transactions waiting for confirms may wait (outbox.py): longer than RabbitMQ's
# confirms usually take, so that it caps a stall without making more, smaller messages.
_LINGER_SECONDS = 0.025
# How long a graceful stop waits for outstanding confirms.
_STOP_GRACE = 20.0


@dataclass(frozen=True)
class _Parts:
    """The parts of a session that streams: made once the slot's position is known."""

    outbox: Outbox
    reader: SlotReader
    copies: Copies
    dispatcher: Dispatcher
    feedback: Feedback


class StreamSession:
    def __init__(
        self,
        cfg: ExtractorConfig,
        metrics: ExtractorMetrics,
        outside: Collaborators,
        *,
        until_drained: bool = False,
    ) -> None:
        """``until_drained``: stop gracefully once the slot has nothing more to read, no copy
        is under way and everything is confirmed (arq's burst mode; for tests on a scripted
        stream, whose end it is)."""
        self._cfg = cfg
        self._metrics = metrics
        self._ioloop = outside.loop
        self._clock = outside.clock
        self._timers = Scheduler(outside.loop, self._fail)
        self._source = outside.source
        self._publisher = outside.broker
        self._catalog = outside.catalog
        self._heartbeat = outside.heartbeat
        self._types = outside.types
        self._copier = outside.copier
        self._load_state = outside.load_state
        self._until_drained = until_drained
        self._parts: _Parts | None = None
        self._failure: CdcError | None = None
        self._done = False
        self._stopping = False
        self._stop_deadline = 0.0
        self._feedback_interval = cfg.source.feedback_interval
        self._stall = StallWatch(self._clock, self._feedback_interval)

    @property
    def streaming(self) -> bool:
        """START_REPLICATION is done."""
        parts = self._parts
        return parts is not None and parts.reader.streaming

    @property
    def transactions(self) -> int:
        """Transactions published in this session."""
        parts = self._parts
        return parts.dispatcher.transactions if parts is not None else 0

    # ---------------------------------------------------------------- control

    def run(self) -> None:
        """Stream until stopped (returns) or until a fault (raises it)."""
        try:
            self._publisher.connect(
                on_ready=self._timers.guarded(self._on_broker_ready),
                on_confirm=self._on_confirm,
                on_failure=self._fail,
            )
            self._timers.later("tick", self._feedback_interval, self._tick)
            self._ioloop.start()
        except (pika.exceptions.AMQPError, OSError, ValueError) as e:
            # pika's connection workflow may raise out of its I/O loop (e.g. ValueError when
            # a freshly accepted socket is reset at once): a lost connection like any other.
            if self._failure is None:
                failure = classify_broker_error(e, self._publisher.where)
                # A certificate that does not verify (a ValueError too) stays permanent.
                if not isinstance(failure, PermanentError):
                    failure = BrokerUnavailable(f"RabbitMQ connection failed: {e!r}")
                self._failure = failure
        finally:
            self._teardown()
        if self._failure is not None:
            raise self._failure

    def request_stop(self) -> None:
        """Thread- and signal-safe: finish what is in flight, confirm it, then stop."""
        self._ioloop.add_callback_threadsafe(self._begin_stop)

    def _begin_stop(self) -> None:
        if self._stopping or self._done:
            return
        parts = self._parts
        log.info("stopping inflight=%d", parts.outbox.inflight if parts else 0)
        self._stopping = True
        self._stop_deadline = self._clock() + _STOP_GRACE
        if parts is not None:
            parts.copies.stop()
            parts.reader.stop()
            parts.outbox.flush()  # small transactions waiting to go together go now
        self._maybe_finish_stop()

    def _fail(self, failure: CdcError) -> None:
        if self._failure is None:
            self._failure = failure
        if self._parts is not None:
            self._parts.outbox.fail()
            self._parts.reader.stop()
        self._ioloop.stop()

    def _teardown(self) -> None:
        self._done = True
        parts = self._parts
        if parts is not None:
            parts.copies.stop()
            parts.reader.stop()
            parts.outbox.close()
        self._timers.close()
        self._source.close()
        self._heartbeat.close()
        if not self._publisher.closed:
            self._publisher.close()
            deadline = self._clock() + 5
            # Let pika finish the close handshake; a dead broker just times out here.
            while not self._publisher.closed and self._clock() < deadline:
                handle = self._ioloop.call_later(0.05, self._ioloop.stop)
                self._ioloop.start()
                self._ioloop.remove_timeout(handle)
        self._ioloop.close()

    # ---------------------------------------------------------------- start

    def _on_broker_ready(self) -> None:
        if self._done or self._stopping:
            return
        src = self._cfg.source
        copying = src.snapshot == "initial"
        stored = self._load_state()
        copied = stored.copied if copying else set()
        watch = ShapeWatch(stored.shapes)
        exported = self._source.open(export_snapshot=copying)
        # Tables the plugin did not stream until now (added to pgoutput's publication) are
        # copied again: their changes before it were never sent.
        copied = copied - set(self._source.republished)
        tables = self._catalog.begin()
        refuse_shared_targets(tables, self._cfg.target)
        decoder = self._source.decoder()
        resume = self._source.resume_lsn
        # Status updates well within wal_sender_timeout: the walsender then never needs a
        # keepalive of its own while we stream.
        timeout = self._source.wal_sender_timeout
        if timeout:
            self._feedback_interval = min(self._feedback_interval, timeout / 4)
            self._stall.interval = self._feedback_interval
        parts = self._parts = self._make_parts(resume, decoder, copied, watch)
        self._stall.turned()
        self._start(parts, tables, exported, copying)
        if src.heartbeat_interval:
            self._timers.later("beat", src.heartbeat_interval, self._beat)
        self._timers.later("lag", 0, self._sample_lag)
        self._timers.later("catalog", CHECK_SECONDS, self._check_catalog)

    def _make_parts(
        self, resume: int, decoder: Decoder, copied: set[TableRef], watch: ShapeWatch
    ) -> _Parts:
        src, metrics = self._cfg.source, self._metrics
        copying = src.snapshot == "initial"
        tracker = ConfirmTracker(resume, metrics.confirm_seconds.observe)
        # A slot made just now: nothing exists before this session's first message.
        after = None if self._source.created else Position.before(resume)
        outbox = outbox_for(
            self._publisher,
            tracker,
            metrics,
            slot=src.slot,
            partitions=self._cfg.target.partitions,
            resume=after,
            max_inflight=self._cfg.broker.max_inflight,
            max_changes=src.max_chunk_changes,
            max_bytes=src.max_chunk_bytes,
            linger=_LINGER_SECONDS,
            later=functools.partial(self._timers.later, "linger"),  # times its batches
        )
        reader = SlotReader(
            self._source,
            self._timers,
            outbox,
            self._stall,
            handle=self._handle,
            partitioned=self._catalog.partitioned,
            on_idle=self._drained,
        )
        copies = Copies(
            src,
            outbox,
            reader,
            loop=self._timers,
            copier=self._copier,
            copied=copied,
            count_rows=metrics.copied_rows.inc,
            watch=watch,
        )
        dispatcher = Dispatcher(
            decoder,
            outbox,
            copies,
            capture=src.capture,
            partitions=self._catalog.partitions,
            types=self._types,
            slot=src.slot,
            metrics=metrics,
            ddl=SchemaChanges(src.capture, watch, copying, self._types.resolve),
        )
        feedback = Feedback(
            self._source.send_feedback,
            lambda: tracker.flush_lsn,
            lambda: reader.streaming,
            resume,
            self._clock,
        )
        return _Parts(outbox, reader, copies, dispatcher, feedback)

    def _start(
        self, parts: _Parts, tables: list[TableRef], exported: Exported | None, copying: bool
    ) -> None:
        copies = parts.copies
        if exported is not None:
            # A new slot: every captured table is copied as of its consistent point, and the
            # stream starts right after.
            copies.start(tables, exported)
            return
        parts.reader.start()
        copies.forget_uncaptured(tables)
        done = copies.copied
        missing = [t for t in tables if t not in done] if copying else []
        if missing:
            copies.start(missing, None)
        else:
            parts.reader.resume()

    def _handle(self, msg: object) -> None:
        assert self._parts is not None
        self._parts.dispatcher.handle(msg)

    def _drained(self) -> None:
        """The slot has nothing buffered: the end, in run-until-drained mode (unless a copy is
        under way: it needs the stream to reach its place)."""
        parts = self._parts
        if self._until_drained and parts is not None and not parts.copies.active:
            self._begin_stop()

    # ---------------------------------------------------------------- confirms

    def _on_confirm(self, delivery_tag: int, multiple: bool, ack: bool) -> None:
        parts = self._parts
        if parts is None or self._failure is not None or self._done:
            # After a failure (e.g. a returned message, whose ack follows the return), nothing
            # may move the slot any more.
            return
        try:
            parts.outbox.confirm(delivery_tag, multiple, ack)
            parts.copies.confirmed()
            parts.reader.window_freed()
            if self._stopping:
                self._maybe_finish_stop()
            else:
                parts.feedback.confirms_arrived()
        except CdcError as e:
            self._fail(e)

    # ---------------------------------------------------------------- timers

    def _tick(self) -> None:
        """Regular standby status: the confirmed position, and a keepalive for the walsender."""
        if self._failure is not None or self._done:
            return
        self._stall.check()
        self._stall.turned()
        if self._parts is not None:
            self._parts.feedback.send()
        if self._stopping:
            self._maybe_finish_stop()
        self._timers.later("tick", self._feedback_interval, self._tick)

    def _beat(self) -> None:
        if self._failure is not None or self._stopping or self._done:
            return
        try:
            self._heartbeat.beat()
        except CdcError as e:
            # Not fatal by itself: if PostgreSQL is really gone, the stream says so.
            log.warning("heartbeat_failed error=%s", e)
        self._stall.turned()
        self._timers.later("beat", self._cfg.source.heartbeat_interval, self._beat)

    def _sample_lag(self) -> None:
        """The WAL the slot keeps, for the metric (a query on the heartbeat's connection)."""
        if self._failure is not None or self._done:
            return
        try:
            lag = self._heartbeat.slot_lag()
            if lag is not None:
                self._metrics.slot_lag_bytes.set(lag)
        except CdcError as e:
            log.debug("slot_lag_failed error=%s", e)
        self._stall.turned()
        self._timers.later("lag", _LAG_SECONDS, self._sample_lag)

    def _check_catalog(self) -> None:
        """Identities and partitions that changed while running (catalog.py)."""
        if self._failure is not None or self._done:
            return
        added = self._catalog.check()
        if added and self._parts is not None:
            if self._cfg.source.snapshot == "initial":
                # Their changes before they joined the publication were never sent.
                self._parts.copies.request_tables(added)
            else:
                log.warning(
                    "tables_not_copied tables=%s: they joined the publication just now and "
                    "source.snapshot=never; fix: python -m extractor backfill %s",
                    ",".join(map(str, added)),
                    " ".join(map(str, added)),
                )
        self._timers.later("catalog", CHECK_SECONDS, self._check_catalog)

    def _maybe_finish_stop(self) -> None:
        if self._done or self._failure is not None:
            return
        parts = self._parts
        inflight = parts.outbox.inflight if parts is not None else 0
        if inflight and self._clock() < self._stop_deadline:
            return
        if inflight:
            log.warning("stop_timeout unconfirmed=%d (they will be resent)", inflight)
        if parts is not None:
            try:
                parts.feedback.send()
            except SourceUnavailable as e:
                log.warning("final_feedback_failed error=%s", e)
            log.info("stopped confirmed_lsn=%s", format_lsn(parts.outbox.flush_lsn))
        self._publisher.close()
        self._ioloop.stop()
