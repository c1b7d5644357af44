"""Random mixed DML on a few tables, in multi-statement transactions, reproducible by seed."""

from __future__ import annotations

import random
import threading
import time
from decimal import Decimal
from typing import Any

import psycopg2

SCHEMA = """
CREATE TABLE accounts (
    id bigint PRIMARY KEY,
    owner text NOT NULL,
    balance numeric(14, 2) NOT NULL,
    rate numeric(9, 6),
    opened timestamptz NOT NULL,
    note text
);
CREATE TABLE order_lines (
    order_id integer,
    line_no smallint,
    sku varchar(32) NOT NULL,
    qty integer NOT NULL,
    price numeric(12, 4) NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
CREATE TABLE events (
    at bigint NOT NULL,
    kind text NOT NULL,
    amount numeric(10, 2)
);
CREATE TABLE notes (
    id integer PRIMARY KEY,
    title text NOT NULL,
    body text NOT NULL,
    touched timestamptz NOT NULL DEFAULT now()
);
"""
TABLES = ["accounts", "order_lines", "events", "notes"]

_NAMES = ["Ada", "O'Brien", 'Zoë "Z"', "back\\slash", "東京 🍣", "tab\there", "plain", ""]


class Workload:
    """Runs transactions against one database; can run in a thread while faults happen."""

    def __init__(self, dsn: str, seed: int) -> None:
        self._dsn = dsn
        self._rng = random.Random(seed)
        self._next_account = 1
        self._next_order = 1
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.transactions = 0
        self.changes = 0
        self.reconnects = 0
        self.error: BaseException | None = None

    def create_schema(self) -> None:
        with psycopg2.connect(self._dsn) as conn, conn.cursor() as cur:
            cur.execute(SCHEMA)

    def run(self, transactions: int, rate: float = 0.0) -> None:
        """Commit ``transactions`` transactions (``rate`` per second at most, 0: no limit).

        A lost connection (the drill restarts PostgreSQL) is reconnected and the work goes
        on; whatever committed is the truth the target is compared with.
        """
        conn = None
        started = time.monotonic()
        done = 0
        try:
            while done < transactions and not self._stop.is_set():
                if rate:
                    ahead = started + done / rate - time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)
                try:
                    if conn is None or conn.closed:
                        conn = psycopg2.connect(self._dsn, connect_timeout=5)
                    self._transaction(conn)
                except (psycopg2.OperationalError, psycopg2.InterfaceError):
                    self.reconnects += 1
                    if conn is not None:
                        conn.close()
                    conn = None
                    self._stop.wait(0.5)
                done += 1
        finally:
            if conn is not None:
                conn.close()

    def start(self, transactions: int, rate: float = 0.0) -> None:
        def body() -> None:
            try:
                self.run(transactions, rate)
            except BaseException as e:
                self.error = e

        self._thread = threading.Thread(target=body, daemon=True)
        self._thread.start()

    def join(self, timeout: float = 300) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise AssertionError("workload did not finish")
        if self.error is not None:
            raise self.error

    def stop(self) -> None:
        self._stop.set()
        self.join()

    # ------------------------------------------------------------ one transaction

    def _transaction(self, conn: Any) -> None:
        rng = self._rng
        changes = 0
        with conn, conn.cursor() as cur:
            for _ in range(rng.randint(1, 6)):
                rng.choice(
                    [
                        self._new_account,
                        self._new_account,
                        self._touch_account,
                        self._move_account,
                        self._drop_account,
                        self._new_lines,
                        self._edit_line,
                        self._renumber_line,
                        self._drop_line,
                        self._event,
                        self._note,
                        self._touch_note,
                    ]
                )(cur)
                changes += max(cur.rowcount, 0)
        self.transactions += 1
        self.changes += changes

    def _new_account(self, cur: Any) -> None:
        rng = self._rng
        cur.execute(
            "INSERT INTO accounts VALUES (%s, %s, %s, %s, now() - %s * interval '1 second', %s)",
            (
                self._next_account,
                rng.choice(_NAMES) + str(rng.randint(0, 999)),
                Decimal(rng.randint(-(10**11), 10**11)) / 100,
                Decimal(rng.randint(0, 10**8)) / 10**6 if rng.random() < 0.8 else None,
                rng.randint(0, 10**8),
                None if rng.random() < 0.3 else rng.choice(_NAMES) * rng.randint(1, 5),
            ),
        )
        self._next_account += 1

    def _touch_account(self, cur: Any) -> None:
        cur.execute(
            "UPDATE accounts SET balance = balance + %s, note = %s"
            " WHERE id = (SELECT id FROM accounts ORDER BY random() LIMIT 1)",
            (Decimal(self._rng.randint(-(10**6), 10**6)) / 100, self._rng.choice(_NAMES)),
        )

    def _move_account(self, cur: Any) -> None:
        # A primary key change: the row must move in the target.
        cur.execute(
            "UPDATE accounts SET id = %s WHERE id = (SELECT id FROM accounts ORDER BY random() LIMIT 1)",
            (self._next_account,),
        )
        self._next_account += 1

    def _drop_account(self, cur: Any) -> None:
        cur.execute(
            "DELETE FROM accounts WHERE id = (SELECT id FROM accounts ORDER BY random() LIMIT 1)"
        )

    def _new_lines(self, cur: Any) -> None:
        rng = self._rng
        order = self._next_order
        self._next_order += 1
        for line in range(1, rng.randint(1, 5) + 1):
            cur.execute(
                "INSERT INTO order_lines VALUES (%s, %s, %s, %s, %s)",
                (
                    order,
                    line,
                    f"SKU-{rng.randint(1, 999)}",
                    rng.randint(1, 50),
                    Decimal(rng.randint(1, 10**9)) / 10**4,
                ),
            )

    def _edit_line(self, cur: Any) -> None:
        cur.execute(
            "UPDATE order_lines SET qty = qty + 1, price = price * 1.5"
            " WHERE (order_id, line_no) = (SELECT order_id, line_no FROM order_lines ORDER BY random() LIMIT 1)"
        )

    def _renumber_line(self, cur: Any) -> None:
        cur.execute(
            "UPDATE order_lines SET line_no = line_no + 100"
            " WHERE (order_id, line_no) = (SELECT order_id, line_no FROM order_lines"
            "  WHERE line_no < 100 ORDER BY random() LIMIT 1)"
        )

    def _drop_line(self, cur: Any) -> None:
        cur.execute(
            "DELETE FROM order_lines"
            " WHERE (order_id, line_no) = (SELECT order_id, line_no FROM order_lines ORDER BY random() LIMIT 1)"
        )

    def _note(self, cur: Any) -> None:
        # A body large enough to be TOASTed (stored out of line, compressed).
        body = "".join(
            self._rng.choice("abcdefghij klmnop\n") for _ in range(self._rng.randint(3000, 9000))
        )
        cur.execute(
            "INSERT INTO notes (id, title, body) VALUES (%s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET body = excluded.body",
            (self._rng.randint(1, 200), self._rng.choice(_NAMES), body * 3),
        )

    def _touch_note(self, cur: Any) -> None:
        # Leaves the TOASTed body alone: wal2json then omits it from the update.
        cur.execute(
            "UPDATE notes SET title = %s, touched = now()"
            " WHERE id = (SELECT id FROM notes ORDER BY random() LIMIT 1)",
            (self._rng.choice(_NAMES),),
        )

    def _event(self, cur: Any) -> None:
        # No primary key, inserts only: a message applied twice would show as a duplicate row.
        cur.execute(
            "INSERT INTO events VALUES (%s, %s, %s)",
            (
                self._rng.randint(0, 10**12),
                self._rng.choice(["in", "out", "fee"]),
                Decimal(self._rng.randint(-(10**6), 10**6)) / 100,
            ),
        )
