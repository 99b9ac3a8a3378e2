"""A route published since the app's last poll is live for the first request that needs it:
a host the loaded table does not route makes the app look at the version once more (real
Redis; the poller is slowed down so that only that look can see the new route)."""

from __future__ import annotations

import os
import signal
import time

from hookfan.app import LOOKUP_TIMEOUT
from hookfan.app.routecache import RouteCache
from hookfan.routes import Backend, build_table
from hookfan.store import Store, connect
from tests.support.redisproc import RedisProcess

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


class Looks(Store):
    """A store that counts its looks at the route table's version."""

    looks = 0

    def routes_version(self) -> int | None:
        self.looks += 1
        return super().routes_version()


def test_a_process_without_a_table_asks_a_hung_redis_once_on_the_quick_client(tmp_path):
    """A gunicorn process that has not loaded the table when Redis hangs (connects, never
    answers) answers its first request within the 2 s a 503 is due in: one look, on the
    short-timeout client (it took 3 s: a look on the 1.5 s client, then a second one)."""
    server = RedisProcess(tmp_path / "hung").start()
    store = Looks(connect(server.url))  # 1.5 s timeouts
    quick = Looks(connect(server.url, LOOKUP_TIMEOUT))
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    cache = RouteCache(store, interval=3600.0, quick=quick)
    try:
        started = time.monotonic()
        table = cache.table()
        if table is None:  # what the intake does next for a host it cannot route
            table = cache.fresher()
        elapsed = time.monotonic() - started
        assert table is None
        assert (store.looks, quick.looks) == (0, 1)
        assert elapsed < 1.0, elapsed  # one look on the quick client: 0.4 s
    finally:
        cache.close()
        os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()
