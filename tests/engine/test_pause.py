"""Issue 17 item 2: a paused backend's copies wait, are not attempted and do not age toward
``--max-retry-age``; ``--auto-pause-after`` pauses a backend that only fails.

Real: Redis, the operator (route files), gunicorn intake, a Celery worker, HTTP backends, the
``hookfan backends`` CLI as a process (the last test runs hookfan's Courier in this process).
"""

from __future__ import annotations

import json
import time
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from hookfan import keys
from hookfan.config import DeliverySettings
from hookfan.devstack import free_port
from hookfan.envelope import StoredRequest
from hookfan.routes import Backend
from hookfan.schedule import Schedule
from hookfan.store import Store
from hookfan.worker.tasks import Courier
from tests.engine.harness import Engine
from tests.stackfixtures import send
from tests.support.backends import RecordingBackend, always, sequence
from tests.support.procs import wait_until

HOST = "paused.example.com"
MAX_AGE = 3.0
FAST_RETRIES = ["--min-retry-delay", "100ms", "--max-retry-delay", "300ms"]


def listed(engine: Engine, url: str) -> dict[str, Any]:
    out = engine.cli("backends", "list", "--output", "json")
    assert out.returncode == 0, out.stderr
    (row,) = [b for b in json.loads(out.stdout) if b["url"] == url]
    return dict(row)


def redis_now(engine: Engine) -> float:
    sec, usec = engine.r.time()
    return float(sec) + usec / 1e6


def test_paused_copies_are_not_attempted_and_outlive_max_retry_age_until_resumed(
        engine: Engine) -> None:
    backend = RecordingBackend().start()
    try:
        engine.start_intake()
        engine.route(HOST, [backend])
        engine.worker("worker", "--max-retry-age", f"{MAX_AGE:g}s", *FAST_RETRIES)
        wait_until(lambda: send(engine.stack, HOST, b"warm-up").status_code == 202, 30,
                   "the route live")
        backend.wait_for(1)
        url = backend.url
        # Right after a delivery its task is likely still lingering on the backend: the pause
        # must stop that task's next claim too, not only the dispatcher.
        paused = engine.cli("backends", "pause", url)
        assert paused.returncode == 0, paused.stderr
        assert paused.stdout.strip() == f"paused {url}"
        for i in range(5):
            assert send(engine.stack, HOST, b'{"n": %d}' % i).status_code == 202
        since = redis_now(engine)
        # Paused for longer than --max-retry-age, by Redis's clock (the engine's clock).
        wait_until(lambda: redis_now(engine) > since + MAX_AGE + 1.5, 30,
                   "paused past the max retry age")
        assert len(backend.received) == 1, "a paused backend was attempted"
        row = listed(engine, url)
        assert row["paused"] is True and row["pause"]["by"] == "cli"
        assert (row["pending"], row["in_flight"]) == (5, 0)
        assert row["oldest_age"] < MAX_AGE, "copies aged while paused"
        assert engine.r.zscore(keys.DUE, url) is None, "a paused backend was left due"

        resumed = engine.cli("backends", "resume", url)
        assert resumed.returncode == 0, resumed.stderr
        assert resumed.stdout.startswith(f"resumed {url} after ")
        wait_until(lambda: listed(engine, url)["pending"] == 0, 30, "nothing pending")
        assert engine.store.dead_ids() == [], "a paused copy aged out"
        backend.wait_for(6)
        assert sorted(r.body for r in backend.received[1:]) == [
            b'{"n": %d}' % i for i in range(5)]
        assert listed(engine, url)["paused"] is False
    finally:
        backend.stop()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_a_backend_failing_for_auto_pause_after_is_paused_and_counted(engine: Engine) -> None:
    backend = RecordingBackend(respond=always(503)).start()
    metrics = free_port()
    try:
        engine.start_intake()
        engine.route(HOST, [backend])
        engine.worker("worker", "--auto-pause-after", "1s", "--metrics-addr",
                      f"127.0.0.1:{metrics}", *FAST_RETRIES)
        wait_until(lambda: send(engine.stack, HOST, b"doomed").status_code == 202, 30,
                   "the route live")
        url = backend.url
        wait_until(lambda: engine.r.hexists(keys.PAUSED, url), 30, "the backend auto-paused")
        row = listed(engine, url)
        assert row["paused"] is True and row["pause"]["by"] == "auto"
        assert "HTTP 503" in row["pause"]["reason"] and row["last_error"] == "HTTP 503"
        assert row["pending"] == 1
        (event,) = [json.loads(e) for e in engine.r.lrange(keys.PAUSE_EVENTS, 0, -1)]
        assert event["url"] == url and event["routes"] == row["routes"]
        wait_until(lambda: scrape(metrics).get(
            ("hookfan_backend_paused_total", (("backend", url),))) == 1, 30,
            "hookfan_backend_paused_total counted")
        # No attempt after the one that paused it (it had already run when the pause was
        # written; at most one more was in flight then).
        attempts = len(backend.received)
        wait_until(lambda: redis_now(engine) > json.loads(
            engine.r.hget(keys.PAUSED, url))["since"] / 1000 + 2, 30, "2 s paused")
        assert len(backend.received) <= attempts + 1
        assert engine.store.dead_ids() == []
    finally:
        backend.stop()


