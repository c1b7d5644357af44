"""A loopback TCP proxy that a test can sever: every open connection is reset at once.

The processes under test connect to the proxy's port instead of the server's, so a "network
cut" between one process and one server is ``proxy.sever()``. With ``delay`` it also holds
each reply for that long before passing it on, so every round trip takes that much longer —
a server on another machine, for the benchmark — without cutting the bandwidth: replies are
delayed, not spaced.
"""

from __future__ import annotations

import contextlib
import queue
import select
import socket
import struct
import threading
import time


class Proxy:
    def __init__(self, target_port: int, delay: float = 0.0) -> None:
        self.target_port = target_port
        self.delay = delay  # seconds added to each reply (so to each round trip)
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True, name=f"proxy-{self.port}").start()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(client)
                continue
            # Without this, Nagle's algorithm and delayed acks add 40 ms to each round trip.
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        peers = {a: b, b: a}
        replies: queue.SimpleQueue[tuple[float, bytes] | None] | None = None
        if self.delay > 0:
            replies = queue.SimpleQueue()
            threading.Thread(target=_deliver_late, args=(replies, a), daemon=True).start()
        try:
            while True:
                readable, _, _ = select.select([a, b], [], [], 1.0)
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is b and replies is not None:
                        replies.put((time.monotonic() + self.delay, data))
                    else:
                        peers[s].sendall(data)
        except (OSError, ValueError):  # ValueError: severed under our feet (fd -1)
            return
        finally:
            if replies is not None:
                replies.put(None)
            _reset(a)
            _reset(b)
            with self._lock:
                if (a, b) in self._pairs:
                    self._pairs.remove((a, b))

    def sever(self) -> int:
        """Reset every connection through the proxy; new ones are accepted again at once."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for a, b in pairs:
            _reset(a)
            _reset(b)
        return len(pairs)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.sever()


def _deliver_late(
    replies: queue.SimpleQueue[tuple[float, bytes] | None], to: socket.socket
) -> None:
    """Each reply sent once its time has come, in order (they are queued in time order)."""
    with contextlib.suppress(OSError, ValueError):
        while (item := replies.get()) is not None:
            due, data = item
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            to.sendall(data)


def _reset(s: socket.socket) -> None:
    """Close with RST, as a broken network path or a crashed peer would look."""
    with contextlib.suppress(OSError):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        s.close()
