"""The metrics and health endpoint both processes serve on ``metrics_port``.

- ``/metrics``: Prometheus text format (prometheus_client, a registry of our own);
- ``/healthz``: 200 while the process runs (its loop is alive);
- ``/readyz``: 200 while it is connected and making progress, 503 with the reason otherwise.

It runs on a daemon thread; the metric objects are thread-safe.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

log = logging.getLogger(__name__)

# Seconds: fine steps where the pipeline should be (well under a second), coarse beyond.
LATENCY_BUCKETS = (
    0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5,
    0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip

Check = Callable[[], tuple[bool, str]]


class Endpoint:
    def __init__(self, registry: CollectorRegistry, ready: Check, alive: Check) -> None:
        self._registry = registry
        self._ready = ready
        self._alive = alive
        self._server: ThreadingHTTPServer | None = None

    def start(self, port: int | None, host: str) -> None:
        """Serve on ``port`` (None: metrics_port is off, nothing is served)."""
        if port is None:
            return
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    body = generate_latest(endpoint._registry)
                    self._send(200, body, CONTENT_TYPE_LATEST)
                elif path in ("/healthz", "/readyz"):
                    ok, why = (endpoint._alive if path == "/healthz" else endpoint._ready)()
                    self._send(200 if ok else 503, (why + "\n").encode(), "text/plain")
                else:
                    self._send(404, b"not found\n", "text/plain")

            def _send(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return  # scrapes every few seconds would drown the log

        self._server = ThreadingHTTPServer((host, port), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="metrics").start()
        log.info("metrics_listening host=%s port=%d paths=/metrics,/healthz,/readyz", host, port)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
