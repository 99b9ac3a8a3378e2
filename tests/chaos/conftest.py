"""Chaos fixtures: a fresh AOF-always Redis and a fresh stack per scenario, plus the test as
the process supervisor (it restarts whatever exits, and records what exited and how)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import route_file
from tests.support.backends import RecordingBackend
from tests.support.procs import HookfanProcess, Stack
from tests.support.redisproc import RedisProcess


@pytest.fixture
def chaos_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    proc = RedisProcess(tmp_path / "redis").start()
    yield proc
    proc.stop()


@dataclass
class Supervisor:
    """Restarts any stack process that exits, as Kubernetes would, and records the exits."""

    stack: Stack
    exits: list[tuple[str, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _paused: set[str] = field(default_factory=set)

    def start(self) -> Supervisor:
        threading.Thread(target=self._run, daemon=True).start()
        return self

    def pause(self, name: str) -> None:
        """Leave ``name`` down (the test restarts it itself)."""
        self._paused.add(name)

    def resume(self, name: str) -> None:
        self._paused.discard(name)

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            for name, p in list(self.stack.procs.items()):
                if name in self._paused or p.proc is None:
                    continue
                code = p.proc.poll()
                if code is not None:
                    self.exits.append((name, code))
                    restart(p)


def restart(p: HookfanProcess) -> None:
    p.start()


@pytest.fixture
def chaos_stack(chaos_redis: RedisProcess, tmp_path: Path
                ) -> Iterator[Callable[..., tuple[Stack, Supervisor]]]:
    made: list[tuple[Stack, Supervisor]] = []

    def make(host: str, targets: list[RecordingBackend], workers: int = 1,
             worker_args: list[str] | None = None) -> tuple[Stack, Supervisor]:
        routes = tmp_path / "routes"
        routes.mkdir(exist_ok=True)
        route_file(routes, host, targets)
        # Retries capped at 5 s: a down backend's copies come back often enough to show the
        # drain, without spending the worker on attempts that are bound to fail.
        args = ["--max-retry-delay", "5s", *(worker_args or [])]
        stack = Stack(chaos_redis.url, routes, tmp_path / "logs", worker_args=args)
        stack.start_operator()
        stack.start_app()
        for i in range(workers):
            stack.start_worker("worker" if i == 0 else f"worker{i}")
        sup = Supervisor(stack).start()
        made.append((stack, sup))
        return stack, sup

    yield make
    for stack, sup in made:
        sup.stop()
        stack.stop()
