"""``hookfan dev``'s Redis: durable and bounded, like the chart's and compose's."""

from __future__ import annotations

from hookfan.devstack import DEV_MAXMEMORY, redis_args


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def test_dev_redis_is_bounded_by_maxmemory_and_never_evicts() -> None:
    args = redis_args(6379, "/data", maxmemory=DEV_MAXMEMORY)
    assert flag(args, "--maxmemory") == "256mb"
    assert flag(args, "--maxmemory-policy") == "noeviction"
    assert flag(args, "--appendfsync") == "always"


def test_test_and_bench_redis_get_no_maxmemory_unless_asked() -> None:
    assert "--maxmemory" not in redis_args(6379, "/data")
