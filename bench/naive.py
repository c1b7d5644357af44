"""The simplest pipeline in the field, as a yardstick for the benchmark (not for use).

It polls the slot with ``pg_logical_slot_get_changes``, publishes one message per change
without publisher confirms, and a consumer with auto-ack commits one row at a time. It loses
data on any fault; it is here only to say how much faster the real pipeline is on the same
machine, on the same work (bench/parts.py ``drain``).

    python -m bench.naive extract DSN SLOT AMQP_URL QUEUE
    python -m bench.naive apply AMQP_URL QUEUE MARIADB_URL TABLE
"""

from __future__ import annotations

import json
import sys
from typing import Any

import mariadb
import pika
import psycopg2
from sqlalchemy.engine import make_url


def _channel(url: str) -> Any:
    # No heartbeats: on a loaded machine a starved reference pipeline lost its connection to
    # a missed heartbeat, and the drain could not finish (it has no reconnect, by design).
    params = pika.URLParameters(url)
    params.heartbeat = 0
    return pika.BlockingConnection(params).channel()


def extract(dsn: str, slot: str, url: str, queue: str) -> None:
    pg = psycopg2.connect(dsn)
    pg.autocommit = True
    channel = _channel(url)
    channel.queue_declare(queue)
    idle = 0
    with pg.cursor() as cur:
        while idle < 20:  # a second with nothing new: the backlog is drained
            cur.execute(
                "SELECT data FROM pg_logical_slot_get_changes(%s, NULL, 1000,"
                " 'format-version', '2')",
                (slot,),
            )
            rows = cur.fetchall()
            idle = 0 if rows else idle + 1
            for (data,) in rows:
                if json.loads(data)["action"] in "IUD":
                    channel.basic_publish("", queue, data.encode())
            if not rows:
                pg.poll()
                channel.connection.sleep(0.05)


def apply(url: str, queue: str, target: str, table: str) -> None:
    u = make_url(target)
    db = mariadb.connect(
        host=u.host, port=u.port, user=u.username, password=u.password, database=u.database
    )
    cur = db.cursor()
    channel = _channel(url)
    channel.queue_declare(queue)

    def on_message(ch: object, method: object, props: object, body: bytes) -> None:
        change = json.loads(body)
        cols = [c["name"] for c in change["columns"]]
        vals = [c["value"] for c in change["columns"]]
        sql = (
            f"INSERT INTO `{table}` ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"
            f" ON DUPLICATE KEY UPDATE {', '.join(f'{c} = VALUES({c})' for c in cols)}"
        )
        cur.execute(sql, vals)
        db.commit()

    channel.basic_consume(queue, on_message, auto_ack=True)
    channel.start_consuming()


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    {"extract": extract, "apply": apply}[command](*args)
