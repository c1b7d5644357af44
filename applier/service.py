"""The applier's main loop: take deliveries, put them in order, apply, ack after the commit.

Faults, and what happens:
- MariaDB down, deadlock: retried with backoff, deliveries held (unacked), heartbeats kept;
- RabbitMQ lost: reconnect; unacked messages come back and the checkpoint skips applied ones;
- messages out of order: held until their predecessor is applied (applier/sequence.py);
  a predecessor that never comes is reported as a gap, and nothing is applied past it;
- a message that can never be applied: dead-letter queue with the reason, then ack.
"""

from __future__ import annotations

import logging
import threading
import time

from applier.acks import Acks
from applier.apply import Applier, BatchResult, CheckpointMoved, Prepared, describe
from applier.consumer import Consumer, Delivery
from applier.inflight import InFlight
from applier.metrics import ApplierMetrics
from applier.progress import Progress
from applier.sequence import Sequencer
from shared import envelope
from shared.config import ApplierConfig
from shared.envelope import Envelope
from shared.errors import (
    BrokerUnavailable,
    CdcError,
    DecodeError,
    RowRejected,
    SchemaMismatch,
    TransientError,
)
from shared.observe import Endpoint
from shared.position import Position
from shared.retry import retrying
from shared.topology import topology_for

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.5
_SAMPLE_SECONDS = 5.0
_GAP_REPORT_SECONDS = 30.0
# How long messages may wait for a predecessor before the wait is reported as a gap.
_GAP_GRACE_SECONDS = 10.0
# How often a blocked applier reads its checkpoint again (a standby that took over).
_REFRESH_SECONDS = 1.0

# Faults of one message's content: it goes to the dead-letter queue and the rest go on.
_POISON = (DecodeError, RowRejected, SchemaMismatch)

Item = tuple[Envelope, Delivery]


