"""Keeps an extractor session running: reconnect with backoff after any transient fault."""

from __future__ import annotations

import logging
import threading

from extractor.collaborators import connect
from extractor.metrics import ExtractorMetrics
from extractor.stream import StreamSession
from shared.config import ExtractorConfig
from shared.errors import TransientError
from shared.observe import Endpoint
from shared.retry import retrying

log = logging.getLogger(__name__)


class ExtractorService:
    def __init__(self, cfg: ExtractorConfig) -> None:
        self._cfg = cfg
        self._stop = threading.Event()
        self._session: StreamSession | None = None
        self.metrics = ExtractorMetrics()
        self._endpoint = Endpoint(self.metrics.registry, self._ready, lambda: (True, "alive"))

    def request_stop(self) -> None:
        self._stop.set()
        session = self._session
        if session is not None:
            session.request_stop()

    def _ready(self) -> tuple[bool, str]:
        session = self._session
        if session is None or not session.streaming:
            return False, "not streaming (connecting or waiting for the slot)"
        return True, "streaming"

    def run(self) -> None:
        """Returns after a requested stop; raises a PermanentError that needs a person."""
        self._endpoint.start(self._cfg.metrics_port, self._cfg.metrics_host)
        try:
            while not self._stop.is_set():
                try:
                    for attempt in retrying("extractor_session", log, stop_event=self._stop):
                        with attempt:
                            self._run_session()
                except TransientError:
                    if self._stop.is_set():
                        return
                    raise
        finally:
            self._endpoint.stop()

    def _run_session(self) -> None:
        session = StreamSession(self._cfg, self.metrics, connect(self._cfg, self.metrics))
        self._session = session
        if self._stop.is_set():
            return
        try:
            session.run()
        except TransientError as e:
            self.metrics.reconnects.inc()
            if session.streaming and session.transactions:
                # The session worked for a while: start over with a short wait, not with the
                # backoff of earlier failures.
                log.warning("session_lost error=%s (reconnecting)", e)
                return
            raise
        finally:
            self._session = None
