"""Which node of a cluster to try first: one home for the choice, used for RabbitMQ's nodes
(broker.url) and MariaDB Galera's (target.url)."""

from __future__ import annotations

import threading

from shared.secret import Secret

_known: dict[tuple[str, tuple[Secret, ...]], Nodes] = {}
_known_lock = threading.Lock()


class Nodes:
    """The order in which a process tries the nodes of one setting.

    It stays with the node that last worked (every connection of the process goes there);
    once a connection there is lost it starts with the next node, so a node that died, whose
    port may still hang rather than refuse, is tried last rather than first.
    """

    def __init__(self, urls: tuple[Secret, ...]) -> None:
        self.urls = urls
        self._first = 0
        self._lock = threading.Lock()

    def order(self) -> list[int]:
        with self._lock:
            n = len(self.urls)
            return [(self._first + k) % n for k in range(n)]

    def worked(self, index: int) -> None:
        with self._lock:
            self._first = index

    def lost(self, index: int | None = None) -> None:
        """A connection to this node (None: the one tried first) was lost: start with the
        next one from now on."""
        with self._lock:
            if index is None or self._first == index:
                self._first = (self._first + 1) % len(self.urls)


def nodes_for(kind: str, urls: tuple[Secret, ...]) -> Nodes:
    """The one Nodes of this process for these URLs (shared by all its connections)."""
    with _known_lock:
        return _known.setdefault((kind, urls), Nodes(urls))
