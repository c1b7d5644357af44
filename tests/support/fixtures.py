"""Where the golden decoder fixtures live (captured by tests/fixtures/capture.py)."""

from __future__ import annotations

from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "wal2json"
