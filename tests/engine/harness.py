"""The engine tests' view of a running stack: workers started with a health port (and waited
for until ready), the ``hookfan`` CLI, and extra ``hookfan.deliver`` wake-ups published the way
the dispatcher publishes them (a repeated wake-up must cost nothing: the queue is the truth)."""

from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from celery import Celery

from hookfan.config import RedisSettings, Settings
from hookfan.devstack import free_port
from hookfan.store import Store, connect
from hookfan.worker.celeryapp import TASK_NAME, celery_config
from tests.conftest import route_file
from tests.support.procs import HookfanProcess, Stack, wait_until


def readyz(port: int) -> int | None:
    """The status of the worker's ``/readyz``, or None if nothing answers on its port."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return None


class Engine:
    """A :class:`Stack` (operator on route files, gunicorn intake) plus workers the test
    starts one by one with their own flags."""

    def __init__(self, redis_url: str, tmp: Path) -> None:
        (tmp / "routes").mkdir()
        self.stack = Stack(redis_url, tmp / "routes", tmp / "logs")
        self.redis_url = redis_url
        self.store = Store(connect(redis_url, timeout=5))
        self.health: dict[str, int] = {}
        self._celery: Celery | None = None

    @property
    def r(self) -> Any:
        return self.store.r

    def start_intake(self) -> Engine:
        self.stack.start_operator()
        self.stack.start_app()
        return self

    def route(self, host: str, backends: list[Any]) -> None:
        """Route ``host`` to backends (anything with a ``port``) through a route file."""
        route_file(self.stack.routes_dir, host, backends, name=host.replace(".", "-"))

    def worker(self, name: str, *args: str, ready: bool = True) -> HookfanProcess:
        """``hookfan worker`` with the Stack's defaults, then ``args``, and a health port;
        waits for ``/readyz`` 200 unless ``ready`` is false."""
        port = free_port()
        self.health[name] = port
        self.stack.worker_args = [*args, "--health-addr", f"127.0.0.1:{port}"]
        proc = self.stack.start_worker(name)
        if ready:
            wait_until(lambda: readyz(port) == 200, 30, f"{name} ready")
        return proc

    def add(self, proc: HookfanProcess) -> HookfanProcess:
        """Stop ``proc`` with the stack."""
        self.stack.procs[proc.name] = proc
        return proc

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "hookfan.cli", *args, "--redis-url",
                               self.redis_url], capture_output=True, text=True, timeout=30)

    def wake(self, backend_url: str, times: int = 1) -> None:
        """Publish ``times`` extra ``hookfan.deliver(backend_url)`` messages through Celery."""
        if self._celery is None:
            self._celery = Celery("hookfan-tests", set_as_current=False)
            self._celery.conf.update(celery_config(
                Settings(redis=RedisSettings(url=self.redis_url))))
        with self._celery.producer_or_acquire() as producer:
            for _ in range(times):
                self._celery.send_task(TASK_NAME, (backend_url, 0), producer=producer)

    def logs(self) -> str:
        return "\n".join(f"===== {n}\n{text[-6000:]}" for n, text in self.stack.logs().items())

    def stop(self) -> None:
        self.stack.stop()
        if self._celery is not None:
            self._celery.close()
