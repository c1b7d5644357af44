"""What both command-line entry points share: the parser's start, loading settings, exit
codes, signals."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TypeVar

from shared import logs
from shared.config import CommandConfig, load_config
from shared.errors import ConfigError, PermanentError

EXIT_OK = 0
EXIT_FAULT = 1  # a fault no retry can fix, or a command that could not do its work
EXIT_CONFIG = 2  # a bad setting
EXIT_NEGATIVE = 1  # a command whose answer is no: status finds no slot, verify differences
EXIT_UNVERIFIED = 3  # verify could not compare (an error)

K = TypeVar("K", bound=CommandConfig)


def parser(prog: str, description: str) -> argparse.ArgumentParser:
    """``python -m <prog>``'s parser, with the option every command takes (--config)."""
    p = argparse.ArgumentParser(prog=f"python -m {prog}", description=description)
    p.add_argument("--config", type=Path, help="YAML settings file (CDC_* variables override it)")
    return p


def load_or_exit(prog: str, path: Path | None, kind: type[K]) -> K:
    """The command's settings (``kind``: the config it reads), or one line on stderr naming the
    bad one and exit code 2."""
    try:
        cfg = load_config(kind, path)
    except ConfigError as e:
        print(f"{prog}: config error: {e}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    logs.configure(cfg.log_level, cfg.log_format)
    return cfg


# Each message makes thousands of short-lived lists and dicts (decoded JSON, rows) and no
# cycles: with the default threshold (700) the cycle collector ran every few hundred rows and
# scanned everything held, which cost the applier about a third of its time (docs/performance.md).
_GC_THRESHOLD = (100_000, 50, 100)


def tune_gc() -> None:
    """Collect cycles rarely, and never scan what start-up loaded (modules, settings)."""
    gc.freeze()
    gc.set_threshold(*_GC_THRESHOLD)


def on_stop_signals(stop: Callable[[], None]) -> None:
    """SIGTERM and SIGINT ask for a graceful stop; a second one exits at once."""
    seen = {"count": 0}

    def handler(signum: int, _frame: FrameType | None) -> None:
        seen["count"] += 1
        if seen["count"] > 1:
            raise SystemExit(128 + signum)  # as a shell reports a death by that signal
        logging.getLogger(__name__).info("signal_received signal=%s", signal.Signals(signum).name)
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def fatal(prog: str, error: PermanentError) -> int:
    """One clear line for a fault no retry can fix."""
    logging.getLogger(prog).error("fatal error=%s", error)
    print(f"{prog}: {error}", file=sys.stderr)
    return EXIT_CONFIG if isinstance(error, ConfigError) else EXIT_FAULT
