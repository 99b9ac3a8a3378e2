"""The intake's wait for first answers (hookfan.app.answer.Waiter) on a real Redis: records
pushed as the worker pushes them, the cap on concurrent waits, and a Redis that goes away
mid-wait."""

from __future__ import annotations

import threading
from pathlib import Path

import redis

from hookfan import keys
from hookfan.answers import Answer, encode
from hookfan.app.answer import Waiter
from hookfan.store import connect
from tests.support.redisproc import RedisProcess


def push(client: redis.Redis, request_id: str, did: str, answer: Answer) -> None:
    client.rpush(keys.answer(request_id), encode(did, answer))


def test_the_wait_takes_its_copies_answers_in_arrival_order_and_ignores_others(
        redis_url: str) -> None:
    client = connect(redis_url)
    push(client, "r1", "r1-9", Answer(200))  # not a copy this wait is for
    push(client, "r1", "r1-1", Answer(500, (("X-A", "1"),), b"b"))
    push(client, "r1", "r1-0", Answer(201))
    waited = Waiter(client, 1).wait("r1", ["r1-0", "r1-1"], 30.0)
    assert waited.answers == [Answer(500, (("X-A", "1"),), b"b"), Answer(201)]
    assert (waited.missing, waited.failed) == (0, False)
    assert client.exists(keys.answer("r1")) == 0  # cleared when the wait ends


def test_a_copy_that_never_answers_is_missing_at_the_timeout(redis_url: str) -> None:
    client = connect(redis_url)
    push(client, "r2", "r2-0", Answer(200))
    waited = Waiter(client, 1).wait("r2", ["r2-0", "r2-1"], 0.3)
    assert (waited.answers, waited.missing, waited.failed) == ([Answer(200)], 1, False)


def test_an_answer_pushed_while_waiting_ends_the_wait(redis_url: str) -> None:
    client = connect(redis_url)
    pusher = threading.Timer(0.2, push, (client, "r3", "r3-0", Answer(204)))
    pusher.start()
    waited = Waiter(client, 1).wait("r3", ["r3-0"], 30.0)
    assert (waited.answers, waited.missing) == ([Answer(204)], 0)


def test_waits_past_the_cap_are_refused_until_one_leaves() -> None:
    waiter = Waiter(redis.Redis(), 2)  # no command is sent
    assert [waiter.enter(), waiter.enter(), waiter.enter()] == [True, True, False]
    waiter.leave()
    assert waiter.enter()
    assert not Waiter(redis.Redis(), 0).enter()


def test_a_redis_gone_mid_wait_ends_it_with_what_came(tmp_path: Path) -> None:
    proc = RedisProcess(tmp_path).start()
    try:
        client = connect(proc.url)
        push(client, "r4", "r4-0", Answer(200))
        threading.Timer(0.3, proc.kill).start()
        waited = Waiter(client, 1).wait("r4", ["r4-0", "r4-1"], 60.0)
        assert (waited.answers, waited.missing, waited.failed) == ([Answer(200)], 1, True)
    finally:
        proc.stop()
