"""The leader publishes the route table again when Redis lost it (a failover promoted a replica
the last publish never reached), with nothing changed in the API: within its check interval
plus the 2 s of any change. Real operator code against the kmock API server and a real Redis."""

from __future__ import annotations

import time

from hookfan import keys
from hookfan.operator.kubesource import ROUTES_CHECK, Operator
from hookfan.store import Store
from tests.operator.conftest import K8s, RunOperator, eventually, table

HOST = "republish.example.com"


def quiet(op: Operator, for_seconds: float = 0.5) -> None:
    """Wait until the operator has not reconciled for ``for_seconds`` (its writes and the
    watch events they cause are over)."""
    seen = {"syncs": op.stats.syncs, "at": time.monotonic()}

    def still() -> bool:
        if op.stats.syncs != seen["syncs"] or op.dirty.is_set():
            seen.update(syncs=op.stats.syncs, at=time.monotonic())
        return time.monotonic() - seen["at"] >= for_seconds
    eventually(still, "operator quiet", timeout=10.0)


def test_a_table_missing_from_redis_is_published_again(k8s: K8s, run_operator: RunOperator,
                                                       store: Store) -> None:
    k8s.service("app", ip="10.0.0.7")
    k8s.clone("app", HOST, "app")
    op = run_operator()  # resync-period 30s: only the check can bring the table back in time
    want = {HOST: [("apps/app", "http://10.0.0.7:80")]}
    eventually(lambda: table(store) == want, "table published")
    eventually(lambda: bool(k8s.events("app")), "the Event")  # its last write
    quiet(op)
    store.r.delete(keys.ROUTES, keys.ROUTES_VERSION)
    eventually(lambda: table(store) == want, "table published again",
               timeout=ROUTES_CHECK + 2.0)
