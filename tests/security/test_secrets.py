"""No body byte, header value or Redis password in any output.

One request carrying marker strings in its body and in secret headers goes through a first
delivery, a retry, a dead letter and a replay, on a Redis with a password, with every process
logging at debug level and serving metrics, and Flower watching. Then every process's log, every
metrics endpoint, Flower's task API and the operator's CLI outputs are searched for the markers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import requests

from hookfan.devstack import free_port
from hookfan.store import Store, connect
from tests.conftest import route_file
from tests.security.conftest import SecureStack
from tests.stackfixtures import send
from tests.support.backends import RecordingBackend, always, sequence
from tests.support.procs import port_open, wait_until
from tests.support.redisproc import RedisProcess

HOST = "secrets.example.com"
TAG = os.urandom(6).hex()
BODY_MARKER = f"BODYMARK{TAG}"
HEADER_MARKER = f"HDRMARK{TAG}"
AUTH_MARKER = f"AUTHMARK{TAG}"
PASSWORD = f"REDISPW{TAG}"
MARKERS = (BODY_MARKER, HEADER_MARKER, AUTH_MARKER, PASSWORD)
FLOWER_AUTH = ("admin", "flower-" + TAG[:4])


class Run:
    """What the module's one request left behind."""

    def __init__(self, stack: SecureStack, flower_port: int, metrics: dict[str, int],
                 env: dict[str, str], delivery_ids: list[str]) -> None:
        self.stack, self.flower_port, self.metrics = stack, flower_port, metrics
        self.env, self.delivery_ids = env, delivery_ids

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([sys.executable, "-m", "hookfan.cli", *args, "--redis-url",
                              self.stack.redis_url], capture_output=True, text=True,
                             timeout=60, env={**os.environ, **self.env})
        assert out.returncode == 0, out.stderr
        return out


def found(text: str) -> list[str]:
    return [m for m in MARKERS if m in text or quote(m) in text]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    tmp = tmp_path_factory.mktemp("secrets")
    server = RedisProcess(tmp / "redis", password=PASSWORD).start()
    (tmp / "pw").write_text(PASSWORD)
    env = {"HOOKFAN_REDIS_PASSWORD_FILE": str(tmp / "pw"), "HOOKFAN_LOG_LEVEL": "debug"}
    metrics = {name: free_port() for name in ("app", "worker", "operator")}
    stack = SecureStack(
        server, server.bare_url, tmp, env,
        operator_args=["--metrics-addr", f"127.0.0.1:{metrics['operator']}"],
        app_args=["--metrics-addr", f"127.0.0.1:{metrics['app']}"],
        worker_args=["--metrics-addr", f"127.0.0.1:{metrics['worker']}",
                     "--task-events", "true"])
    flower_port = free_port()
    flower = subprocess.Popen(
        [sys.executable, "-m", "celery", "-b", server.url, "flower", f"--port={flower_port}",
         "--address=127.0.0.1", "--logging=debug"],
        stdout=open(tmp / "flower.log", "wb"),  # noqa: SIM115
        stderr=subprocess.STDOUT, env={**os.environ, "HOME": str(tmp),
                                       "FLOWER_BASIC_AUTH": ":".join(FLOWER_AUTH)})
    flaky = RecordingBackend(respond=sequence(500, 404, 200)).start()
    steady = RecordingBackend(respond=always(200)).start()
    try:
        route_file(stack.routes_dir, HOST, [flaky, steady], name="secrets")
        stack.start()
        wait_until(lambda: port_open(flower_port), timeout=30, what="Flower listening")
        ids = deliver_retry_dead_letter_replay(stack, server, flaky, steady)
        yield Run(stack, flower_port, metrics, env, ids)
    finally:
        flower.terminate()
        flower.wait(timeout=20)
        stack.stop()
        server.stop()
        flaky.stop()
        steady.stop()


