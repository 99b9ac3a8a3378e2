"""``--verify-key-file`` end to end (real operator on the file source, gunicorn app, worker, one
Redis): the operator seals the signing secrets, so Redis holds none of them in any form; an app
with the same key verifies and delivers; an app without it answers 503 for the verified host
(never serves it unverified) while every other host is served."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.stackfixtures import raw_send
from tests.support.backends import RecordingBackend
from tests.support.procs import Stack, wait_until
from tests.support.signers import SECRETS, github

BODY = b'{"action":"opened","number":7}'
VERIFIED = "sealed.example.com"
PLAIN = "plain.example.com"


def route(directory: Path, host: str, backend: RecordingBackend, verify: dict | None) -> None:
    spec: dict = {"host": host, "backend": {"serviceName": "127.0.0.1",
                                            "servicePort": backend.port}}
    if verify:
        spec["verify"] = verify
    doc = {"apiVersion": "proxy.infra.doodle.com/v1beta1", "kind": "RequestClone",
           "metadata": {"name": host.replace(".", "-")}, "spec": spec}
    (directory / f"{host}.yaml").write_text(yaml.safe_dump(doc))


@pytest.fixture
def sealed(redis_url: str, tmp_path: Path, make_backend) -> Iterator[tuple[Stack, list]]:
    routes = tmp_path / "routes"
    routes.mkdir()
    secret = tmp_path / "gh.secret"
    secret.write_text(SECRETS["github"] + "\n")
    key = tmp_path / "verify.key"
    key.write_text("0123456789abcdefghijklmnopqrstuvwxyz\n")
    a, b = make_backend(), make_backend()
    route(routes, VERIFIED, a, {"provider": "github", "secretFile": str(secret)})
    route(routes, PLAIN, b, None)
    stack = Stack(redis_url, routes, tmp_path / "logs",
                  env={"HOOKFAN_VERIFY_KEY_FILE": str(key)})
    stack.start()
    yield stack, [a, b]
    stack.stop()


def live(stack: Stack, host: str, expect: int) -> int:
    """Send until the app has the route (503 "no RequestClone" before that)."""
    got: list[int] = []

    def sent() -> bool:
        resp = raw_send(stack.url, host, BODY, headers=github(BODY))
        got.append(resp.status_code)
        return resp.status_code == expect
    wait_until(sent, what=f"{host} answered {expect}")
    return got[-1]


def test_sealed_secrets_verify_with_the_key_and_never_serve_unverified_without_it(
        sealed, tmp_path):
    stack, (a, b) = sealed
    live(stack, VERIFIED, 202)
    assert a.wait_for(1)[0].body == BODY
    stored = stack.client.get("hookfan:verify")
    assert stored is not None and b"aes256gcm:" in stored
    raw = SECRETS["github"].encode()
    for form in (raw, base64.b64encode(raw), raw.hex().encode()):
        assert form not in stored
    forged = raw_send(stack.url, VERIFIED, BODY, headers=github(BODY, secret="forged"))
    assert forged.status_code == 401

    keyless = Stack(stack.redis_url, stack.routes_dir, tmp_path / "logs-keyless")
    keyless.start_app()
    try:
        live(keyless, PLAIN, 202)  # its table is loaded, other hosts are served
        before = len(a.received)
        resp = raw_send(keyless.url, VERIFIED, BODY, headers=github(BODY))
        assert resp.status_code == 503, resp.text
        assert resp.headers.get("Retry-After")
        assert "signing secrets unavailable" in resp.text
        log = (tmp_path / "logs-keyless" / "app.log").read_text()
        assert "--verify-key-file" in log and SECRETS["github"] not in log
    finally:
        keyless.stop()
    assert b.wait_for(1)
    assert len(a.received) == before  # nothing of the refused request was stored or delivered
