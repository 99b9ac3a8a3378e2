"""Issue 17 item 1: a RequestClone's ``spec.delivery`` runs in the engine, across workers,
end to end (operator on route files, gunicorn intake, Celery workers, real backends): a rate
limit holds at the backend while another backend runs unthrottled; ordered delivery keeps
accept order through a failing copy without holding back an unordered backend; a per-route
``maxRetryAge`` dead-letters while the worker's flag is far longer."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hookfan import keys
from hookfan.envelope import StoredRequest
from hookfan.routes import Backend
from tests.engine.backends import Arrival, GaugedBackend
from tests.engine.harness import Engine, readyz
from tests.stackfixtures import send
from tests.support.procs import wait_until


def route(directory: Path, host: str, backend: Any, name: str, delivery: str = "") -> None:
    """A RequestClone file for ``host`` -> ``backend``, with ``delivery`` (YAML flow) if any."""
    extra = f", delivery: {delivery}" if delivery else ""
    path = directory / f"{name}.yaml"
    path.with_suffix(".tmp").write_text(
        "apiVersion: proxy.infra.doodle.com/v1beta1\nkind: RequestClone\n"
        f"metadata: {{name: {name}}}\nspec: {{host: '{host}', backend: {{serviceName: "
        f"127.0.0.1, servicePort: {backend.port}}}{extra}}}\n")
    path.with_suffix(".tmp").rename(path)


def serve(engine: Engine, *routes: tuple[str, Any, str, str]) -> None:
    """Start the intake with a RequestClone file per (host, backend, name, delivery), and wait
    until the operator has published the first one's policy."""
    engine.start_intake()
    for host, backend, name, delivery in routes:
        route(engine.stack.routes_dir, host, backend, name, delivery)
    url = routes[0][1].url.encode()
    wait_until(lambda: url in (engine.r.get(keys.POLICY) or b""), 30, "the policy published")


def load(engine: Engine, url: str, count: int, tag: str) -> None:
    now = time.time()
    engine.store.accept_batch([
        (f"{tag}{i}", StoredRequest("POST", "/", (), b"%d" % i, "10.0.0.1", now,
                                    f"{tag}.example.com"), [Backend(f"default/{tag}", url)])
        for i in range(count)])


def most_in_one_second(arrivals: list[Arrival]) -> int:
    at = sorted(a.at for a in arrivals)
    return max(sum(1 for t in at[i:] if t < start + 1.0) for i, start in enumerate(at))


def test_a_rate_limit_holds_across_two_workers_while_another_backend_runs_free(
        engine: Engine) -> None:
    limited, free = GaugedBackend().start(), GaugedBackend().start()
    try:
        serve(engine, ("limited.example.com", limited, "limited",
                       "{rateLimit: {perSecond: 5, burst: 5}}"),
              ("free.example.com", free, "free", ""))
        for i in range(2):
            engine.worker(f"worker{i}", ready=False)
        for name, port in engine.health.items():
            wait_until(lambda p=port: readyz(p) == 200, 60, f"{name} ready")
        load(engine, limited.url, 200, "limited")
        load(engine, free.url, 400, "free")
        free.gauge.wait_arrivals(400, 60)
        first = limited.gauge.wait_arrivals(1, 30)[0].at
        limited.gauge.wait(lambda g: g.arrivals[-1].at - first >= 20.0, 60, "20 s of arrivals")
        window = [a for a in limited.gauge.arrivals if a.at - first < 20.0]
        freed = free.gauge.arrivals[-1].at - free.gauge.arrivals[0].at
        print(f"{len(window)} attempts in 20 s at the limited backend, at most "
              f"{most_in_one_second(window)} in one second; the free backend took 400 copies "
              f"in {freed:.2f} s")
        assert most_in_one_second(window) <= 5 + 5
        assert len(window) >= 5 * 20 * 0.8  # throttled, not stalled
        assert len(window) <= 5 + 5 * 20
        assert free.gauge.arrivals[-1].at < first + 10.0  # never waited on the other's tokens
    finally:
        limited.stop()
        free.stop()


