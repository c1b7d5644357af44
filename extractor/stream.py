"""One extractor session: slot -> decode -> chunks -> RabbitMQ -> confirms -> slot feedback.

Everything runs on one thread, on pika's I/O loop: the replication socket is one more file
descriptor on it. Reading stops while too many messages await a confirm, so memory is bounded
whatever the backlog. Any fault ends the session: the caller reconnects and PostgreSQL resends
from the last confirmed position, which is why a crash can cause a resend but never a loss.

Once a session has failed (a nack, a returned message, a lost connection), nothing it still
receives moves the slot: confirms that arrive after the failure are ignored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from contextlib import closing
from typing import Any

import pika.exceptions
from pika.adapters.select_connection import IOLoop, PollEvents

from extractor.assemble import Assembler, Outgoing
from extractor.catalog import CHECK_SECONDS, CatalogWatch
from extractor.confirms import ConfirmTracker
from extractor.copying import Copies
from extractor.ddl import DDL_PREFIX, SchemaChanges, capture_installed
from extractor.decode import Begin, Commit, LogicalMessage, RowChange, decode_record
from extractor.filtering import keep_change
from extractor.heartbeat import HEARTBEAT_PREFIX, Heartbeat
from extractor.metrics import ExtractorMetrics
from extractor.publisher import Publisher
from extractor.replication import ReplicationSource
from extractor.shapes import ShapeWatch
from extractor.snapshot import BACKFILL_PREFIX
from extractor.state import load_state
from shared.amqp import classify_broker_error
from shared.config import Config
from shared.errors import BrokerUnavailable, CdcError, PermanentError, SourceUnavailable
from shared.lsn import format_lsn
from shared.position import Position
from shared.postgres import captured_tables
from shared.topology import topology_for

log = logging.getLogger(__name__)

# Messages read from the slot per turn of the loop, so confirms and heartbeats are not starved.
_READ_BATCH = 2000
# How often the slot's lag is sampled for the metrics.
_LAG_SECONDS = 5.0
# Least time between two feedback messages sent because confirms arrived.
_FEEDBACK_MIN_GAP = 0.2
# How long a graceful stop waits for outstanding confirms.
_STOP_GRACE = 20.0
# A loop that did not turn for this long may have let psycopg2 act on a walsender keepalive on
# its own (see ARCHITECTURE.md, residual risks): the session is restarted before reading on.
_STALL_LIMIT = 10.0


class StreamSession:
    def __init__(self, cfg: Config, metrics: ExtractorMetrics | None = None) -> None:
        self._cfg = cfg
        self._metrics = metrics or ExtractorMetrics()
        self._ioloop = IOLoop()
        self._source = ReplicationSource(cfg.source)
        self._heartbeat = Heartbeat(cfg.source)
        self._publisher = Publisher(
            cfg.broker,
            topology_for(cfg.broker, cfg.source.slot),
            self._ioloop,
            on_ready=self._on_broker_ready,
            on_confirm=self._on_confirm,
            on_failure=self._fail,
        )
        self._tracker: ConfirmTracker | None = None
        self._assembler: Assembler | None = None
        self._failure: CdcError | None = None
        self._done = False
        self._timers: dict[str, Any] = {}
        self._reading_fd: int | None = None
        self._paused = False
        self._stopping = False
        self._stop_deadline = 0.0
        self._sent_lsn = 0
        self._last_feedback = 0.0
        self._last_turn = time.monotonic()
        self._feedback_interval = cfg.source.feedback_interval
        self._copies = Copies(cfg.source, self, set())
        self._catalog = CatalogWatch(cfg.source, self._metrics)
        self._ddl = SchemaChanges(cfg.source.capture, self._copies.watch, False)
        self.streaming = False
        self.transactions = 0
        self.messages = 0

    # ---------------------------------------------------------------- control

    def run(self) -> None:
        """Stream until stopped (returns) or until a fault (raises it)."""
        try:
            self._publisher.connect()
            self._later("tick", self._feedback_interval, self._tick)
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

    def _later(self, name: str, delay: float, callback: Callable[[], None]) -> None:
        self._timers[name] = self._ioloop.call_later(delay, callback)

    def _begin_stop(self) -> None:
        if self._stopping or self._done:
            return
        log.info("stopping inflight=%d", self._tracker.inflight if self._tracker else 0)
        self._stopping = True
        self._stop_deadline = time.monotonic() + _STOP_GRACE
        self._copies.stop()
        self._pause_reading()
        self._maybe_finish_stop()

    def _fail(self, failure: CdcError) -> None:
        if self._failure is None:
            self._failure = failure
        if self._tracker is not None:
            self._tracker.fail()
        self._ioloop.stop()

    def _teardown(self) -> None:
        self._done = True
        self._copies.stop()
        for handle in self._timers.values():
            self._ioloop.remove_timeout(handle)
        self._timers.clear()
        self._pause_reading()
        self._source.close()
        self._heartbeat.close()
        if not self._publisher.closed:
            self._publisher.close()
            deadline = time.monotonic() + 5
            # Let pika finish the close handshake; a dead broker just times out here.
            while not self._publisher.closed and time.monotonic() < deadline:
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
        try:
            stored = load_state(self._cfg)
            self._copies.copied = stored.copied if copying else set()
            self._copies.watch = watch = ShapeWatch(stored.shapes)
            self._ddl = SchemaChanges(src.capture, watch, copying)
            exported = self._source.open(export_snapshot=copying)
            with closing(self._source.catalog()) as conn:
                tables = captured_tables(conn, src.capture)
                self._catalog.start(conn, tables)
                self._catalog.partitions.ddl_capture = capture_installed(conn)
            self._source.partitioned = self._catalog.partitioned
        except CdcError as e:
            self._fail(e)
            return
        resume = self._source.resume_lsn
        self._tracker = ConfirmTracker(resume, self._metrics.confirm_seconds.observe)
        self._sent_lsn = resume
        # Status updates well within wal_sender_timeout: the walsender then never needs a
        # keepalive of its own while we stream.
        timeout = self._source.wal_sender_timeout
        if timeout:
            self._feedback_interval = min(self._feedback_interval, timeout / 4)
        # A slot made just now: nothing exists before this session's first message.
        after = None if self._source.created else Position.end_of(resume)
        self._assembler = Assembler(src.slot, src.max_chunk_changes, src.max_chunk_bytes, after)
        self._last_turn = time.monotonic()
        if exported is not None:
            # A new slot: every captured table is copied as of its consistent point, and the
            # stream starts right after.
            self._copies.start(tables, exported)
        else:
            if not self._start_streaming():
                return
            done = self._copies.copied
            missing = [t for t in tables if t not in done] if copying else []
            if missing:
                self._copies.start(missing, None)
            else:
                self._resume_reading()
        if src.heartbeat_interval:
            self._later("beat", src.heartbeat_interval, self._beat)
        self._later("lag", 0, self._sample_lag)
        self._later("catalog", CHECK_SECONDS, self._check_catalog)

    def _start_streaming(self) -> bool:
        try:
            self._source.start()
        except CdcError as e:
            self._fail(e)
            return False
        self.streaming = True
        return True

    # ---------------------------------------------------------------- lent to copies

    @property
    def assembler(self) -> Assembler:
        assert self._assembler is not None
        return self._assembler

    def publish(self, out: Outgoing) -> int:
        return self._publish(out)

    def publish_state(self, body: bytes) -> None:
        assert self._tracker is not None
        seq = self._publisher.publish_state(body)
        self._tracker.published(seq, self._tracker.flush_lsn, ends_txn=False)

    def confirmed(self, seq: int) -> bool:
        return self._tracker is not None and self._tracker.confirmed(seq)

    def window_open(self) -> bool:
        return (
            self._tracker is not None
            and not self._done
            and self._failure is None
            and self._tracker.inflight < self._cfg.broker.max_inflight
        )

    def pause_reading(self) -> None:
        self._pause_reading()

    def resume_reading(self) -> None:
        if not self._stopping and not self._done:
            self._resume_reading()

    def start_streaming(self) -> bool:
        return self._start_streaming()

    def soon(self, callback_name: str) -> None:
        assert callback_name == "pump"
        self._later("pump", 0, self._copies.pump)

    def wake_threadsafe(self) -> None:
        if not self._done:
            try:
                self._ioloop.add_callback_threadsafe(self._copies.pump)
            except (RuntimeError, OSError):
                log.debug("copy wake-up after the loop closed", exc_info=True)

    def fail(self, error: CdcError) -> None:
        self._fail(error)

    def count_copied(self, rows: int) -> None:
        self._metrics.copied_rows.inc(rows)

    def hold(self) -> object:
        assert self._tracker is not None
        return self._tracker.hold()

    def release(self, token: object) -> None:
        assert self._tracker is not None
        self._tracker.release(token)

    # ---------------------------------------------------------------- reading

    def _resume_reading(self) -> None:
        self._paused = False
        if self._reading_fd is None:
            fd = self._source.fileno()
            self._ioloop.add_handler(fd, self._on_readable, PollEvents.READ)
            self._reading_fd = fd
        # libpq may already hold messages in its buffer, which select() cannot see.
        self._later("drain", 0, self._drain)

    def _pause_reading(self) -> None:
        self._paused = True
        if self._reading_fd is not None:
            self._ioloop.remove_handler(self._reading_fd)
            self._reading_fd = None

    def _on_readable(self, _fd: int, _events: int) -> None:
        self._drain()

    def _drain(self) -> None:
        if self._paused or self._done or self._failure is not None or self._tracker is None:
            return
        try:
            self._check_stall()
            for _ in range(_READ_BATCH):
                msg = self._source.read()
                if msg is None:
                    return
                self._handle(msg)
                if self._paused:
                    return
                if self._tracker.inflight >= self._cfg.broker.max_inflight:
                    self._pause_reading()
                    return
            self._later("drain", 0, self._drain)
        except CdcError as e:
            self._fail(e)

    def _check_stall(self) -> None:
        stalled = time.monotonic() - self._last_turn
        if stalled > _STALL_LIMIT + self._feedback_interval:
            raise SourceUnavailable(
                f"the extractor's loop stalled for {stalled:.0f}s; restarting the session"
            )

    def _handle(self, msg: Any) -> None:
        assert self._assembler is not None and self._tracker is not None
        record = decode_record(msg.payload)
        if isinstance(record, RowChange):
            change = keep_change(record.change, self._cfg.source.capture, self._catalog.partitions)
            if change is None:
                return
            changed = self._copies.watch.check(change)
            if changed is not None:  # a schema change the DDL capture did not report
                self._metrics.unreported_schema_changes.inc()
                self._copies.request_tables([changed])
            out = self._assembler.add(change, record.size)
            if out is not None:
                self._publish(out)
        elif isinstance(record, Begin):
            if not self._copies.goes_first(record):
                self._assembler.begin(record)
        elif isinstance(record, Commit):
            self._metrics.commit_seen()
            commit_lsn = self._assembler.commit_lsn()
            out = self._assembler.commit()
            if out is not None:
                self._publish(out)
                self.transactions += 1
            else:
                # Nothing captured in it: the slot may pass it once all before is confirmed
                # (and must: PostgreSQL's shutdown waits for the client to confirm it all).
                self._tracker.nothing_to_publish(commit_lsn)
            self._ddl.committed()
            self._copies.committed()
        elif (
            isinstance(record, LogicalMessage)
            and record.transactional
            and record.prefix == HEARTBEAT_PREFIX
            and record.content == self._cfg.source.slot
        ):
            self._assembler.mark()
        elif (
            isinstance(record, LogicalMessage)
            and record.transactional
            and record.prefix == BACKFILL_PREFIX
        ):
            self._copies.request(record.content)
        elif (
            isinstance(record, LogicalMessage)
            and record.transactional
            and record.prefix == DDL_PREFIX
        ):
            self._schema_change(record)

    def _schema_change(self, record: LogicalMessage) -> None:
        """A schema change the DDL capture reported (ddl.py): its changes, each in a message of
        its own, and the copies it needs, at this point of the stream."""
        assert self._assembler is not None
        copies = self._copies
        out = self._ddl.handle(record.content, record.lsn, copies.copied)
        for change in out.changes:
            for message in self._assembler.alone(change):
                self._publish(message)
        copies.copied.update(out.created)
        if out.copy:
            copies.request_tables(out.copy)
        if out.changes:
            self._metrics.schema_changes.inc(len(out.changes))
            copies.save_state()

    def _publish(self, out: Outgoing) -> int:
        assert self._tracker is not None
        seq = self._publisher.publish(out.body, out.message_id, out.headers)
        self._tracker.published(seq, out.commit_lsn, out.last)
        self.messages += 1
        m = self._metrics
        m.messages.inc()
        m.changes.inc(out.changes)
        if out.last:
            m.transactions.inc()
        return seq

    # ---------------------------------------------------------------- confirms

    def _on_confirm(self, delivery_tag: int, multiple: bool, ack: bool) -> None:
        tracker = self._tracker
        if tracker is None or self._failure is not None or self._done:
            # After a failure (e.g. a returned message, whose ack follows the return), nothing
            # may move the slot any more.
            return
        try:
            if not ack:
                tracker.nacked(delivery_tag)
            tracker.acked(delivery_tag, multiple)
        except CdcError as e:
            self._fail(e)
            return
        self._copies.confirmed()
        if (
            not self._copies.injecting
            and self._paused
            and not self._stopping
            and self._copies.reading_allowed()
            and tracker.inflight <= self._cfg.broker.max_inflight // 2
        ):
            self._resume_reading()
        if self._stopping:
            self._maybe_finish_stop()
        elif (
            tracker.flush_lsn != self._sent_lsn
            and time.monotonic() - self._last_feedback > _FEEDBACK_MIN_GAP
        ):
            # Confirm promptly (but not per message) so a restart resends as little as possible.
            try:
                self._send_feedback()
            except CdcError as e:
                self._fail(e)

    # ---------------------------------------------------------------- feedback

    def _tick(self) -> None:
        """Regular standby status: the confirmed position, and a keepalive for the walsender."""
        if self._failure is not None or self._done:
            return
        try:
            self._check_stall()
            self._last_turn = time.monotonic()
            self._send_feedback()
        except CdcError as e:
            self._fail(e)
            return
        if self._stopping:
            self._maybe_finish_stop()
        self._later("tick", self._feedback_interval, self._tick)

    def _beat(self) -> None:
        if self._failure is not None or self._stopping or self._done:
            return
        try:
            self._heartbeat.beat()
        except CdcError as e:
            # Not fatal by itself: if PostgreSQL is really gone, the stream says so.
            log.warning("heartbeat_failed error=%s", e)
        self._last_turn = time.monotonic()
        self._later("beat", self._cfg.source.heartbeat_interval, self._beat)

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
        self._last_turn = time.monotonic()
        self._later("lag", _LAG_SECONDS, self._sample_lag)

    def _check_catalog(self) -> None:
        """Identities and partitions that changed while running (catalog.py)."""
        if self._failure is not None or self._done:
            return
        try:
            self._catalog.check()
        except CdcError as e:
            self._fail(e)
            return
        self._later("catalog", CHECK_SECONDS, self._check_catalog)

    def _send_feedback(self) -> None:
        if self._tracker is None or not self.streaming or self._failure is not None:
            return
        lsn = self._tracker.flush_lsn
        self._source.send_feedback(lsn)
        if lsn != self._sent_lsn:
            log.debug("feedback flush_lsn=%s", format_lsn(lsn))
            self._sent_lsn = lsn
        self._last_feedback = time.monotonic()

    def _maybe_finish_stop(self) -> None:
        if self._done or self._failure is not None:
            return
        tracker = self._tracker
        done = tracker is None or tracker.inflight == 0
        if not done and time.monotonic() < self._stop_deadline:
            return
        if not done:
            log.warning(
                "stop_timeout unconfirmed=%d (they will be resent)",
                tracker.inflight if tracker else 0,
            )
        try:
            self._send_feedback()
        except SourceUnavailable as e:
            log.warning("final_feedback_failed error=%s", e)
        if tracker is not None:
            log.info("stopped confirmed_lsn=%s", format_lsn(tracker.flush_lsn))
        self._publisher.close()
        self._ioloop.stop()
