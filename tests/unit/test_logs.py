"""CDC_LOG_FORMAT=json: one JSON object per line, fields from the call's own arguments."""

from __future__ import annotations

import json
import logging
import sys

from shared.logs import JsonFormatter, fields_of


def record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("extractor.stream", logging.WARNING, "f.py", 1, msg, args, exc_info)


def test_fields_come_from_named_placeholders() -> None:
    assert fields_of("slot_created slot=%s lsn=%s xid=%d", ("cdc", "0/16B3748", 42)) == {
        "slot": "cdc",
        "lsn": "0/16B3748",
        "xid": 42,
    }


def test_values_with_spaces_stay_whole_and_unnamed_ones_are_numbered() -> None:
    fields = fields_of("apply_failed %s error=%s (retrying)", ("xid=5 tables=a,b", "lost: x=1"))
    assert fields == {"arg1": "xid=5 tables=a,b", "error": "lost: x=1"}


def test_percent_signs_and_width_specifiers() -> None:
    fields = fields_of("lag pct=%.1f%% waited=%5.0fs n=%-3d", (12.5, 3.0, 7))
    assert fields == {"pct": 12.5, "waited": 3.0, "n": 7}


def test_a_reserved_name_does_not_overwrite_the_envelope() -> None:
    assert fields_of("x level=%s message=%s", ("a", "b")) == {"arg1": "a", "arg2": "b"}


def test_json_line() -> None:
    line = JsonFormatter().format(record("checkpoint_moved from=%s to=%s", "0/1", None))
    doc = json.loads(line)
    assert doc["event"] == "checkpoint_moved"
    assert doc["level"] == "WARNING"
    assert doc["logger"] == "extractor.stream"
    assert doc["from"] == "0/1"
    assert doc["to"] is None
    assert doc["message"] == "checkpoint_moved from=0/1 to=None"
    assert doc["time"].endswith("+00:00")
    assert "\n" not in line


def test_json_line_with_an_exception_and_no_arguments() -> None:
    doc = json.loads(JsonFormatter().format(record("stopped", exc=True)))
    assert doc["event"] == "stopped"
    assert "ValueError: boom" in doc["exception"]
