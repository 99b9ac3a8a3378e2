"""Receivers from --routes-dir, end to end: real Redis, operator (file source), gunicorn app,
Celery worker and HTTP backends. A copy goes to its target's path with the query kept; the
Receiver's body limit and suspension are answered by the intake. The answer modes:
test_answer_modes.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from hookfan.operator.receivermodel import derived_path
from tests.conftest import route_file
from tests.stackfixtures import raw_send, send
from tests.support.backends import RecordingBackend
from tests.support.procs import Stack, wait_until


def receiver(stack: Stack, name: str, targets: list[tuple[str | None, RecordingBackend]],
             path: str | None = None, **spec: object) -> str:
    """Write a Receiver file (targets: (target path or None for the default, backend));
    return its webhook path: ``path`` written as its status, or the one derived for it."""
    doc: dict[str, object] = {
        "apiVersion": "webhook.infra.doodle.com/v1beta1", "kind": "Receiver",
        "metadata": {"name": name, "namespace": "ci"},
        "spec": {**spec, "targets": [
            {**({"path": p} if p is not None else {}),
             "service": {"name": "127.0.0.1", "port": {"number": b.port}}}
            for p, b in targets]}}
    if path is not None:
        doc["status"] = {"webhookPath": path}
    tmp = stack.routes_dir / f"{name}.tmp"
    tmp.write_text(yaml.safe_dump(doc))
    tmp.rename(stack.routes_dir / f"rcv-{name}.yaml")
    return path or derived_path("ci", name, "")


def test_each_copy_goes_to_its_targets_path_with_the_query_kept(stack, make_backend):
    events, root = make_backend(), make_backend()
    path = "/hooks/" + "A1b2C3d4" * 4
    receiver(stack, "github", [("/github/events", events), (None, root)], path=path)
    body = b'{"action":"opened"}'
    query = "?x=1&y=%20z&x=2"
    resp = send(stack, "hooks.example.com", body, path=path + query,
                headers=[("X-Hub-Signature-256", "sha256=abc")])
    assert resp.status_code == 202, resp.text
    assert resp.json()["deliveries"] == 2
    (got,) = events.wait_for(1)
    assert (got.method, got.path, got.body) == ("POST", "/github/events" + query, body)
    assert got.header("X-Hub-Signature-256") == "sha256=abc"
    (got,) = root.wait_for(1)
    assert (got.path, got.body) == ("/" + query, body)


def test_a_path_is_matched_exactly(stack, make_backend):
    a = make_backend()
    path = receiver(stack, "exact", [("/in", a)])
    assert send(stack, "any.example.com", b"{}", path=path).status_code == 202
    for near in (path + "/", path + "x", path.upper(), path[:-1]):
        resp = raw_send(stack.url, "any.example.com", b"{}", path=near)
        assert resp.status_code == 503, near
    assert len(a.wait_for(1)) == 1


def test_a_request_for_a_host_and_a_receiver_path_goes_to_both(stack, make_backend):
    by_host, by_path = make_backend(), make_backend()
    route_file(stack.routes_dir, "both.example.com", [by_host], name="both-host")
    path = receiver(stack, "both", [("/target", by_path)])
    assert send(stack, "both.example.com", b"{}", path="/elsewhere").status_code == 202
    (got,) = by_host.wait_for(1)  # the RequestClone is live, and host routing unchanged
    assert got.path == "/elsewhere"
    resp = send(stack, "both.example.com", b'{"n":2}', path=path + "?q=1")
    assert resp.status_code == 202 and resp.json()["deliveries"] == 2
    got = by_host.wait_for(2)[1]
    assert (got.path, got.body) == (path + "?q=1", b'{"n":2}')  # the RequestClone's copy
    (got,) = by_path.wait_for(1)
    assert (got.path, got.body) == ("/target?q=1", b'{"n":2}')


def test_a_body_over_the_receivers_limit_gets_413(stack, make_backend):
    a = make_backend()
    path = receiver(stack, "small", [(None, a)], bodySizeLimit=1000)
    assert send(stack, "x.example.com", b"a" * 1000, path=path).status_code == 202
    over = raw_send(stack.url, "x.example.com", b"a" * 1001, path=path)
    assert over.status_code == 413, over.content
    assert b"1000 bytes" in over.content
    chunked = raw_send(stack.url, "x.example.com", b"b" * 5000, path=path, chunked=True)
    assert chunked.status_code == 413
    (got,) = a.wait_for(1)
    assert got.body == b"a" * 1000


def test_a_suspended_receiver_answers_503_with_retry_after(stack, make_backend):
    a = make_backend()
    path = receiver(stack, "paused", [(None, a)], suspend=True)

    def suspended() -> bool:
        return b"suspended" in raw_send(stack.url, "x.example.com", b"{}", path=path).content
    # Every app process: each loads the table on its own (within 250 ms).
    wait_until(lambda: all(suspended() for _ in range(4)), what="suspended Receiver served")
    resp = raw_send(stack.url, "x.example.com", b"{}", path=path)
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "60"
    receiver(stack, "paused", [(None, a)])  # resumed: the same path takes webhooks again
    assert send(stack, "x.example.com", b"{}", path=path).status_code == 202
    assert len(a.wait_for(1)) == 1


def test_an_await_all_mode_is_listed_with_its_timeout(stack, make_backend):
    a = make_backend()
    path = receiver(stack, "report", [(None, a)], responseType="AwaitAllReport", timeout="3s")
    resp = send(stack, "x.example.com", b"{}", path=path)  # the modes: test_answer_modes.py
    assert resp.json() == {"targets": [{"statusCode": 200}]}
    out = subprocess.run([sys.executable, "-m", "hookfan.cli", "routes", "--output", "json",
                          "--redis-url", stack.redis_url], capture_output=True, text=True,
                         env=dict(os.environ), timeout=30, check=True)
    listed = json.loads(out.stdout)["receivers"][path]
    assert listed == {"route": "receiver:ci/report", "mode": "AwaitAllReport", "timeout": 3.0,
                      "bodySizeLimit": 0, "suspended": False,
                      "targets": [f"http://127.0.0.1:{a.port}/"]}
    out = subprocess.run([sys.executable, "-m", "hookfan.cli", "routes", "--redis-url",
                          stack.redis_url], capture_output=True, text=True,
                         env=dict(os.environ), timeout=30, check=True)
    (row,) = [line.split() for line in out.stdout.splitlines() if path in line]
    assert row == [path, "receiver:ci/report", "AwaitAllReport", f"http://127.0.0.1:{a.port}/"]
    assert len(a.wait_for(1)) == 1


def test_derived_paths_are_stable_keyed_and_well_formed() -> None:
    one = derived_path("ci", "github", "")
    assert one == derived_path("ci", "github", "")
    assert one != derived_path("ci", "gitlab", "")
    assert one != derived_path("ci", "github", "k")
    assert len(one) == len("/hooks/") + 32 and one[7:].isalnum() and one[7:].isascii()


def test_routes_dir_example_files_parse(tmp_path: Path) -> None:
    from hookfan.operator.files import load_receivers
    from hookfan.operator.filesource import file_receivers
    fixture = Path(__file__).parents[1] / "operator" / "fixtures" / "go_receivers.yaml"
    (tmp_path / "go.yaml").write_text(fixture.read_text())
    found, rejected = load_receivers(tmp_path)
    assert rejected == [] and len(found) == 7
    routes, unserved = file_receivers(found[:1], {}, "")
    assert unserved == [] and len(routes) == 1