def test_ordered_copies_arrive_in_accept_order_through_a_failing_copy(engine: Engine) -> None:
    failing: dict[str, int] = {}

    def answer(arrival: Arrival) -> int:
        if arrival.delivery_id == failing.get("id") and arrival.attempt <= 3:
            return 503
        return 200

    ordered, unordered = GaugedBackend(status=answer).start(), GaugedBackend().start()
    try:
        serve(engine, ("ordered.example.com", ordered, "ordered",
                       "{ordered: true, minRetryDelay: 1s, maxRetryDelay: 1s}"),
              ("ordered.example.com", unordered, "unordered", "{ordered: false}"))
        engine.worker("worker")
        # Copy k of a request goes to the k-th of its host's backends, sorted by route:
        # default/ordered, then default/unordered.
        ids: dict[str, list[str]] = {ordered.url: [], unordered.url: []}
        for i in range(200):
            resp = send(engine.stack, "ordered.example.com", b"%d" % i)
            assert resp.status_code == 202
            rid = resp.json()["id"]
            ids[ordered.url].append(f"{rid}-0")
            ids[unordered.url].append(f"{rid}-1")
            if i == 49:
                failing["id"] = ids[ordered.url][-1]
        ordered.gauge.wait(lambda g: len(g.arrivals) >= 203, 120, "203 attempts")
        arrivals = list(ordered.gauge.arrivals)
        seq = [a.delivery_id for a in arrivals]
        expected = ids[ordered.url][:50] + [failing["id"]] * 3 + ids[ordered.url][50:]
        assert seq == expected
        assert [a.attempt for a in arrivals if a.delivery_id == failing["id"]] == [1, 2, 3, 4]
        # The unordered backend beside it took copies accepted after the failing one while
        # that one held the ordered queue.
        blocked_from = arrivals[49].at
        blocked_to = arrivals[52].at
        later = set(ids[unordered.url][50:])
        during = [a for a in unordered.gauge.arrivals
                  if a.delivery_id in later and blocked_from <= a.at < blocked_to]
        print(f"{len(during)} copies reached the unordered backend while the ordered one was "
              f"blocked for {blocked_to - blocked_from:.2f} s")
        assert during
        unordered.gauge.wait(lambda g: len(g.ids()) == 200, 60, "200 unordered copies")
    finally:
        ordered.stop()
        unordered.stop()


def test_a_routes_max_retry_age_dead_letters_while_the_flag_is_far_longer(
        engine: Engine) -> None:
    short, other = GaugedBackend(status=503).start(), GaugedBackend(status=503).start()
    try:
        serve(engine, ("age.example.com", short, "short",
                       "{maxRetryAge: 4s, minRetryDelay: 1s, maxRetryDelay: 1s}"),
              ("age.example.com", other, "other", ""))
        engine.worker("worker", "--max-retry-age", "1h")
        resp = send(engine.stack, "age.example.com", b"ages")
        assert resp.status_code == 202
        accepted = time.monotonic()
        rid = resp.json()["id"]
        dids = [f"{rid}-0", f"{rid}-1"]
        wait_until(lambda: any(engine.r.zscore(keys.DEAD, d) is not None for d in dids), 30,
                   "a dead letter", interval=0.05)
        took = time.monotonic() - accepted
        (dead,) = [d for d in dids if engine.r.zscore(keys.DEAD, d) is not None]
        attempts = [a for a in short.gauge.arrivals if a.delivery_id == dead]
        print(f"dead-lettered after {took:.2f} s and {len(attempts)} attempts")
        assert len(attempts) >= 3  # retried every second for most of the 4 s
        assert 2.5 <= took <= 10.0
        (alive,) = [d for d in dids if d != dead]
        assert engine.r.hexists(keys.copies(other.url), alive)
        other.gauge.wait(lambda g: len(g.arrivals) > len(attempts) + 2, 30, "more retries")
        assert engine.r.zscore(keys.DEAD, alive) is None
    finally:
        short.stop()
        other.stop()
