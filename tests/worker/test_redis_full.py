"""Redis at its ``maxmemory`` (``noeviction``) never kills a worker: a running one that meets
it, and one started on it, wait (alive, unready) instead of exiting, and deliver everything
once memory frees. A real redis-server, app, worker and backend."""

from __future__ import annotations

from pathlib import Path

import requests

from hookfan.devstack import free_port
from tests.stackfixtures import send
from tests.support.procs import wait_until
from tests.support.redisfill import fill_to_maxmemory, stack_on_own_redis

HOST = "full-worker.example.com"
SENT = 20
MARGIN = 512 * 1024
"""Bytes below what Redis holds that its maxmemory is set to once full."""


def readyz(port: int) -> int:
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code
    except requests.ConnectionError:
        return 0


def test_a_full_redis_never_kills_a_worker_and_it_drains_once_memory_frees(tmp_path: Path,
                                                                         make_backend):
    status = {"now": 503}
    delivered: set[bytes] = set()

    def respond(got, _n):  # type: ignore[no-untyped-def]
        if status["now"] == 200:
            delivered.add(got.body)
        return status["now"], {}
    backend = make_backend(respond=respond)
    health = free_port()
    server, stack = stack_on_own_redis(tmp_path, HOST, backend, ["--maxmemory", "30mb"],
                                       worker_args=["--health-addr", f"127.0.0.1:{health}"])
    client = server.client()
    try:
        stack.start()
        for i in range(SENT):
            assert send(stack, HOST, b"%d" % i).status_code == 202
        backend.wait_for(SENT)  # every copy tried once (503): the worker is consuming
        wait_until(lambda: readyz(health) == 200, what="worker ready")

        # Full, and kept over maxmemory by a margin: client buffers come and go.
        filler = fill_to_maxmemory(client)
        client.config_set("maxmemory", int(client.info("memory")["used_memory"]) - MARGIN)
        status["now"] = 200
        # The running worker loses its connections (a network blip, a Redis failover): its
        # consumer reconnects to a Redis that refuses kombu's bookkeeping.
        worker = stack.procs["worker"]
        client.client_kill_filter(_type="normal", skipme=True)
        wait_until(lambda: any(line in worker.log() for line in (
            "waits for memory", "Unrecoverable error")), timeout=30,
            what="the running worker's consumer meets the full Redis")
        assert "Unrecoverable error" not in worker.log() and worker.proc.poll() is None
        wait_until(lambda: readyz(health) == 503, what="the waiting worker unready")

        worker.stop()  # a worker (re)started while Redis is full
        second = stack.start_worker("worker2")
        wait_until(lambda: any(line in second.log() for line in (
            "waits for memory", "Unrecoverable error")), timeout=30,
            what="a worker started on the full Redis")
        assert "Unrecoverable error" not in second.log() and second.proc.poll() is None
        assert readyz(health) == 503

        client.delete(*filler)
        bodies = {str(i).encode() for i in range(SENT)}
        wait_until(lambda: bodies <= delivered, timeout=60,
                   what="every copy delivered after memory freed")
        wait_until(lambda: readyz(health) == 200, what="worker ready again")
        assert second.proc.poll() is None
        for p in (worker, second):
            assert "Unrecoverable error" not in p.log()
    finally:
        stack.stop()
        server.stop()
