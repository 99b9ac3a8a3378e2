"""Bodies are stored once and deleted when their last copy ends; dead letters keep theirs."""

import redis

from tests.stackfixtures import send
from tests.support.backends import sequence
from tests.support.ledger import request_stored
from tests.support.procs import wait_until


def test_no_body_left_after_deliveries_except_dead_letters(stack, routed, make_backend):
    ok, dead = make_backend(), make_backend(respond=sequence(400))
    routed("cleanup.example.com", [ok, dead])
    routed("cleanup-ok.example.com", [ok])
    kept = {send(stack, "cleanup.example.com", f"c{i}".encode()).json()["id"] for i in range(5)}
    gone = {send(stack, "cleanup-ok.example.com", f"o{i}".encode()).json()["id"]
            for i in range(5)}
    ok.wait_for(10)
    dead.wait_for(5)
    r = redis.Redis.from_url(stack.redis_url)

    def dead_requests() -> set[str]:
        return {d.decode().rsplit("-", 1)[0] for d in r.zrange("hookfan:dead", 0, -1)}
    wait_until(lambda: kept <= dead_requests(), what="dead letters recorded")
    wait_until(lambda: not any(request_stored(r, rid) for rid in gone),
               what="bodies of delivered requests deleted")
    wait_until(lambda: all(r.hget(f"hookfan:req:{rid}", "n") == b"1" for rid in kept),
               what="delivered copies released their reference")
    for rid in kept:
        assert request_stored(r, rid)
    stored = {k.decode().rsplit(":", 1)[1] for k in r.scan_iter("hookfan:req:*", _type="hash")}
    assert stored <= dead_requests()
