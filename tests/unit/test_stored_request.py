"""The request hash's layout in a real Redis: what is stored comes back byte for byte, requests
stored in the layout before ``r`` still read, and bodies cost Redis little more than their size."""

from __future__ import annotations

import json

import pytest
import redis

from hookfan.envelope import StoredRequest, body_pieces, request_meta

HEADERS = (("Host", "h.example"), ("X-Sig", "sha256=ab"), ("X-Latin", "caf\xe9 \xff"),
           ("X-Sig", "second"))


def stored(r: redis.Redis, key: str, req: StoredRequest) -> StoredRequest:
    r.delete(key)
    r.hset(key, mapping={**req.to_fields(), "n": 1})
    return StoredRequest.from_fields(r.hgetall(key))


@pytest.mark.parametrize("size", [0, 1, 63, 64, 1024, 5000, 65_536, 102_400, 3_000_001])
def test_every_body_size_comes_back_byte_for_byte(redis_client, size):
    body = bytes(range(256)) * (size // 256) + b"\r\n\0"[: size % 256] + bytes(
        max(0, size % 256 - 3))
    assert len(body) == size
    req = StoredRequest("POST", "/p?q=%2F&x=\xe9", HEADERS, body, "10.0.0.9", 1764500000.125,
                        "h.example", "00-abc-def-01")
    assert stored(redis_client, "hookfan:req:t1", req) == req
    assert sum(body_pieces(size)) == size
    meta = request_meta(redis_client.hget("hookfan:req:t1", "r"))
    assert meta is not None and (meta.size, meta.trace, meta.uri) == (size, req.trace, req.uri)


def test_a_request_stored_before_the_r_field_still_reads(redis_client):
    redis_client.delete("hookfan:req:old")
    redis_client.hset("hookfan:req:old", mapping={
        "m": "PUT", "u": "/old", "h": json.dumps([["A", "1"], ["A", "2"]]), "b": b"\x00old",
        "ip": "10.1.1.1", "t": "12.5", "host": "o.example", "tp": "00-t-s-01", "n": 1})
    got = StoredRequest.from_fields(redis_client.hgetall("hookfan:req:old"))
    assert got == StoredRequest("PUT", "/old", (("A", "1"), ("A", "2")), b"\x00old",
                                "10.1.1.1", 12.5, "o.example", "00-t-s-01")
    assert request_meta(redis_client.hget("hookfan:req:old", "r")) is None


@pytest.mark.parametrize("size", [1024, 102_400])
def test_a_body_costs_redis_little_more_than_its_size(redis_client, size):
    """Measured by Redis itself (MEMORY USAGE, every field): the hash holding the request
    stays within 600 bytes of the body; stored as one field, the body alone wastes 250 bytes
    (1 KiB) and 12 KiB (100 KiB) to the allocator's rounding."""
    req = StoredRequest("POST", "/", (("Host", "h.example"),), b"x" * size, "10.0.0.9", 1.0,
                        "h.example")
    stored(redis_client, "hookfan:req:mem", req)
    usage = redis_client.memory_usage("hookfan:req:mem", samples=0)
    assert usage - size <= 600, (usage, size)
    whole = {**req.to_fields(), "n": 1}
    for name in [n for n in whole if n.startswith("b") and n != "b"]:
        del whole[name]
    whole["b"] = req.body
    redis_client.delete("hookfan:req:whole")
    redis_client.hset("hookfan:req:whole", mapping=whole)
    assert redis_client.memory_usage("hookfan:req:whole", samples=0) - usage >= 150
