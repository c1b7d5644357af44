from __future__ import annotations

import pytest

from tests.support.fixtures import FIXTURES


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/unit/" in str(item.fspath):
            item.add_marker(pytest.mark.unit)


@pytest.fixture
def wal2json_records() -> dict[str, list[bytes]]:
    """Golden wal2json v2 output captured from PostgreSQL 15 (tests/fixtures/capture.py)."""
    return {
        p.stem: [line.encode() for line in p.read_text().splitlines() if line]
        for p in sorted(FIXTURES.glob("*.jsonl"))
    }
