"""Engine v2 (issue 12) invariants against real processes: a flushed Redis per test, the
stack's processes started by each test with its own worker flags."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine.harness import Engine


@pytest.fixture
def engine(redis_url: str, tmp_path: Path) -> Iterator[Engine]:
    e = Engine(redis_url, tmp_path)
    try:
        yield e
    finally:
        e.stop()
        print(e.logs())  # shown by pytest when the test failed