class ApplierService:
    def __init__(self, cfg: ApplierConfig) -> None:
        self._cfg = cfg
        self._stop = threading.Event()
        self._consumer = Consumer(cfg.broker, topology_for(cfg.broker, cfg.source.slot))
        self._applier = Applier(cfg)
        self.metrics = ApplierMetrics()
        self.metrics.watch_refusals(self._applier.refused)
        self._endpoint = Endpoint(self.metrics.registry, self._ready, lambda: (True, "alive"))
        self._connected = False
        self._trouble: str | None = None
        self._sampled_at = 0.0
        self._sequencer: Sequencer[Delivery] = Sequencer(None, self._settled)
        self._acks = Acks(self._ack)
        # Set once a delivery arrives that RabbitMQ had not delivered before: requeued messages
        # come before new ones, so by then every older message has been delivered to us.
        self._seen_new = False
        self._checkpoint: Position | None = None
        self._stats = Progress()
        self._inflight: InFlight[Delivery] = InFlight(self._applier)
        self._blocked_since: float | None = None
        self._gap_reported_at = 0.0
        self._refreshed_at = 0.0
        self._budget = cfg.target.max_batch_changes
        self._rewind = False  # reconnect to let a wider prefetch take effect

    def request_stop(self) -> None:
        self._stop.set()

    def _ready(self) -> tuple[bool, str]:
        if not self._connected:
            return False, "not connected (RabbitMQ or MariaDB)"
        if self._trouble is not None:
            return False, self._trouble
        blocked = self._blocked_since
        if blocked is not None and time.monotonic() - blocked > _GAP_GRACE_SECONDS:
            return False, f"waiting for {self._sequencer.waiting_for()} (ordering gap)"
        return True, "applying"

    def run(self) -> None:
        """Returns after a requested stop; raises a PermanentError that needs a person."""
        self._endpoint.start(self._cfg.metrics_port, self._cfg.metrics_host)
        try:
            while not self._stop.is_set():
                try:
                    for attempt in retrying("applier_connect", log, stop_event=self._stop):
                        with attempt:
                            self._connect()
                    self._connected = True
                    self._consume()
                except TransientError as e:
                    self._connected = False
                    # What was in flight may have committed or not: the checkpoint read on
                    # reconnecting says which, and its messages come back either way.
                    self._inflight.abandon()
                    if self._stop.is_set():
                        return
                    self.metrics.reconnects.inc()
                    log.warning("session_lost error=%s (reconnecting)", e)
                    self._consumer.close()
        finally:
            self._connected = False
            self._inflight.close()
            self._consumer.close()
            self._applier.close()
            self._endpoint.stop()
            log.info("stopped checkpoint=%s", self._checkpoint)

    def _connect(self) -> None:
        self._consumer.close()
        self._checkpoint = self._applier.checkpoint()
        # Deliveries of a lost connection come back; nothing held survives a reconnect.
        self._sequencer.clear(self._checkpoint)
        self._acks.clear()
        self._seen_new = False
        self._consumer.connect()
        log.info("resuming checkpoint=%s", self._checkpoint)

    def _consume(self) -> None:
        limit = self._cfg.broker.prefetch
        budget = self._budget
        while not self._stop.is_set():
            # With a batch in flight, take only what has already arrived: nothing to read
            # means the batch is finished (and acked) now rather than after a wait.
            busy = self._inflight.busy
            deliveries = self._consumer.poll(0 if busy else _POLL_SECONDS, limit)
            if busy and not deliveries:
                self._finish([])
            # Decoded changes take far more memory than message bodies: decode and apply in
            # slices of about one batch, not the whole prefetch window at once.
            accepted = 0
            for d in deliveries:
                accepted += self._accept(d)
                if accepted >= budget:
                    self._release()
                    accepted = 0
                if self._rewind:
                    break
            self._release()
            if self._rewind:
                self._rewind = False
                if self._finish([]):
                    self._connect()  # what is held is requeued and comes back in queue order
                continue
            self._stats.maybe_report()
            self._sample()
        # A requested stop: what is in flight is committed and acked before leaving.
        self._finish([])

    def _ack(self, tags: list[int]) -> None:
        self._consumer.ack(tags)

    def _settled(self, d: Delivery) -> bool:
        return self._seen_new or not d.redelivered

    def _sample(self) -> None:
        now = time.monotonic()
        if now - self._sampled_at < _SAMPLE_SECONDS:
            return
        self._sampled_at = now
        self.metrics.queue_depth.set(self._consumer.queue_depth())
        self.metrics.held.set(len(self._sequencer))

    def _accept(self, d: Delivery) -> int:
        """Decode and hold a delivery; returns how many changes it brought."""
        if not d.redelivered:
            self._seen_new = True
        try:
            envs = envelope.decode_all(d.body)
        except DecodeError as e:
            stand_in = envelope.stub(getattr(d.properties, "headers", None), str(e))
            if stand_in is None or d.replay:
                # Not from an extractor (or replayed by hand): it has no place in the order.
                self._consumer.park(d, e)
                self._consumer.ack([d.tag])
                self._stats.dead_lettered += 1
                self.metrics.dead_lettered.inc()
            else:
                # Its headers say where it stands: it waits for its turn like the others,
                # then goes to the dead-letter queue and the checkpoint steps over it.
                self._sequencer.add(stand_in, d)
            return 0
        if d.replay:
            self._finish([])  # nothing else runs against the target while a batch is
            self._replay(d, envs)
            return 0
        self._acks.expect(d, len(envs))
        for env in envs:
            self._sequencer.add(env, d)
        return sum(len(env.changes) for env in envs)

    def _release(self) -> None:
        ready, duplicates = self._sequencer.take()
        # Messages wait: maybe another applier (this one was its standby) moved the
        # checkpoint meanwhile. Reading it needs the target, so the batch ends first.
        if not ready and len(self._sequencer) and self._finish([]) and self._refresh_checkpoint():
            ready, more = self._sequencer.take()
            duplicates += more
        if duplicates:
            self._acks.settled(duplicates)
            self._stats.skipped += len(duplicates)
            self.metrics.duplicates.inc(len(duplicates))
            log.info(
                "duplicates_skipped messages=%d checkpoint=%s", len(duplicates), self._checkpoint
            )
        # Batches to apply; an undecodable message, and a schema change (MariaDB commits DDL by
        # itself), each on its own.
        units: list[list[Item]] = []
        changes = 0
        for env, d in ready:
            if env.undecodable is not None or env.schema_change is not None:
                units += [[(env, d)], []]
                changes = 0
                continue
            if not units or (units[-1] and changes + len(env.changes) > self._budget):
                units.append([])
                changes = 0
            units[-1].append((env, d))
            changes += len(env.changes)
        units = [u for u in units if u]
        for i, unit in enumerate(units):
            rest = [item for later in units[i + 1 :] for item in later]
            env, d = unit[0]
            # Built while the batch before is still in flight.
            prepared = None if env.undecodable is not None else self._prepare(unit)
            # The batch before must be settled first: its checkpoint is this one's start.
            if not self._finish(unit + rest):
                break
            if env.undecodable is not None:
                self._dead_letter((env, d), DecodeError(env.undecodable))
            else:
                self._inflight.submit(unit, prepared, self._checkpoint)
        self._watch_for_gap(bool(ready))

    def _prepare(self, unit: list[Item]) -> Prepared | None:
        try:
            return self._applier.prepare([env for env, _ in unit])
        except Exception:  # the worker makes the plan again, and classifies the fault
            log.debug("prepare_failed (left to the apply thread)", exc_info=True)
            return None

    def _finish(self, rest: list[Item]) -> bool:
        """Settle the batch in flight, if any: ack it, or deal with its failure here.

        ``rest`` are released messages not yet applied. False if the checkpoint moved under
        us: the sequencer then holds the batch and ``rest`` again, to be ordered afresh.
        """
        done = self._inflight.finish(self._consumer.sleep)
        if done is None:
            return True
        if done.error is None:
            assert done.result is not None
            self._applied(done.items, done.result)
            return True
        error = done.error
        if isinstance(error, CheckpointMoved):
            self._moved(error, done.items + rest)
            return False
        if isinstance(error, _POISON):
            return self._poisoned(done.items, error, rest)
        if isinstance(error, TransientError):
            self._trouble = str(error)
            log.warning("apply_failed error=%s (retrying)", error)
            return self._apply_now(done.items, rest)
        raise error

    def _apply_now(self, batch: list[Item], rest: list[Item], schema_retried: bool = False) -> bool:
        """Apply on this thread, retrying transient faults; the outcome as in ``_finish``."""
        try:
            result = self._apply_retrying([env for env, _ in batch], self._checkpoint)
        except CheckpointMoved as e:
            self._moved(e, batch + rest)
            return False
        except _POISON as e:
            return self._poisoned(batch, e, rest, schema_retried)
        self._applied(batch, result)
        return True

    def _poisoned(
        self, batch: list[Item], error: CdcError, rest: list[Item], schema_retried: bool = False
    ) -> bool:
        if len(batch) == 1:
            if isinstance(error, SchemaMismatch) and not schema_retried:
                # The target may have changed behind our back: the schema cache is
                # forgotten, one more try before parking the message.
                return self._apply_now(batch, rest, schema_retried=True)
            self._dead_letter(batch[0], error)
            return True
        # Find the culprit: one message per transaction from here (all() stops at the first
        # that finds the checkpoint moved).
        return all(self._apply_now([item], batch[i + 1 :] + rest) for i, item in enumerate(batch))

    def _applied(self, batch: list[Item], result: BatchResult) -> None:
        """After the commit: the only place a message is acknowledged after being applied."""
        self._checkpoint = result.checkpoint
        self._trouble = None
        self._acks.settled(d for _, d in batch)
        self._stats.record(result, batch[-1][0])
        m = self.metrics
        m.messages.inc(len(batch))
        m.apply_seconds.observe(result.seconds)
        for (table, op), n in result.rows.items():
            m.rows.labels(str(table), op).inc(n)
        for table, n in result.bulk.items():
            m.bulk_rows.labels(str(table)).inc(n)
        for env, _ in batch:
            if env.last:
                m.applied(env.commit_time, env.copy, result.committed_at)

    def _dead_letter(self, item: Item, error: CdcError) -> None:
        """Park the message (confirmed), step the checkpoint over it, then ack it: in that
        order, a crash anywhere parks it twice at worst, and never leaves a hole that the
        messages after it would wait on for ever."""
        env, d = item
        log.error("apply_failed %s error=%s", describe(env), error)
        self._consumer.park(d, error, envelope.part_of(d.body, env) if env.changes else None)
        try:
            for attempt in retrying("skip", log, stop_event=self._stop, sleep=self._consumer.sleep):
                with attempt:
                    self._applier.skip(env, self._checkpoint)
        except CheckpointMoved as e:
            # Another applier wrote meanwhile: we are not the active one any more.
            raise BrokerUnavailable(f"checkpoint moved under us ({e.actual}); reconnecting") from e
        self._checkpoint = env.end
        self._acks.settled([d])
        self._stats.dead_lettered += 1
        self.metrics.dead_lettered.inc()

    def _moved(self, e: CheckpointMoved, items: list[Item]) -> None:
        # Another applier wrote meanwhile (a standby that was active): order again from the
        # checkpoint as it is; what it covers is acked as duplicate on the next round, and
        # nothing released after the refused batch is applied on the old assumption.
        log.warning("checkpoint_moved from=%s to=%s", self._checkpoint, e.actual)
        self._checkpoint = e.actual
        self._sequencer.reset(e.actual, items)

    def _replay(self, d: Delivery, envs: list[Envelope]) -> None:
        log.warning("replaying message_id=%s %s", d.message_id, describe(envs[0]))
        try:
            self._apply_retrying(envs, None, replay=True)
        except _POISON as e:
            self._consumer.park(d, e)
            self._stats.dead_lettered += 1
            self.metrics.dead_lettered.inc()
        self._consumer.ack([d.tag])

    def _apply_retrying(
        self, envs: list[Envelope], expect: Position | None, *, replay: bool = False
    ) -> BatchResult:
        for attempt in retrying("apply", log, stop_event=self._stop, sleep=self._consumer.sleep):
            with attempt:
                try:
                    result = self._applier.apply(envs, expect, replay=replay)
                except TransientError as e:
                    self._trouble = str(e)
                    raise
                self._trouble = None
                return result
        raise AssertionError("unreachable: retrying re-raises")

    def _refresh_checkpoint(self) -> bool:
        """Reads the checkpoint again, at most once a second; True if it had moved."""
        now = time.monotonic()
        if now - self._refreshed_at < _REFRESH_SECONDS:
            return False
        self._refreshed_at = now
        for attempt in retrying(
            "checkpoint", log, stop_event=self._stop, sleep=self._consumer.sleep
        ):
            with attempt:
                actual = self._applier.checkpoint()
        if actual == self._checkpoint:
            return False
        log.info("checkpoint_refreshed from=%s to=%s", self._checkpoint, actual)
        self._checkpoint = actual
        self._sequencer.reset(actual, [])
        return True

    def _watch_for_gap(self, progressed: bool) -> None:
        now = time.monotonic()
        if progressed or not len(self._sequencer):
            self._blocked_since = None
            if not len(self._sequencer):
                self._consumer.narrow()
            return
        if self._consumer.unacked >= self._consumer.prefetch and self._consumer.widen():
            # Every message RabbitMQ will give us is held: the one they wait for is further
            # back in the queue. Without a wider window we would wait for ever. Reconnecting
            # requeues what we hold; it comes back in queue order, with the wider window.
            self._rewind = True
            return
        if self._blocked_since is None:
            self._blocked_since = now
            return
        waited = now - self._blocked_since
        if waited < _GAP_GRACE_SECONDS or now - self._gap_reported_at < _GAP_REPORT_SECONDS:
            return
        self._gap_reported_at = now
        log.error(
            "ordering_gap checkpoint=%s waiting_for=%s held=%d waited=%.0fs (nothing is "
            "applied past a missing message; see README, 'Ordering gaps')",
            self._checkpoint,
            self._sequencer.waiting_for(),
            len(self._sequencer),
            waited,
        )
