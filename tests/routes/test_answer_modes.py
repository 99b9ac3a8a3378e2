"""The Receiver answer modes, end to end: real Redis, operator (file source), gunicorn app,
Celery worker and HTTP backends. Every request is stored first; an AwaitAll request then waits
up to its Receiver's timeout for the first attempt of each target and answers as its mode says;
a target that gave no answer in time counts as 504, and its copy is still delivered later.

The app runs one process that lets one request wait at a time (``--max-answer-waits 1``), and
the worker bounds attempts at 6 s: a backend holding its first answer 8 s misses the
Receiver's 3 s timeout, and its copy is delivered by the retry. The app's read timeout (2 s) is
shorter than the waits: a wait is not cut by it.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator

import pytest
import requests

from hookfan.answers import PREFER_FAILED, PREFER_SUCCESSFUL, REPORT
from hookfan.devstack import free_port
from hookfan.envelope import REQUEST_HEADER
from tests.routes.test_receivers_end_to_end import receiver
from tests.stackfixtures import raw_send, send
from tests.support.backends import RecordingBackend, sequence
from tests.support.procs import Stack, port_open, wait_until
from tests.support.redisproc import RedisProcess

TIMEOUT = "3s"
METRICS = free_port()
JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def stack(module_redis: RedisProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(module_redis.url, tmp_path_factory.mktemp("routes"), tmp_path_factory.mktemp("logs"),
              worker_args=["--delivery-timeout", "6s"],
              app_args=["--workers", "1", "--max-answer-waits", "1", "--proxy-read-timeout", "2s",
                        "--metrics-addr", f"127.0.0.1:{METRICS}"])
    s.start()
    yield s
    s.stop()


def ok(make_backend) -> RecordingBackend:  # type: ignore[no-untyped-def]
    return make_backend(respond=lambda _r, _n: (200, {**JSON, "X-Answer": "ok",
                                                      "Keep-Alive": "timeout=5"}),
                        answer_body=b'{"text":"ok"}')


def failing(make_backend) -> RecordingBackend:  # type: ignore[no-untyped-def]
    """500 to the first attempt, 200 to the retry (so its copy drains)."""
    seq = sequence(500, 200)
    return make_backend(respond=lambda r, n: (seq(r, n)[0], {"X-Answer": "failed"}),
                        answer_body=b"backend broke")


def slow(make_backend) -> RecordingBackend:  # type: ignore[no-untyped-def]
    """Holds its first answer past the worker's attempt bound; answers the retry at once."""
    return make_backend(held=lambda n: 8.0 if n == 0 else 0.0, answer_body=b"late")


def ask(stack: Stack, name: str, targets: list[tuple[str | None, RecordingBackend]], mode: str,
        body: bytes = b"{}", timeout: str = TIMEOUT, **kw: object) -> requests.Response:
    """Write an AwaitAll Receiver and send it a webhook."""
    path = receiver(stack, name, targets, responseType=mode, timeout=timeout)
    return send(stack, "hooks.example.com", body, path=path, timeout=30, **kw)


def late_copy_delivered(backend: RecordingBackend, request_id: str) -> None:
    """The slow target's copy arrives again (same delivery id) and is delivered: the retry."""
    got = backend.wait_for(2, timeout=60)
    assert {r.header("X-Hookfan-Request") for r in got} == {request_id}
    assert len({r.delivery_id for r in got}) == 1


def test_prefer_successful_answers_with_the_2xx_answer_and_delivers_the_slow_copy_later(
        stack, make_backend):
    good, bad, late = ok(make_backend), failing(make_backend), slow(make_backend)
    resp = ask(stack, "succ", [(None, bad), (None, good), (None, late)], PREFER_SUCCESSFUL)
    assert resp.status_code == 200, resp.content
    assert resp.content == b'{"text":"ok"}'
    assert resp.headers["Content-Type"] == "application/json"
    assert resp.headers["X-Answer"] == "ok"
    assert "Keep-Alive" not in resp.headers  # hop-by-hop: not passed on
    late_copy_delivered(late, resp.headers[REQUEST_HEADER])
    bad.wait_for(2)  # the failed copy is retried and delivered too


def test_prefer_successful_without_a_2xx_answers_with_a_failed_one(stack, make_backend):
    bad = failing(make_backend)
    resp = ask(stack, "succ-none", [(None, bad)], PREFER_SUCCESSFUL)
    assert (resp.status_code, resp.content) == (500, b"backend broke")
    assert resp.headers["X-Answer"] == "failed"
    bad.wait_for(2)


def test_prefer_failed_answers_with_the_failed_answer(stack, make_backend):
    good, bad, late = ok(make_backend), failing(make_backend), slow(make_backend)
    resp = ask(stack, "fail", [(None, good), (None, bad), (None, late)], PREFER_FAILED)
    # The 500 came before the slow target's 504 (at the timeout): the first failure wins.
    assert (resp.status_code, resp.content) == (500, b"backend broke")
    late_copy_delivered(late, resp.headers[REQUEST_HEADER])


def test_prefer_failed_with_every_target_successful_answers_2xx(stack, make_backend):
    good = ok(make_backend)
    resp = ask(stack, "fail-none", [(None, good)], PREFER_FAILED)
    assert (resp.status_code, resp.content) == (200, b'{"text":"ok"}')


def test_the_answer_comes_as_soon_as_every_target_answered(stack, make_backend):
    one, two = ok(make_backend), ok(make_backend)
    # Far past the sender's own 30 s: only an early answer gets back to it.
    resp = ask(stack, "early", [(None, one), (None, two)], REPORT, timeout="300s")
    assert [t["statusCode"] for t in resp.json()["targets"]] == [200, 200]


