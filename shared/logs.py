"""Logging set-up, called only by the command-line entry points.

Every line is an event name followed by ``key=value`` fields, e.g.
``slot_created slot=cdc lsn=0/16B3748``. With ``CDC_LOG_FORMAT=json`` each line is one JSON
object instead: ``{"time": ..., "level": ..., "logger": ..., "event": "slot_created",
"slot": "cdc", "lsn": "0/16B3748", "message": "slot_created slot=cdc lsn=0/16B3748"}``. The
fields come from the call's own arguments (``log.info("slot_created slot=%s lsn=%s", ...)``),
not from parsing the finished text, so a value with spaces or ``=`` in it stays whole.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

# A %-placeholder, and the "name=" right before it if there is one.
_PLACEHOLDER = re.compile(
    r"(?:(\w+)=)?%(?:\([^)]*\))?[-#0 +]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[diouxXeEfFgGcrsa%]"
)
_RESERVED = frozenset({"time", "level", "logger", "event", "message", "exception"})


def fields_of(msg: str, args: tuple[Any, ...]) -> dict[str, Any]:
    """``{"lsn": "0/1", ...}`` for ``("x lsn=%s ...", ("0/1", ...))``; a placeholder without a
    name gives ``arg1``, ``arg2``..."""
    fields: dict[str, Any] = {}
    values = iter(args)
    unnamed = 0
    for m in _PLACEHOLDER.finditer(msg):
        if m.group(0).endswith("%%"):
            continue
        try:
            value = next(values)
        except StopIteration:
            break
        name = m.group(1)
        if name is None or name in _RESERVED:
            unnamed += 1
            name = f"arg{unnamed}"
        fields[name] = (
            value if isinstance(value, (bool, int, float)) or value is None else str(value)
        )
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        doc: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "event": message.split(" ", 1)[0],
        }
        args = record.args if isinstance(record.args, tuple) else ()
        if isinstance(record.msg, str) and args:
            doc.update(fields_of(record.msg, args))
        doc["message"] = message
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False, default=str)


def configure(level: str, fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s", "%Y-%m-%dT%H:%M:%S")
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # pika logs every connection hiccup at ERROR with a traceback; our own lines say it once.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
