"""Delivery guarantees under faults, with real processes killed on purpose.

Every scenario sends a stream of webhooks, each naming a unique marker in its body, and then
counts per backend: 202s given, copies received, copies lost (must be 0) and duplicates (at
most the injected faults times the in-flight window). Figures are printed (``-s``) and, with
``HOOKFAN_CHAOS_REPORT=path``, appended there as JSON lines for docs/guarantees.md.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest

from tests.chaos.harness import (
    Downable,
    PortHold,
    Sender,
    Tally,
    marker_of,
    repeat_at_random,
    tally,
    wait_delivered,
)
from tests.support.backends import RecordingBackend
from tests.support.procs import Stack, wait_until

pytestmark = pytest.mark.chaos

DOWN = float(os.environ.get("HOOKFAN_CHAOS_BACKEND_DOWN", "20"))
"""How long the backend of scenario 1 stays down (the issue asks for 20 s in CI)."""
CONCURRENCY = 2
"""Pool processes per worker (the Stack default): one fault cuts at most this many
``hookfan.deliver`` tasks, each owning one backend."""
APP_WORKERS = 2


def window(workers: int = 1) -> int:
    """Copies one fault is allowed to duplicate per backend: the copies a killed task had
    claimed and not yet settled, and every request in flight at the intake (a sender retries
    a request cut off after it was stored).

    The engine's own worst case is a whole batch per task (``--delivery-batch``, 64): a batch's
    outcomes are settled together. At this scenario's rate (about 20 copies/s per backend, a
    task claiming every 25 ms or more) a batch holds a copy or two, so the bound allows a
    couple per task: tighter than the worst case, so outcomes settled late (or copies claimed
    before they are due) show up here."""
    return workers * CONCURRENCY + APP_WORKERS


def check(rows: list[Tally], faults: int, workers: int = 1) -> None:
    for r in rows:
        assert r.accepted > 0, r
        assert r.lost == 0, r
        assert r.duplicates <= faults * window(workers), r


def test_backend_down_for_a_stretch_gets_everything_after_it_returns(chaos_stack, make_backend,
                                                                      backends):
    a, b = make_backend(), Downable().start()
    backends.append(b)
    host = "down.example.com"
    stack, _ = chaos_stack(host, [a, b])
    started = time.monotonic()
    sender = Sender(stack.url, host).start()
    sender.wait_accepted(20)
    b.down()
    hold = PortHold(b.port)
    time.sleep(DOWN)  # the fault itself: the backend stays down this long while traffic flows
    hold.release()
    back = RecordingBackend(port=b.port).start()
    backends.append(back)
    sender.wait_accepted(len(sender.accepted) + 20)
    sender.stop()
    wait_delivered([a], sender.accepted)
    # What b took before it went down is not owed again by its successor on the same port.
    wait_delivered([back], sender.accepted - {marker_of(r) for r in b.received})
    check(tally("backend down", sender, {"a": [a], "b": [b, back]}, started), faults=1)


def test_worker_kill_9_five_times_loses_nothing(chaos_stack, make_backend):
    a, b = make_backend(), make_backend()
    host = "killworker.example.com"
    stack, sup = chaos_stack(host, [a, b])
    started = time.monotonic()
    sender = Sender(stack.url, host).start()
    sender.wait_accepted(20)
    rng = random.Random()

    def fault(i: int) -> None:
        worker = stack.procs["worker"]
        children = worker.children()
        if i % 2 == 0 and children:
            os.kill(rng.choice(children), signal.SIGKILL)  # a pool child mid-attempt
        else:
            worker.kill()  # main process and children; the supervisor starts a new one

    repeat_at_random(5, 20, fault)
    sender.wait_accepted(len(sender.accepted) + 20)
    sender.stop()
    wait_delivered([a, b], sender.accepted, timeout=120)
    print("exits:", sup.exits)
    check(tally("worker kill -9 x5", sender, {"a": [a], "b": [b]}, started), faults=5)


def test_redis_kill_9_and_restart_delivers_every_202(chaos_stack, chaos_redis, make_backend):
    a, b = make_backend(), make_backend()
    host = "killredis.example.com"
    stack, sup = chaos_stack(host, [a, b])
    started = time.monotonic()
    sender = Sender(stack.url, host).start()
    sender.wait_accepted(30)
    chaos_redis.kill()
    time.sleep(2)  # the fault itself: Redis stays down this long
    chaos_redis.start()
    sender.wait_accepted(len(sender.accepted) + 30, timeout=90)
    sender.stop()
    wait_delivered([a, b], sender.accepted, timeout=120)
    print("exits (restarted by the test as supervisor):", sup.exits)
    print("answers:", dict(sender.statuses))
    check(tally("redis kill -9 + restart", sender, {"a": [a], "b": [b]}, started), faults=1)


def test_gunicorn_worker_kill_9_under_load_delivers_every_202(chaos_stack, make_backend):
    a, b = make_backend(), make_backend()
    host = "killapp.example.com"
    stack, _ = chaos_stack(host, [a, b])
    started = time.monotonic()
    sender = Sender(stack.url, host, threads=4, pace=0.05).start()
    sender.wait_accepted(20)
    rng = random.Random()

    def fault(_i: int) -> None:
        wait_until(lambda: bool(stack.procs["app"].children()), what="gunicorn workers")
        os.kill(rng.choice(stack.procs["app"].children()), signal.SIGKILL)

    repeat_at_random(5, 15, fault)
    sender.wait_accepted(len(sender.accepted) + 20)
    sender.stop()
    wait_delivered([a, b], sender.accepted)
    print("requests cut off and sent again:", sender.cut)
    check(tally("gunicorn worker kill -9 x5", sender, {"a": [a], "b": [b]}, started), faults=5)


def answers_503_fast(stack: Stack, host: str, count: int) -> Sender:
    sender = Sender(stack.url, host, retry_cut=False)
    for i in range(count):
        t = time.monotonic()
        status = sender.send_one(f"down{i}")
        elapsed = time.monotonic() - t
        assert status == 503, status
        assert elapsed < 2.0, elapsed
    return sender


def test_redis_down_at_intake_answers_503_with_retry_after_within_2s(chaos_stack, chaos_redis,
                                                                      make_backend):
    a = make_backend()
    host = "noredis.example.com"
    stack, _ = chaos_stack(host, [a])
    started = time.monotonic()
    warm = Sender(stack.url, host, retry_cut=False)
    wait_until(lambda: all(warm.send_one(f"warm{i}") == 202 for i in range(4)),
               what="route live in every gunicorn worker")
    from tests.stackfixtures import raw_send
    chaos_redis.kill()  # refused connections
    refused = answers_503_fast(stack, host, 10)
    assert raw_send(stack.url, host, b"{}").headers.get("Retry-After")
    chaos_redis.start()
    assert chaos_redis.proc is not None
    os.kill(chaos_redis.proc.pid, signal.SIGSTOP)  # a hung Redis: connects, never answers
    try:
        hung = answers_503_fast(stack, host, 4)
    finally:
        os.kill(chaos_redis.proc.pid, signal.SIGCONT)
    for s in (refused, hung):
        assert s.accepted == set() and set(s.statuses) == {503}
    # Redis answers again: the intake accepts again, and every webhook accepted before the
    # outage (stored, AOF) or after it reaches the backend; none refused during it does.
    # Each gunicorn process recovers on its own (its next write, or its 250 ms poll), so
    # wait for four 202s in a row rather than expect them right after the first.
    wait_until(lambda: all(warm.send_one(f"back{warm.sent}") == 202 for _ in range(4)),
               timeout=30, what="the intake accepting again, four in a row")
    wait_delivered([a], warm.accepted)
    assert not any(marker_of(r).startswith("down") for r in a.received)
    warm.sent += refused.sent + hung.sent
    warm.statuses.update(refused.statuses + hung.statuses)
    check(tally("redis down at intake", warm, {"a": [a]}, started), faults=2)