def test_a_target_silent_past_the_timeout_counts_as_504(stack, make_backend):
    late = slow(make_backend)
    resp = ask(stack, "silent", [(None, late)], PREFER_SUCCESSFUL)
    assert (resp.status_code, resp.content) == (504, b"")
    late_copy_delivered(late, resp.headers[REQUEST_HEADER])


def test_report_lists_each_targets_status_code(stack, make_backend):
    good, bad, late = ok(make_backend), failing(make_backend), slow(make_backend)
    resp = ask(stack, "report", [(None, good), (None, bad), (None, late)], REPORT)
    assert resp.status_code == 200, resp.content
    assert resp.headers["Content-Type"] == "application/json"
    targets = resp.json()["targets"]
    # Arrival order, as the Go version; the target that missed the timeout comes last.
    assert sorted(t["statusCode"] for t in targets) == [200, 500, 504]
    assert targets[-1] == {"statusCode": 504}
    (good_one,) = [t for t in targets if t["statusCode"] == 200]
    assert good_one["body"] == '{"text":"ok"}'
    assert good_one["headers"]["X-Answer"] == ["ok"]
    assert "Keep-Alive" not in good_one["headers"]
    late_copy_delivered(late, resp.headers[REQUEST_HEADER])


def test_a_slack_slash_command_gets_its_backends_answer(stack, make_backend):
    bot = make_backend(respond=lambda _r, _n: (200, {"Content-Type": "application/json"}),
                       answer_body=b'{"response_type":"in_channel","text":"Deployed."}')
    form = b"token=x&team_id=T1&command=%2Fdeploy&text=api+prod&response_url=https%3A%2F%2Fh"
    resp = ask(stack, "slack", [("/slack/commands", bot)], PREFER_SUCCESSFUL, form,
               headers=[("Content-Type", "application/x-www-form-urlencoded"),
                        ("X-Slack-Signature", "v0=abc")])
    assert resp.status_code == 200
    assert resp.headers["Content-Type"] == "application/json"
    assert json.loads(resp.content) == {"response_type": "in_channel", "text": "Deployed."}
    (got,) = bot.wait_for(1)
    assert (got.path, got.body) == ("/slack/commands", form)
    assert got.header("Content-Type") == "application/x-www-form-urlencoded"


def test_an_answer_body_over_1_mib_is_not_relayed(stack, make_backend):
    big = make_backend(answer_body=b"x" * ((1 << 20) + 1))
    resp = ask(stack, "big", [(None, big)], PREFER_SUCCESSFUL)
    assert (resp.status_code, resp.content) == (502, b"")
    assert len(big.wait_for(1)) == 1  # delivered once: the copy itself succeeded


def test_async_copies_leave_no_answer_record(stack, make_backend):
    a = make_backend()
    path = receiver(stack, "async", [(None, a)])
    resp = send(stack, "x.example.com", b"{}", path=path)
    assert resp.status_code == 202
    (got,) = a.wait_for(1)
    request_id = resp.headers[REQUEST_HEADER]
    # The worker would push an answer record right after the attempt, before recording it
    # (kept at least 1 s): look as soon as the request is settled (its hash gone).
    wait_until(lambda: stack.client.type(f"hookfan:req:{request_id}") != b"hash",
               what="the copy settled as delivered", interval=0.005)
    assert stack.client.exists(f"hookfan:answer:{request_id}") == 0


def test_beyond_max_answer_waits_a_request_gets_503_and_nothing_is_stored(stack, make_backend):
    held = make_backend(held=lambda n: 4.0 if n == 1 else 0.0)
    path = receiver(stack, "cap", [(None, held)], responseType="AwaitAllReport",
                    timeout="2s")
    send(stack, "x.example.com", b"{}", path=path, timeout=30)  # the route is live
    first: list[object] = []
    waiting = threading.Thread(target=lambda: first.append(
        raw_send(stack.url, "x.example.com", b"1", path=path)))
    waiting.start()
    held.wait_for(2)  # the second request is stored: it holds the process's one wait slot
    resp = raw_send(stack.url, "x.example.com", b"2", path=path)
    waiting.join(timeout=30)
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "5"
    assert b"waiting" in resp.content
    assert [r.body for r in held.received] == [b"{}", b"1"]  # the refused one never stored


def scraped(name: str) -> float:
    text = requests.get(f"http://127.0.0.1:{METRICS}/metrics", timeout=5).text
    m = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_waits_are_counted_by_mode_and_outcome_without_bodies(stack, make_backend):
    answered = 'hookfan_answer_waits_total{mode="AwaitAllPreferFailed",outcome="answered"}'
    timed_out = 'hookfan_answer_waits_total{mode="AwaitAllPreferFailed",outcome="timeout"}'
    waited = 'hookfan_answer_wait_seconds_count{mode="AwaitAllPreferFailed"}'
    wait_until(lambda: port_open(METRICS), what="the app's metrics served")
    before = [scraped(n) for n in (answered, timed_out, waited)]
    good, late = ok(make_backend), slow(make_backend)
    assert ask(stack, "counted", [(None, good)], PREFER_FAILED).status_code == 200
    assert ask(stack, "counted-late", [(None, late)], PREFER_FAILED).status_code == 504
    # The app's metrics are written by its process and served by gunicorn's master.
    wait_until(lambda: [scraped(n) for n in (answered, timed_out, waited)]
               == [before[0] + 1, before[1] + 1, before[2] + 2], what="waits counted")
    text = requests.get(f"http://127.0.0.1:{METRICS}/metrics", timeout=5).text
    assert '{"text":"ok"}' not in text  # an answer body never reaches the metrics
