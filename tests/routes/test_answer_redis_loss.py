"""An AwaitAll request whose Redis dies while its sender waits, end to end: real Redis (killed
with SIGKILL, then restarted from its AOF), operator (file source), gunicorn app, Celery worker
and an HTTP backend that holds its answer.

The request was stored before the wait began, so losing Redis mid-wait costs the sender its
answers, never the webhook: the app answers at once (the silent target counts as 504, as at a
timeout) instead of holding the sender until the Receiver's timeout, stays up, and the request
is still stored when Redis comes back.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import requests

from hookfan.answers import PREFER_SUCCESSFUL
from hookfan.envelope import REQUEST_HEADER
from tests.routes.test_receivers_end_to_end import receiver
from tests.stackfixtures import send
from tests.support.ledger import request_stored
from tests.support.procs import Stack
from tests.support.redisproc import RedisProcess

RECEIVER_TIMEOUT = 20.0
"""Shorter than the sender's own read timeout (30 s): a wait held to the end still answers."""


def test_a_redis_killed_mid_wait_answers_the_sender_at_once_and_keeps_the_request(
        tmp_path: Path, make_backend) -> None:  # type: ignore[no-untyped-def]
    server = RedisProcess(tmp_path / "redis").start()
    stack = Stack(server.url, tmp_path / "routes", tmp_path / "logs",
                  # the attempt may run as long as the backend holds it: the only way the
                  # wait can end early is Redis going away
                  worker_args=["--delivery-timeout", "90s"], app_args=["--workers", "1"])
    stack.routes_dir.mkdir()
    # The first answer is held far past the test; the copy's retry is answered at once.
    backend = make_backend(held=lambda n: 120.0 if n == 0 else 0.0)
    got: dict[str, requests.Response | BaseException] = {}

    def sender() -> None:
        try:
            got["resp"] = send(stack, "hooks.example.com", b'{"cmd":"/deploy"}', path=path,
                               timeout=RECEIVER_TIMEOUT + 30)
        except BaseException as exc:  # reported by the assertions below
            got["resp"] = exc

    try:
        stack.start()
        path = receiver(stack, "held", [(None, backend)], responseType=PREFER_SUCCESSFUL,
                        timeout=f"{RECEIVER_TIMEOUT:g}s")
        waiting = threading.Thread(target=sender)
        waiting.start()
        (first,) = backend.wait_for(1, timeout=30)  # stored, sent: the sender now waits
        request_id = first.header(REQUEST_HEADER)
        assert request_id
        killed = time.monotonic()
        server.kill()
        waiting.join(RECEIVER_TIMEOUT + 40)
        answered_after = time.monotonic() - killed
        resp = got["resp"]
        assert isinstance(resp, requests.Response), f"no answer: {resp!r}"
        assert resp.status_code == 504, resp.content
        # Ended by the lost connection, not by the Receiver's timeout.
        assert answered_after < RECEIVER_TIMEOUT / 4, answered_after
        assert stack.procs["app"].proc.poll() is None, "the app process exited"
        assert "Traceback" not in stack.procs["app"].log()

        server.start()  # the same data directory: what the AOF holds
        assert request_stored(server.client(), request_id)
    finally:
        stack.stop()
        server.stop()