def deliver_retry_dead_letter_replay(stack: SecureStack, server: RedisProcess,
                                     flaky: RecordingBackend,
                                     steady: RecordingBackend) -> list[str]:
    body = json.dumps({"card": BODY_MARKER, "n": 1}).encode()
    headers = [("X-Webhook-Secret", HEADER_MARKER), ("Authorization", f"Bearer {AUTH_MARKER}"),
               ("Cookie", f"session={AUTH_MARKER}")]
    resp = send(stack, HOST, body, path="/hook", headers=headers)
    assert resp.status_code == 202
    assert not found(resp.text)
    rid = resp.json()["id"]
    steady.wait_for(1)
    flaky.wait_for(2)  # 500 (retried), then 404 (dead-lettered)
    store = Store(connect(server.url))
    wait_until(lambda: any(d.startswith(rid) for d in store.dead_ids()), what="dead letter")
    dead = [d for d in store.dead_ids() if d.startswith(rid)]
    assert len(dead) == 1
    store.replay(dead[0])
    third = flaky.wait_for(3)[2]
    assert third.body == body and third.header("X-Webhook-Secret") == HEADER_MARKER
    wait_until(lambda: store.dead_ids() == [], what="replayed copy delivered")
    # A second request left dead, for the dead-letter CLI outputs.
    flaky.respond = always(404)
    resp = send(stack, HOST, body, path="/hook", headers=headers)
    rid2 = resp.json()["id"]
    wait_until(lambda: any(d.startswith(rid2) for d in store.dead_ids()), what="dead letter")
    return [rid, *[d for d in store.dead_ids() if d.startswith(rid2)]]


def test_the_markers_went_everywhere_they_should(run):
    """Not vacuous: the stored request, the copies and `show --body` carry the markers."""
    dead = run.delivery_ids[1]
    shown = run.cli("deadletters", "show", dead, "--body")
    assert BODY_MARKER in shown.stdout


@pytest.mark.parametrize("name", ["app", "worker", "operator"])
def test_no_marker_in_any_process_log(run, name):
    log = run.stack.logs()[name]
    # The operator never sees a request (it logs little); the others log every step at debug.
    assert len(log) > (100 if name == "operator" else 5000), f"{name}: the search is vacuous"
    assert found(log) == [], [ln for ln in log.splitlines() if found(ln)][:3]


@pytest.mark.parametrize("name", ["app", "worker", "operator"])
def test_no_marker_in_any_metrics_endpoint(run, name):
    text = requests.get(f"http://127.0.0.1:{run.metrics[name]}/metrics", timeout=10).text
    assert "hookfan_" in text
    assert found(text) == []


@pytest.mark.parametrize("args", [
    ("routes",), ("routes", "--output", "json"),
    ("deadletters", "list"), ("deadletters", "list", "--output", "json"),
    ("deadletters", "show", "{dead}")])
def test_no_marker_in_cli_output(run, args):
    args = tuple(a.format(dead=run.delivery_ids[1]) for a in args)
    out = run.cli(*args)
    assert out.stdout.strip()
    assert found(out.stdout + out.stderr) == []


def test_show_names_the_headers_but_not_their_values(run):
    shown = json.loads(run.cli("deadletters", "show", run.delivery_ids[1]).stdout)
    assert {"X-Webhook-Secret", "Authorization", "Cookie"} <= set(shown["header_names"])
    assert "body" not in shown


def test_flower_shows_ids_only_and_wants_a_login(run):
    base = f"http://127.0.0.1:{run.flower_port}"
    assert requests.get(f"{base}/api/tasks", timeout=10).status_code == 401
    tasks = requests.get(f"{base}/api/tasks", auth=FLOWER_AUTH, timeout=10)
    assert tasks.status_code == 200
    assert any(t.get("name") == "hookfan.deliver" for t in tasks.json().values()), tasks.text
    assert found(tasks.text) == []
    for task_id in list(tasks.json())[:5]:
        info = requests.get(f"{base}/api/task/info/{task_id}", auth=FLOWER_AUTH, timeout=10)
        assert found(info.text) == []


def test_no_marker_in_flower_log(run):
    """Flower logs at debug; not vacuous: the log must be this Flower's, showing where it
    connected with the password-bearing URL and that it captured the workers' events."""
    log = Path(run.stack.log_dir).parent.joinpath("flower.log").read_text(errors="replace")
    port = urlsplit(run.stack.redis_url).port
    assert f"Connected to redis://:**@127.0.0.1:{port}/0" in log, log[-2000:]
    assert "Capturing events" in log, log[-2000:]
    assert found(log) == []
