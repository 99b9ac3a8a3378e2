"""App and worker read Redis's appendonly, appendfsync and maxmemory-policy at start and every
minute: settings that break "202 means durable" stop the intake (503, not ready) unless
``--allow-unsafe-redis``; a Redis that refuses CONFIG GET is served with a warning."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import requests

from hookfan.devstack import free_port, redis_args
from hookfan.durability import REQUIRED, DurabilityCheck, unsafe_settings
from tests.durability.conftest import HOST, UNSAFE
from tests.stackfixtures import raw_send
from tests.support.procs import HookfanProcess, port_open, wait_until
from tests.support.redisproc import RedisProcess


def test_each_unsafe_setting_is_named_with_its_fix():
    assert unsafe_settings(REQUIRED) == []
    for name, (_, value) in UNSAFE.items():
        (found,) = unsafe_settings({**REQUIRED, name: value})
        assert (found.name, found.value) == (name, value)
        assert f"CONFIG SET {name} {REQUIRED[name]}" in found.fix
        assert f"redis.conf: {name} {REQUIRED[name]}" in found.fix
    assert [u.name for u in unsafe_settings({})] == list(REQUIRED)


def test_the_dev_stack_redis_is_durable():
    args = redis_args(6379, "/data")
    given = {a[2:]: args[i + 1] for i, a in enumerate(args) if a.startswith("--")}
    assert unsafe_settings(given) == []


def test_a_setting_changed_at_runtime_is_seen_at_the_next_reading(start_redis):
    redis = start_redis([])
    check = DurabilityCheck(redis.client(), allow_unsafe=False, process="app", interval=0.05)
    check.start()
    try:
        assert not check.refusing
        redis.client().config_set("appendfsync", "everysec")
        wait_until(lambda: check.refusing, what="unsafe setting seen")
        redis.client().config_set("appendfsync", "always")
        wait_until(lambda: not check.refusing, what="fixed setting seen")
    finally:
        check.stop()


def test_a_redis_not_answering_at_start_is_read_again_until_it_does(tmp_path):
    later = RedisProcess(tmp_path / "later", extra=UNSAFE["appendonly"])
    check = DurabilityCheck(later.client(), allow_unsafe=False, process="app").start()
    try:
        assert not check.known and not check.refusing  # it cannot store a request either
        later.start()
        wait_until(lambda: check.refusing, timeout=5, what="the first reading, retried")
    finally:
        check.stop()
        later.stop()


def start_app(redis_url: str, tmp_path: Path, *args: str,
              env: dict[str, str] | None = None) -> tuple[HookfanProcess, int, int]:
    port, health = free_port(), free_port()
    app = HookfanProcess(["app", "--redis-url", redis_url, "--http-addr", f"127.0.0.1:{port}",
                          "--health-addr", f"127.0.0.1:{health}", "--workers", "1", *args],
                         tmp_path, "app", env).start()
    wait_until(lambda: port_open(port) and port_open(health), what="app listening")
    return app, port, health


def readyz(port: int) -> int:
    return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code


def records(proc: HookfanProcess) -> list[dict[str, object]]:
    return [json.loads(line) for line in proc.log().splitlines() if line.startswith("{")]


@pytest.mark.parametrize("setting", list(UNSAFE))
def test_app_refuses_webhooks_on_an_unsafe_redis(start_redis, tmp_path, setting):
    redis = start_redis(UNSAFE[setting])
    app, port, health = start_app(redis.url, tmp_path)
    try:
        resp = raw_send(f"http://127.0.0.1:{port}", HOST)
        assert resp.status_code == 503 and resp.headers["Retry-After"]
        assert "durable" in resp.json()["error"]
        assert readyz(health) == 503
        assert redis.client().keys("hookfan:req:*") == []
        line = next(r for r in records(app) if r.get("setting") == setting)
        assert line["level"] == "error"
        assert f"CONFIG SET {setting} {REQUIRED[setting]}" in str(line["msg"])
    finally:
        app.stop()


def test_allow_unsafe_redis_serves_with_a_warning(start_redis, tmp_path):
    redis = start_redis(UNSAFE["appendfsync"])
    app, port, health = start_app(redis.url, tmp_path, "--allow-unsafe-redis", "true")
    try:
        assert raw_send(f"http://127.0.0.1:{port}", HOST).status_code == 202
        assert readyz(health) == 200
        line = next(r for r in records(app) if r.get("setting") == "appendfsync")
        assert line["level"] == "warning" and "--allow-unsafe-redis" in str(line["msg"])
    finally:
        app.stop()


def test_a_redis_that_forbids_config_is_served_with_a_warning(start_redis, tmp_path):
    redis = start_redis(["--rename-command", "CONFIG", ""])
    app, port, health = start_app(redis.url, tmp_path)
    try:
        assert raw_send(f"http://127.0.0.1:{port}", HOST).status_code == 202
        assert readyz(health) == 200
        line = next(r for r in records(app) if "cannot check Redis" in str(r["msg"]))
        assert line["level"] == "warning"
        for name, value in REQUIRED.items():
            assert f"{name} {value}" in str(line["msg"])
    finally:
        app.stop()


@pytest.mark.parametrize("allowed", [False, True])
def test_worker_is_not_ready_on_an_unsafe_redis(start_redis, tmp_path, allowed):
    redis = start_redis(UNSAFE["maxmemory-policy"])
    health = free_port()
    env = {"HOOKFAN_ALLOW_UNSAFE_REDIS": "true"} if allowed else {}
    worker = HookfanProcess(["worker", "--redis-url", redis.url, "--concurrency", "1",
                             "--health-addr", f"127.0.0.1:{health}"], tmp_path, "worker",
                            env).start()
    try:
        wait_until(lambda: any(r.get("setting") == "maxmemory-policy"
                               for r in records(worker)), timeout=30, what="setting logged")
        wait_until(lambda: port_open(health), timeout=30, what="worker health listening")
        if allowed:
            wait_until(lambda: readyz(health) == 200, timeout=30, what="worker ready")
        else:
            # Celery logs "<hostname> ready." right after its worker_ready signal, which
            # readiness waits for: from here only the Redis settings keep the worker unready.
            wait_until(lambda: any(r["logger"] == "celery.apps.worker"
                                   and str(r["msg"]).endswith(" ready.")
                                   for r in records(worker)), timeout=30, what="consuming")
            assert readyz(health) == 503
            line = next(r for r in records(worker) if r.get("setting") == "maxmemory-policy")
            assert line["level"] == "error" and "not ready" in str(line["msg"])
            assert "CONFIG SET maxmemory-policy noeviction" in str(line["msg"])
    finally:
        worker.stop()
