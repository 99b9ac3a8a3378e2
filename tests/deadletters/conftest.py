"""200,000 dead letters in a real Redis, seeded once per module and put back before each test.

This Redis runs without AOF (the seed would write 800,000 AOF entries; durability is not what
these tests are about) and allows ``DEBUG RELOAD`` from local clients: each test starts from
the seeded snapshot (``DEBUG RELOAD NOSAVE`` loads it back in about half a second) with
``INFO commandstats`` reset, so a test can count the Redis calls a verb made.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import redis

from hookfan import cli, scripts
from tests.deadletters.seed import Seeded, seed
from tests.support.redisproc import RedisProcess

COUNT = 200_000


@dataclass
class DeadStore:
    url: str
    r: redis.Redis
    seeded: Seeded

    def calls(self, command: str) -> int:
        """Calls of ``command`` since the test began (``INFO commandstats``)."""
        stats: dict[str, Any] = self.r.info("commandstats")
        return int(stats.get(f"cmdstat_{command}", {}).get("calls", 0))

    def now_ms(self) -> int:
        secs, micros = self.r.time()
        return int(secs) * 1000 + int(micros) // 1000

    def dead(self) -> set[str]:
        return {d.decode() for d in self.r.zrange("hookfan:dead", 0, -1)}

    def run(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        """``hookfan deadletters ARGS`` in this process (no interpreter start to wait for)."""
        code = cli.main(["deadletters", *args, "--redis-url", self.url])
        out = capsys.readouterr()
        return code, out.out, out.err

    def spawn(self, *args: str, **kwargs: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "hookfan.cli", "deadletters", *args,
                                 "--redis-url", self.url], **kwargs)


@pytest.fixture(scope="module")
def seeded_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisProcess,
                                                                             Seeded]]:
    proc = RedisProcess(tmp_path_factory.mktemp("dlredis"),
                        extra=["--appendonly", "no", "--enable-debug-command", "local"]).start()
    client = proc.client()
    seeded = seed(client, COUNT)
    client.save()
    client.close()
    yield proc, seeded
    proc.stop()


@pytest.fixture
def dl(seeded_redis: tuple[RedisProcess, Seeded]) -> Iterator[DeadStore]:
    proc, seeded = seeded_redis
    client = proc.client()
    client.execute_command("DEBUG", "RELOAD", "NOSAVE")
    for name in scripts.NAMES:  # loaded, so no call is an EVALSHA answered NOSCRIPT
        client.script_load(scripts.source(name))
    client.config_resetstat()
    yield DeadStore(proc.url, client, seeded)
    client.close()
