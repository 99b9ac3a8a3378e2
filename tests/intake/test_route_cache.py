"""A route published since the app's last poll is live for the first request that needs it:
a host the loaded table does not route makes the app look at the version once more (real
Redis; the poller is slowed down so that only that look can see the new route)."""

from __future__ import annotations

from hookfan.app.routecache import RouteCache
from hookfan.routes import Backend, build_table
from hookfan.store import Store

OLD = "old.example.com"
NEW = "new.example.com"


def test_a_host_published_since_the_last_poll_is_found_on_its_first_request(store: Store):
    store.publish_routes(build_table([(OLD, Backend("ns/old", "http://127.0.0.1:9/"))], 0))
    cache = RouteCache(store, interval=3600.0)  # the poller will not look again in this test
    try:
        first = cache.table()
        assert first is not None and NEW not in first.routes
        store.publish_routes(build_table([(OLD, Backend("ns/old", "http://127.0.0.1:9/")),
                                          (NEW, Backend("ns/new", "http://127.0.0.1:9/"))], 0))
        stale = cache.table()
        assert stale is not None and NEW not in stale.routes  # the poller has not seen it
        fresh = cache.fresher()
        assert fresh is not None and NEW in fresh.routes
    finally:
        cache.close()
