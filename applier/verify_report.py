"""``python -m applier verify``, the command: one line (or JSON object) per table, a summary,
and the exit code.

Exit code 0: every table equal; 1: differences (rows, or a table or columns missing in the
target); 3: something could not be verified. A table that cannot be verified (a privilege
missing, a column verify has no exact comparison for) gets one line saying why, and the other
tables are still verified; a server that cannot be reached ends the run with one line on
stderr. Never a traceback: a fault of verify itself is one line too.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from applier.verify import TableResult, Verifier
from shared import cli
from shared.config import VerifyConfig
from shared.errors import PermanentError, TransientError
from shared.postgres import first_line
from shared.tables import TableRef

log = logging.getLogger(__name__)


def run(
    prog: str,
    cfg: VerifyConfig,
    *,
    only: Sequence[TableRef],
    chunk_rows: int,
    rechecks: int,
    show: int,
    as_json: bool,
) -> int:
    progress = _Progress()
    results: list[TableResult] = []
    try:
        with Verifier(cfg, chunk_rows, progress, rechecks) as verifier:
            for ref in verifier.tables(only):
                result = _verify_one(verifier, ref)
                progress.clear()
                print(json.dumps(to_json(result)) if as_json else render(result, show), flush=True)
                results.append(result)
    except (TransientError, PermanentError) as e:
        progress.clear()
        print(f"{prog}: verify failed: {e}", file=sys.stderr)
        return cli.EXIT_UNVERIFIED
    except KeyboardInterrupt:
        progress.clear()
        return 130
    except Exception as e:  # a fault of verify itself: one line, the traceback at DEBUG
        progress.clear()
        log.debug("verify_failed", exc_info=True)
        print(f"{prog}: verify failed: {type(e).__name__}: {first_line(e)}", file=sys.stderr)
        return cli.EXIT_UNVERIFIED
    differing = [r for r in results if r.differing]
    failed = [r for r in results if r.error is not None]
    if not as_json:
        verified = len(results) - len(failed)
        tables = f"{verified} table{'s' if verified != 1 else ''}"
        summary = f"{tables} verified, {len(differing)} with differences"
        print(summary + (f", {len(failed)} not verified" if failed else ""))
    if failed:
        return cli.EXIT_UNVERIFIED
    return cli.EXIT_NEGATIVE if differing else cli.EXIT_OK


def _verify_one(verifier: Verifier, ref: TableRef) -> TableResult:
    """The table's result, or why it could not be verified: a lost server ends the run."""
    try:
        return verifier.verify(ref)
    except PermanentError as e:
        error = str(e)
    except TransientError as e:
        raise type(e)(f"{ref}: {e}") from e
    except Exception as e:  # a fault of verify itself: this table is not verified
        log.debug("verify_failed table=%s", ref, exc_info=True)
        error = f"{type(e).__name__}: {first_line(e)}"
    return TableResult(ref, verifier.target_of(ref), error=error)


def render(result: TableResult, show: int = 20) -> str:
    head = f"{result.source} -> {result.target}: "
    if result.error is not None:
        return head + "NOT VERIFIED: " + result.error
    if result.note == "missing in the target":
        return head + f"MISSING in the target ({result.rows:,} rows in the source)"
    if result.note is not None:
        return head + result.note
    chunks = f"{result.chunks:,} chunk{'s' if result.chunks != 1 else ''}"
    counts = f"{result.rows:,} rows in the source, {result.target_rows:,} in the target"
    if result.equal:
        return head + f"equal ({counts}, {chunks})"
    lines = [head + f"DIFFERENT ({counts}, {chunks})"]
    for label, keys in (
        ("missing in the target", result.missing),
        ("only in the target", result.extra),
        ("different values", result.different),
    ):
        if keys:
            shown = ", ".join(_key_text(k) for k in keys[:show])
            more = f" and {len(keys) - show:,} more" if len(keys) > show else ""
            lines.append(f"  {label} ({len(keys):,}): {shown}{more}")
    return "\n".join(lines)


def to_json(result: TableResult) -> dict[str, Any]:
    return {
        "source": str(result.source),
        "target": str(result.target),
        "equal": result.equal,
        "rows": result.rows,
        "target_rows": result.target_rows,
        "chunks": result.chunks,
        "read_row_by_row": result.read_row_by_row,
        "missing": [_key_text(k) for k in result.missing],
        "extra": [_key_text(k) for k in result.extra],
        "different": [_key_text(k) for k in result.different],
        "note": result.note,
        "error": result.error,
    }


def _key_text(key: tuple[Any, ...]) -> str:
    if len(key) == 1:
        return repr(key[0])
    return "(" + ", ".join(repr(v) for v in key) + ")"


class _Progress:
    """One line on stderr, rewritten at most twice a second (only at a terminal)."""

    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()
        self._shown_at = 0.0
        self._shown = False

    def __call__(self, line: str) -> None:
        now = time.monotonic()
        if not self._tty or now - self._shown_at < 0.5:
            return
        self._shown_at = now
        self._shown = True
        sys.stderr.write("\r\033[K" + line)
        sys.stderr.flush()

    def clear(self) -> None:
        if self._shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self._shown = False
