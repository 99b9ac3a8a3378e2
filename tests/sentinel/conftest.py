"""A Sentinel-managed Redis (primary, two replicas, three Sentinels) per test, and settings
that reach it only through the Sentinels."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hookfan.config import RedisSettings
from tests.support.sentinel import MASTER, SentinelRig


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[SentinelRig]:
    r = SentinelRig(tmp_path / "rig").start()
    yield r
    r.stop()


def through_sentinel(rig: SentinelRig, db: int = 0) -> RedisSettings:
    """Settings whose URL's host and port lead nowhere: only the Sentinels find Redis."""
    return RedisSettings(url=rig.url(db), sentinel=tuple(("127.0.0.1", s.port)
                                                         for s in rig.sentinels),
                         sentinel_master=MASTER)


def flags(rig: SentinelRig, db: int = 0) -> list[str]:
    """The command-line flags of :func:`through_sentinel`."""
    return ["--redis-url", rig.url(db), "--redis-sentinel", rig.sentinel_addrs,
            "--redis-sentinel-master", MASTER]
