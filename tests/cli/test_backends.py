"""``hookfan backends list|pause|resume`` as a process against a real Redis: what each prints,
and the errors that name the fix. No worker runs, so what is stored stays as the test put it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from typing import Any

from hookfan import backends, keys
from hookfan.config import DeliverySettings
from hookfan.envelope import StoredRequest
from hookfan.routes import Backend, RouteTable
from hookfan.store import Store, connect

A, B = "http://10.0.0.7:8080", "http://10.0.0.8:80"


def hookfan(redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hookfan.cli", *args, "--redis-url", redis_url],
                          capture_output=True, text=True, timeout=30)


def stored(redis_url: str) -> Store:
    """Routes apps/a -> A and apps/b -> B on one host, 3 requests (a copy for each), one of
    A's copies in flight, a last error for A, and a worker's flags."""
    store = Store(connect(redis_url))
    store.publish_routes(RouteTable(routes={"h.example.com": (
        Backend("apps/a", A), Backend("apps/b", B))}))
    for i in range(3):
        req = StoredRequest("POST", "/", (), b"%d" % i, "10.0.0.1", 0.0, "h.example.com")
        store.accept(f"r{i}", req, [Backend("apps/a", A), Backend("apps/b", B)])
    store.r.zadd(keys.inflight(A), {"r0-0": 1})
    store.r.hset(keys.STATS, keys.stat_field("last_error", "apps/a", A), "HTTP 503")
    backends.publish_worker_policy(store.r, DeliverySettings(max_retry_age=3600))
    return store


def listing(redis_url: str) -> dict[str, dict[str, Any]]:
    out = hookfan(redis_url, "backends", "list", "--output", "json")
    assert out.returncode == 0, out.stderr
    return {b["url"]: b for b in json.loads(out.stdout)}


def test_list_shows_routes_policy_counts_age_pause_and_last_error(redis_url: str) -> None:
    stored(redis_url)
    rows = listing(redis_url)
    a = rows[A]
    assert a["routes"] == ["apps/a"] and rows[B]["routes"] == ["apps/b"]
    assert (a["pending"], a["in_flight"]) == (3, 1)
    assert 0 <= a["oldest_age"] < 60
    assert a["paused"] is False and a["pause"] is None
    assert a["last_error"] == "HTTP 503" and rows[B]["last_error"] is None
    assert a["policy"]["maxRetryAge"] == 3600 and a["policy"]["concurrency"] == 4
    table = hookfan(redis_url, "backends", "list")
    assert table.returncode == 0, table.stderr
    header, _, first, second = table.stdout.splitlines()[:4]
    assert header.split()[:5] == ["BACKEND", "ROUTES", "POLICY", "IN", "FLIGHT"]
    assert first.split()[:2] == [A, "apps/a"] and "maxAge=1h" in first
    assert first.split()[-3:] == ["no", "HTTP", "503"]
    assert second.split()[:2] == [B, "apps/b"] and second.split()[-1] == "-"


def test_pause_and_resume_by_url_and_by_route(redis_url: str) -> None:
    stored(redis_url)
    out = hookfan(redis_url, "backends", "pause", A)
    assert (out.returncode, out.stdout) == (0, f"paused {A}\n")
    again = hookfan(redis_url, "backends", "pause", A)
    assert (again.returncode, again.stdout) == (0, f"{A} was already paused\n")
    rows = listing(redis_url)
    assert rows[A]["paused"] is True and rows[A]["pause"]["by"] == "cli"
    assert rows[B]["paused"] is False
    assert "yes (cli, since " in hookfan(redis_url, "backends", "list").stdout

    by_route = hookfan(redis_url, "backends", "pause", "--route", "apps/b")
    assert (by_route.returncode, by_route.stdout) == (0, f"paused {B}\n")
    resumed = hookfan(redis_url, "backends", "resume", "--route", "apps/a")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.startswith(f"resumed {A} after ")
    assert resumed.stdout.rstrip().endswith("3 pending copies keep the retry age they had")
    rows = listing(redis_url)
    assert (rows[A]["paused"], rows[B]["paused"]) == (False, True)
    not_paused = hookfan(redis_url, "backends", "resume", A)
    assert (not_paused.returncode, not_paused.stdout) == (0, f"{A} was not paused\n")


def test_unknown_url_or_route_is_an_error_naming_the_fix(redis_url: str) -> None:
    store = stored(redis_url)
    url = hookfan(redis_url, "backends", "pause", "http://10.0.0.9:80")
    assert url.returncode == 1 and url.stdout == ""
    assert "no backend 'http://10.0.0.9:80'" in url.stderr
    assert "exactly as `hookfan backends list` shows it" in url.stderr
    route = hookfan(redis_url, "backends", "resume", "--route", "apps/nope")
    assert route.returncode == 1
    assert "no backend for route 'apps/nope'" in route.stderr
    assert "NAMESPACE/NAME" in route.stderr
    both = hookfan(redis_url, "backends", "pause", A, "--route", "apps/a")
    neither = hookfan(redis_url, "backends", "pause")
    for out in (both, neither):
        assert out.returncode == 2
        assert "give a backend URL or --route NAMESPACE/NAME" in out.stderr
    assert store.r.hlen(keys.PAUSED) == 0


def paused_for_10s(redis_url: str, copies: Callable[[int], dict[str, str]]
                   ) -> tuple[Store, backends.Backends, int]:
    """A's copies replaced by ``copies(now ms)``, A paused since 10 s ago by Redis's clock."""
    store = stored(redis_url)
    b = backends.Backends(store.r)
    now_ms = int(b.now() * 1000)
    store.r.hset(keys.PAUSED, A, json.dumps({"since": now_ms - 10_000, "by": "cli"}))
    store.r.delete(keys.copies(A))
    store.r.hset(keys.copies(A), mapping=copies(now_ms))
    return store, b, now_ms


def test_resume_moves_each_copys_age_start_by_its_time_paused(redis_url: str) -> None:
    # Hand-made state: paused 10 s ago; one copy accepted 60 s ago, one 4 s ago (during the
    # pause), one accepted "in the future" (a clock step) that must not move.
    store, b, now_ms = paused_for_10s(redis_url, lambda now: {
        "old-0": f"1 1 {now - 60_000} apps/a", "new-0": f"0 0 {now - 4_000} apps/a",
        "future-0": f"0 0 {now + 60_000} apps/a"})
    assert b.resume(A) is not None
    ages = {k.decode(): int(v.split()[2]) for k, v in store.r.hgetall(keys.copies(A)).items()}
    # old: the 50 s it had aged when paused; new: its age starts at resume.
    assert abs((now_ms - ages["old-0"]) - 50_000) < 2_000
    assert abs(ages["new-0"] - now_ms) < 2_000
    assert ages["future-0"] == now_ms + 60_000
    assert store.r.zscore(keys.DUE, A) is not None, "resume did not make the backend due"


def test_a_resume_in_chunks_moves_each_copy_once_even_when_interrupted(redis_url: str) -> None:
    store, b, now_ms = paused_for_10s(redis_url, lambda now: {
        f"c{i}-0": f"0 0 {now - 60_000} apps/a" for i in range(2500)})
    # One call of the script, as a resume that died after its first chunk leaves it.
    first = b.scripts["resume"](
        keys=[keys.PAUSED, keys.copies(A), keys.ready(A), keys.DUE, keys.FAILING, keys.OWNED,
              keys.resuming(A)], args=[A, 1000])
    assert first[2] == 0 and 1000 <= first[0] < 2500
    assert b.paused().keys() == {A}, "resumed before every copy was moved"
    out = hookfan(redis_url, "backends", "resume", A)
    assert out.returncode == 0, out.stderr
    assert f"{2500 - first[0]} pending copies" in out.stdout
    starts = [int(v.split()[2]) for v in store.r.hvals(keys.copies(A))]
    assert len(starts) == 2500 and not store.r.exists(keys.resuming(A))
    # Each moved by the 10 s paused, once: aged 50 s, not 40 s.
    assert all(abs((now_ms - s) - 50_000) < 2_000 for s in starts)
    assert b.paused() == {}
