"""Defaults that isolate (issue 19, "one slow backend delays other tenants"): with the worker's
own defaults, a backend that answers after 8 s delays no other host's copies.

A Celery pool process runs one backend's batch loop at a time, and a backend has one task at a
time across all workers (its ownership in Redis): a slow backend takes one pool process, whose
sends run on up to ``--backend-concurrency`` threads, and the other ``--concurrency`` - 1
processes serve every other backend. The worker here gets no delivery flag at all.

Two hosts, each with a real HTTP backend: ``slow`` answers 200 after 8 s, ``fast`` at once.
Each host's accept -> arrival latency is measured alone and while both are sent to, and each
p95 together must stay within 2x its p95 alone. The slow host starts from an idle backend with
the same five webhooks in both phases (its p95 is ~15 s: a batch sends its first copy alone, the
rest when that answered); the fast host is the real check.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from hookfan import keys
from tests.conftest import route_file
from tests.stackfixtures import send
from tests.support.backends import RecordingBackend
from tests.support.latency import Arrivals, latencies, p95
from tests.support.procs import Stack, wait_until
from tests.support.redisproc import RedisProcess

ANSWER_AFTER = 8.0
SLOW = "slow-tenant.example.com"
FAST = "fast-tenant.example.com"


@pytest.fixture
def default_stack(module_redis: RedisProcess, tmp_path) -> Iterator[Stack]:
    (tmp_path / "routes").mkdir()
    s = Stack(module_redis.url, tmp_path / "routes", tmp_path / "logs", default_delivery=True)
    s.start()
    yield s
    # The slow backend may still hold answers: a warm shutdown would wait for them.
    s.procs["worker"].kill()
    s.stop()


def slow_phase(stack: Stack, arrivals: Arrivals, tag: str) -> list[float]:
    """Five webhooks to the slow host, half a second apart, from an idle backend."""
    return latencies(stack.url, SLOW, arrivals, tag, samples=5, pace=0.5)


def test_defaults_isolate_a_slow_backend(default_stack: Stack, make_backend) -> None:
    stack = default_stack
    slow_arrivals, fast_arrivals = Arrivals(), Arrivals()
    slow: RecordingBackend = make_backend(respond=slow_arrivals, answer_after=ANSWER_AFTER)
    fast: RecordingBackend = make_backend(respond=fast_arrivals)
    # The slow route first: once the fast host is live, so is the slow one.
    route_file(stack.routes_dir, SLOW, [slow], name="slow")
    route_file(stack.routes_dir, FAST, [fast], name="fast")
    assert send(stack, FAST, b'{"marker": "warm"}').status_code == 202
    fast.wait_for(1)

    fast_alone = latencies(stack.url, FAST, fast_arrivals, "fast-alone")

    with ThreadPoolExecutor(1) as pool:
        slow_sending = pool.submit(slow_phase, stack, slow_arrivals, "slow-together")
        wait_until(lambda: len(slow.received) >= 1, 10, "the slow backend holding a copy")
        # The fast host is sent to until every slow copy arrived: the slow backend is busy
        # with its 8 s answers all along.
        fast_together = latencies(stack.url, FAST, fast_arrivals, "fast-together",
                                  more=lambda: not slow_sending.done())
        slow_together = slow_sending.result()

    wait_until(lambda: stack.client.zscore(keys.OWNED, slow.url) is None,
               3 * ANSWER_AFTER, "the slow backend's task handing it back")
    slow_alone = slow_phase(stack, slow_arrivals, "slow-alone")

    figures = {"fast": (p95(fast_alone), p95(fast_together), len(fast_together)),
               "slow": (p95(slow_alone), p95(slow_together), len(slow_together))}
    print("p95 alone, together (s), copies together: " + ", ".join(
        f"{host} {a:.3f}, {t:.3f}, {n}" for host, (a, t, n) in figures.items()))
    for host, (alone, together, _n) in figures.items():
        assert together <= 2 * alone, figures | {"host": host}
