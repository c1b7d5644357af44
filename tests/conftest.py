"""Servers for the integration and end-to-end tests.

The test stack lives in .stack/test (CDC_TEST_STACK_DIR to change it), apart from the demo's.
It is started once per session and stopped at the end, unless it was already running before
(then it is left as it was, which makes re-running tests during development fast).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.stack import Stack, default_dir
from harness.pipeline import Pipeline, new_pipeline

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    root = Path(os.environ.get("CDC_TEST_STACK_DIR", default_dir() / "test"))
    st = Stack.load(root)
    was_running = all(st.running().values())
    st.start()
    yield st
    if not was_running:
        st.stop()


@pytest.fixture
def pipeline(stack: Stack, tmp_path: Path) -> Iterator[Pipeline]:
    """A fresh source database, slot, queue and target database for one test."""
    for server in (stack.postgres, stack.mariadb, stack.rabbitmq):
        server.start()  # a previous test may have stopped one on purpose
    p = new_pipeline(stack, tmp_path)
    yield p
    p.destroy()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.fspath)
        if "tests/integration/" in path:
            item.add_marker(pytest.mark.integration)
        elif "tests/e2e/" in path:
            item.add_marker(pytest.mark.e2e)
