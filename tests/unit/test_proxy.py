"""The harness's loopback proxy (harness/proxy.py): a delay added to each round trip, with
the bytes intact and in order. On a local echo server: no database needed."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from harness.proxy import Proxy


@pytest.fixture
def echo_port() -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))
    port = int(listener.getsockname()[1])

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            # The proxy closes with a reset (as a crashed peer would).
            with conn, contextlib.suppress(OSError):
                while data := conn.recv(65536):
                    conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    yield port
    listener.close()


def _round_trips(port: int, n: int) -> tuple[float, bytes]:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        got = b""
        start = time.monotonic()
        for i in range(n):
            msg = f"{i:04d}".encode()
            s.sendall(msg)
            reply = b""
            while len(reply) < len(msg):
                reply += s.recv(64)
            got += reply
        return time.monotonic() - start, got


def test_delay_is_added_to_each_round_trip(echo_port: int) -> None:
    proxy = Proxy(echo_port, delay=0.02)
    try:
        took, got = _round_trips(proxy.port, 10)
    finally:
        proxy.close()
    assert got == b"".join(f"{i:04d}".encode() for i in range(10))
    assert took >= 10 * 0.02


def test_no_delay_by_default(echo_port: int) -> None:
    proxy = Proxy(echo_port)
    try:
        took, _ = _round_trips(proxy.port, 10)
    finally:
        proxy.close()
    assert took < 10 * 0.02


def test_a_delay_does_not_space_the_bytes(echo_port: int) -> None:
    # 4 MB in one direction then back: the replies are late, not throttled.
    proxy = Proxy(echo_port, delay=0.05)
    payload = bytes(range(256)) * 16384
    try:
        with socket.create_connection(("127.0.0.1", proxy.port)) as s:
            start = time.monotonic()
            threading.Thread(target=s.sendall, args=(payload,), daemon=True).start()
            got = bytearray()
            while len(got) < len(payload):
                got += s.recv(65536)
            took = time.monotonic() - start
    finally:
        proxy.close()
    assert bytes(got) == payload
    assert 0.05 <= took < 2.0
