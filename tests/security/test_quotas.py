"""Per-host quotas (``--max-stored-bytes-per-host``, ``--max-pending-per-host``): a host whose
backend rejects everything (dead letters) or is down fills its own quota and is refused with
503 + Retry-After, while other hosts keep getting 202 and their copies delivered; once its
dead letters are purged, or its copies delivered, it is taken again. Real gunicorn, real
Redis, real backends, a real worker; the purge is the CLI an operator would run.

``pytest -s`` prints the figures quoted in docs/security.md."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from hookfan import keys
from hookfan.devstack import free_port
from tests.conftest import route_file
from tests.intake.test_redis_full import rejected
from tests.stackfixtures import raw_send, send
from tests.support.backends import always
from tests.support.procs import Stack, wait_until
from tests.support.redisproc import RedisProcess

BAD, GOOD = "flood.example.com", "tenant.example.com"
BODY = 200_000
STORED_CAP = 4_000_000
"""--max-stored-bytes-per-host: about 19 requests of :data:`BODY` bytes."""
PENDING_CAP = 12


def held(client, host: str) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    p, b = client.hmget(keys.QUOTA, *keys.quota_fields(host))
    return int(p or 0), int(b or 0)


def quota_stack(tmp_path: Path, redis: RedisProcess, metrics: int, *caps: str) -> Stack:
    return Stack(redis.url, tmp_path / "routes", tmp_path / "logs",
                 app_args=["--metrics-addr", f"127.0.0.1:{metrics}", "--body-size-limit",
                           "1000000", *caps])


def flood(stack: Stack, host: str, size: int, limit: int = 500) -> tuple[int, object]:
    """Send to ``host`` until it is refused; (how many got 202, the refusal)."""
    for i in range(limit):
        resp = raw_send(stack.url, host, b'{"n":%d,"pad":"%s"}' % (i, b"x" * size))
        if resp.status_code != 202:
            return i, resp
    raise AssertionError(f"{host} never refused in {limit} requests")


def test_one_host_cannot_fill_redis_for_others(tmp_path: Path, make_backend) -> None:  # type: ignore[no-untyped-def]
    redis = RedisProcess(tmp_path / "redis").start()
    client = redis.client()
    rejecting = make_backend(respond=always(400))  # every copy becomes a dead letter
    tenant = make_backend()
    (tmp_path / "routes").mkdir()
    route_file(tmp_path / "routes", BAD, [rejecting], name="flood")
    route_file(tmp_path / "routes", GOOD, [tenant], name="tenant")
    metrics = free_port()
    stack = quota_stack(tmp_path, redis, metrics,
                        "--max-stored-bytes-per-host", str(STORED_CAP))
    try:
        stack.start()
        assert send(stack, GOOD, b'{"warm":1}').status_code == 202  # routes are live
        tenant.wait_for(1)
        before = int(client.info("memory")["used_memory"])
        started = time.monotonic()
        accepted, refused = flood(stack, BAD, BODY)
        took = time.monotonic() - started
        copies, stored = held(client, BAD)
        used = int(client.info("memory")["used_memory"]) - before

        assert refused.status_code == 503  # type: ignore[attr-defined]
        assert refused.headers["Retry-After"].isdigit()  # type: ignore[attr-defined]
        assert "too many webhooks stored" in refused.json()["error"]  # type: ignore[attr-defined]
        assert copies == accepted and stored <= STORED_CAP < stored + BODY
        wait_until(lambda: rejected(metrics, "quota") >= 1, what="quota counted")
        assert "--max-stored-bytes-per-host" in stack.logs()["app"]
        assert BAD not in stack.logs()["app"]  # the Host value is never logged

        # Other hosts are unaffected: each request 202 and delivered, while the flooded one
        # is still refused.
        for i in range(20):
            assert raw_send(stack.url, GOOD, b'{"t":%d}' % i).status_code == 202
        tenant.wait_for(21)
        assert raw_send(stack.url, BAD, b"x" * BODY).status_code == 503
        wait_until(lambda: client.zcard(keys.DEAD) == accepted, what="all dead-lettered")
        assert held(client, BAD) == (copies, stored)  # a dead letter counts as its copy did

        # Purge the flooded host's dead letters (the CLI, as an operator would): its counters
        # go back to 0 and it is taken again.
        subprocess.run([sys.executable, "-m", "hookfan.cli", "deadletters", "purge",
                        "--backend", rejecting.url, "--redis-url", redis.url],
                       check=True, capture_output=True, timeout=60)
        assert held(client, BAD) == (0, 0)
        assert raw_send(stack.url, BAD, b'{"again":1}').status_code == 202
        print(f"\nquota figures: {accepted} requests of {BODY:,} B body accepted in "
              f"{took:.2f} s, then 503; counted {stored:,} B of --max-stored-bytes-per-host "
              f"{STORED_CAP:,} ({copies} copies); Redis used_memory grew {used:,} B; other "
              f"host 20/20 202 and delivered; after purge: counters 0, 202 again")
    finally:
        stack.stop()
        redis.stop()


def test_a_host_whose_backend_is_down_is_taken_again_once_its_copies_are_delivered(
        tmp_path: Path, make_backend) -> None:  # type: ignore[no-untyped-def]
    redis = RedisProcess(tmp_path / "redis").start()
    client = redis.client()
    down = make_backend()
    down.stop()  # a closed port: its copies stay pending, retrying
    tenant = make_backend()
    (tmp_path / "routes").mkdir()
    route_file(tmp_path / "routes", BAD, [down], name="flood")
    route_file(tmp_path / "routes", GOOD, [tenant], name="tenant")
    metrics = free_port()
    stack = quota_stack(tmp_path, redis, metrics, "--max-pending-per-host", str(PENDING_CAP))
    try:
        stack.start()
        assert send(stack, GOOD, b'{"warm":1}').status_code == 202
        accepted, refused = flood(stack, BAD, 100)
        assert accepted == PENDING_CAP
        assert refused.status_code == 503 and refused.headers["Retry-After"].isdigit()  # type: ignore[attr-defined]
        assert held(client, BAD)[0] == PENDING_CAP
        wait_until(lambda: rejected(metrics, "quota") >= 1, what="quota counted")
        assert "--max-pending-per-host" in stack.logs()["app"]
        for i in range(PENDING_CAP + 5):  # more than the cap: the other host's count is its own
            assert raw_send(stack.url, GOOD, b'{"t":%d}' % i).status_code == 202
            tenant.wait_for(i + 2)  # delivered: it leaves the other host's count

        back = make_backend(port=down.port)  # the backend comes back: copies are delivered
        back.wait_for(PENDING_CAP, timeout=60)
        wait_until(lambda: held(client, BAD) == (0, 0), what="counters back to 0")
        assert raw_send(stack.url, BAD, b'{"again":1}').status_code == 202
        back.wait_for(PENDING_CAP + 1)
    finally:
        stack.stop()
        redis.stop()
