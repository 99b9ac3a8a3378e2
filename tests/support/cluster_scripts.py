"""Run every Lua script of hookfan through its own code path on a Redis Cluster, as a child
process (``python -m tests.support.cluster_scripts PORT``): :mod:`hookfan.keys` reads
``HOOKFAN_KEY_PREFIX`` once at import, so the prefix under test is set in this process's
environment. Prints one JSON object: script name -> "ok" or the error it raised."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from hookfan import keys
from hookfan.backends import Backends
from hookfan.config import DeliverySettings
from hookfan.deadletters import Selection
from hookfan.envelope import StoredRequest
from hookfan.routes import Backend
from hookfan.schedule import Result, Schedule
from hookfan.store import Store

A, B = "http://a.example:80", "http://b.example:80"


def main(port: int) -> dict[str, str]:
    client = RedisCluster(host="127.0.0.1", port=port)
    store, schedule = Store(client), Schedule(client, DeliverySettings())
    results: dict[str, str] = {}
    state: dict[str, Any] = {}

    def run(name: str, step: Callable[[], Any]) -> None:
        try:
            state[name] = step()
            results[name] = "ok"
        except (redis.RedisError, RedisClusterException) as exc:
            results[name] = f"{type(exc).__name__}: {exc}"

    req = StoredRequest(method="POST", uri="/hook", headers=(("Host", "h.example"),),
                        body=b"{}", client="127.0.0.1", accepted=time.time(),
                        host="h.example", trace="", trusted=False)
    rid = "0123456789abcdef0123456789abcdef"
    run("accept", lambda: store.accept(rid, req, [Backend("ns/a", A), Backend("ns/b", B)]))
    run("resolve", lambda: store.resolve("f" * 32, None))
    run("dispatch", lambda: schedule.dispatch())
    run("settle", lambda: schedule.settle(A, "t1", 0, [], want=8))
    claimed = state.get("settle").copies if "settle" in state else []
    run("settle (outcome: dead letter)", lambda: schedule.settle(
        A, "t1", 1, [Result(c, "x", reason="HTTP 404") for c in claimed], want=0))
    run("dlpage", lambda: list(store.dead.select(Selection())))
    dead = state.get("dlpage") or []
    run("dlcount", lambda: store.dead.count_in(dead))
    run("replay", lambda: store.dead.replay(dead))
    run("settle (replayed copy)", lambda: schedule.settle(A, "t2", 0, [], want=8))
    again = state["settle (replayed copy)"].copies if "settle (replayed copy)" in state else []
    run("settle (outcome: dead letter again)", lambda: schedule.settle(
        A, "t2", 1, [Result(c, "x", reason="HTTP 404") for c in again], want=0))
    run("purge", lambda: store.dead.purge(list(store.dead.select(Selection()))))
    backends = Backends(client)
    run("pause", lambda: backends.pause(B, reason="cluster test"))
    run("resume", lambda: backends.resume(B))
    results["copies dead-lettered, replayed, purged"] = str(
        (len(claimed), len(dead), len(again)))
    results["slots"] = str(sorted({client.keyslot(k) for k in client.scan_iter(
        match=keys.PREFIX + "*")}))
    return results


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]))))
