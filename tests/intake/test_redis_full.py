"""Redis full (``maxmemory`` with ``noeviction``), and ``--max-pending``: the intake sheds load
with 503 + Retry-After, loses nothing it accepted, and recovers by itself as deliveries free
memory. A real redis-server with a small ``maxmemory``, a real app, worker and backend."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import requests

from hookfan import keys
from hookfan.devstack import free_port
from tests.stackfixtures import raw_send, send
from tests.support.procs import Stack, wait_until
from tests.support.redisfill import stack_on_own_redis

HOST = "full.example.com"
BODY = 64_000
"""Bytes per webhook: the 20 MB Redis fills within a few hundred requests."""


def rejected(metrics_port: int, reason: str) -> float:
    text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    sample = 'hookfan_intake_rejected_total{reason="' + reason + '"} '
    m = re.search("^" + re.escape(sample) + r"(\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def body(i: int) -> bytes:
    return b'{"n": %d, "pad": "%s"}' % (i, b"x" * BODY)


def fill(stack: Stack, until_status: int = 503, limit: int = 2000) -> tuple[list[int], Any]:
    """Send webhooks until one gets ``until_status``; (indexes accepted, that answer)."""
    accepted = []
    for i in range(limit):
        resp = raw_send(stack.url, HOST, body(i))
        if resp.status_code == until_status:
            return accepted, resp
        assert resp.status_code == 202, resp.text
        accepted.append(i)
    raise AssertionError(f"never answered {until_status} in {limit} requests")


def delivered_indexes(backend: Any) -> list[int]:
    return [int(re.match(rb'\{"n": (-?\d+)', r.body).group(1)) for r in backend.received]


def test_redis_full_answers_503_loses_nothing_and_recovers(tmp_path: Path, make_backend):
    backend = make_backend()
    metrics = free_port()
    redis, stack = stack_on_own_redis(tmp_path, HOST, backend,
                                      app_args=["--metrics-addr", f"127.0.0.1:{metrics}"])
    client = redis.client()
    try:
        stack.start_operator()
        stack.start_app()
        assert send(stack, HOST, body(-1)).status_code == 202  # the route is live
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory", used + 20_000_000)  # a 2 MB reserve for the worker
        accepted, full = fill(stack)
        assert full.status_code == 503
        assert full.headers["Retry-After"].isdigit()
        assert "storage full" in full.json()["error"]
        assert len(accepted) > 20
        assert "Redis is full" in stack.logs()["app"]
        wait_until(lambda: rejected(metrics, "redis_full") >= 1, what="redis_full counted")
        # Nothing accepted was lost: every one is delivered once a worker runs, even though
        # Redis is still full when it starts.
        stack.start_worker()
        backend.wait_for(len(accepted) + 1, timeout=60)
        assert sorted(delivered_indexes(backend)) == [-1, *accepted]
        # ...and the intake takes webhooks again by itself.
        assert send(stack, HOST, body(10_000), timeout=20).status_code == 202
        assert "worker" in stack.procs and stack.procs["worker"].proc.poll() is None
    finally:
        stack.stop()
        redis.stop()


def test_max_pending_sheds_load_before_redis_is_full(tmp_path: Path, make_backend):
    down = make_backend()
    down.stop()  # a closed port: copies stay pending
    metrics = free_port()
    redis, stack = stack_on_own_redis(
        tmp_path, HOST, down, app_args=["--metrics-addr", f"127.0.0.1:{metrics}",
                                        "--max-pending", "30", "--workers", "1"])
    try:
        stack.start_operator()
        stack.start_app()
        assert send(stack, HOST, body(-1)).status_code == 202
        accepted, shed = fill(stack)
        assert shed.status_code == 503 and shed.headers["Retry-After"].isdigit()
        assert "too many deliveries pending" in shed.json()["error"]
        pending = redis.client().hlen(keys.copies(down.url))
        assert pending == len(accepted) + 1 >= 30
        # the count is refreshed once a second, so a few may get in after the limit passes
        assert pending <= 30 + 1_000
        assert rejected(metrics, "max_pending") >= 1
        assert "over --max-pending" in stack.logs()["app"]
    finally:
        stack.stop()
        redis.stop()


def test_a_write_redis_refuses_for_memory_is_answered_503_storage_full(store):
    """The memory check is read at most every 100 ms; a write Redis refuses in between (its
    ``OOM`` error from inside the accept script) gets the same answer, and stores nothing."""
    from hookfan.app import create_app
    from hookfan.config import Settings
    from hookfan.routes import Backend, build_table

    store.publish_routes(build_table([("oom.example", Backend("ns/a", "http://a"))], 0))
    app = create_app(Settings(), store=store)
    intake = app.extensions["hookfan.intake"]
    client = app.test_client()
    assert client.post("/", data=b"fits", headers={"Host": "oom.example"}).status_code == 202
    intake._memory_at = float("inf")  # the next request does not look at memory first
    store.r.config_set("maxmemory-policy", "noeviction")
    store.r.config_set("maxmemory", 1)
    try:
        resp = client.post("/", data=b"refused", headers={"Host": "oom.example"})
    finally:
        store.r.config_set("maxmemory", 0)
    assert resp.status_code == 503 and resp.headers["Retry-After"].isdigit()
    assert resp.get_json()["error"] == "storage full, retry later"
    assert store.pending_count() == 1
