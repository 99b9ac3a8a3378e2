"""Group commit on a real redis-server with AOF ``appendfsync always``: concurrent accepts of
one process share round trips, and each caller gets its own reply only once its own write is
in Redis."""

from __future__ import annotations

import os
import threading
import time

from hookfan import keys
from hookfan.app.commit import GroupCommit
from hookfan.envelope import StoredRequest
from hookfan.routes import Backend

BACKENDS = (Backend("ns/a", "http://127.0.0.1:9/a"), Backend("ns/b", "http://127.0.0.1:9/b"))


def request() -> StoredRequest:
    return StoredRequest("POST", "/", (("Content-Type", "text/plain"),), b"x" * 512,
                         "10.0.0.1", time.time(), "gc.example.com")


def test_concurrent_accepts_share_round_trips_and_each_sees_its_own_write(store):
    commit = GroupCommit(store.r, store.scripts["accept"])
    threads, each = 16, 40
    seen: list[tuple[str, bool, object]] = []
    gate = threading.Barrier(threads)

    def run() -> None:
        gate.wait()
        for _ in range(each):
            rid = os.urandom(16).hex()
            keys_, args, _ = store.accept_call(rid, request(), BACKENDS)
            reply = commit(keys_, args)
            # answered only after its own write is in Redis
            seen.append((rid, store.r.hget(keys.request(rid), "n") == b"2", reply))

    workers = [threading.Thread(target=run) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(seen) == threads * each
    assert all(stored and reply is None for _, stored, reply in seen)
    assert store.pending_count() == 2 * threads * each
    assert commit.batches < threads * each / 2  # shared: two calls or more per round trip


def test_one_call_alone_goes_at_once(store):
    commit = GroupCommit(store.r, store.scripts["accept"])
    keys_, args, _ = store.accept_call("alone", request(), BACKENDS)
    commit.expect()  # this request's own expectation is met by its call: no lingering
    started = time.monotonic()
    assert commit(keys_, args) is None
    commit.settled()
    assert time.monotonic() - started < 0.5 and commit.batches == 1