def test_a_backend_that_recovers_before_auto_pause_after_is_not_paused(engine: Engine) -> None:
    # 503 twice, then 200 for everything: its failure clock stops at the delivery.
    backend = RecordingBackend(respond=sequence(503, 503, 200)).start()
    try:
        engine.start_intake()
        engine.route(HOST, [backend])
        engine.worker("worker", "--auto-pause-after", "2s", *FAST_RETRIES)
        wait_until(lambda: send(engine.stack, HOST, b"first").status_code == 202, 30,
                   "the route live")
        backend.wait_for(3)
        wait_until(lambda: not engine.r.hexists(keys.FAILING, backend.url), 30,
                   "the failure clock stopped by the delivery")
        assert not engine.r.hexists(keys.PAUSED, backend.url)
    finally:
        backend.stop()


def test_a_pause_stops_a_task_in_the_middle_of_its_batch(engine: Engine) -> None:
    # Each answer takes 0.3 s and one sender runs at a time: the task claims 20 copies in one
    # batch and would take 6 s to send them all.
    backend = RecordingBackend(answer_after=0.3).start()
    try:
        engine.start_intake()
        engine.route(HOST, [backend])
        engine.worker("worker", "--backend-concurrency", "1")
        wait_until(lambda: send(engine.stack, HOST, b"warm-up").status_code == 202, 30,
                   "the route live")
        backend.wait_for(1)
        for i in range(20):
            assert send(engine.stack, HOST, b'{"n": %d}' % i).status_code == 202
        backend.wait_for(4)
        assert engine.store.r.zcard(keys.inflight(backend.url)) > 3, "not one batch"
        paused = engine.cli("backends", "pause", backend.url)
        assert paused.returncode == 0, paused.stderr
        at_pause = len(backend.received)
        wait_until(lambda: engine.r.zcard(keys.inflight(backend.url)) == 0, 30,
                   "the batch handed back")
        # The task looks at the pause once a second while it sends: at most that second's
        # attempts (4 of 0.3 s) and the one in flight follow the pause.
        assert len(backend.received) <= at_pause + 5
        assert listed(engine, backend.url)["pending"] == 21 - len(backend.received)
        engine.cli("backends", "resume", backend.url)
        backend.wait_for(21)
    finally:
        backend.stop()


def test_the_failure_clock_stops_once_nothing_is_pending(store: Store, make_backend) -> None:
    # A copy dead-lettered (HTTP 400) leaves nothing pending: a failure hours later must not
    # find the clock still running and pause the backend at once. The Courier runs here.
    backend: RecordingBackend = make_backend(respond=always(400))
    settings = DeliverySettings(auto_pause_after=3600.0)
    courier = Courier(Schedule(store.r, settings), settings)
    req = StoredRequest("POST", "/", (), b"x", "10.0.0.1", time.time(), HOST)
    store.accept("rejected", req, [Backend("ns/failing", backend.url)])
    courier.run(backend.url)
    assert len(backend.received) == 1 and store.dead_ids() == ["rejected-0"]
    assert not store.r.hexists(keys.FAILING, backend.url)
    assert not store.r.hexists(keys.PAUSED, backend.url)
