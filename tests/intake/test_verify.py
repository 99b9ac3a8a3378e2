"""``spec.verify`` end to end: a route file with ``secretFile``, the real operator (file source),
app (gunicorn) and worker on a real Redis. A request signed by the provider's own library is
accepted and delivered exactly; a forged, stale or replayed one gets 401 and leaves no key in
Redis; a rotated secret file applies without a restart."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import requests
import yaml

from hookfan.devstack import free_port
from tests.stackfixtures import raw_send
from tests.support import signers
from tests.support.backends import RecordingBackend
from tests.support.procs import Stack, wait_until
from tests.support.redisproc import RedisProcess
from tests.support.signers import SECRETS, SIGNERS, TIMESTAMPED

BODY = b'{"id":"evt_1","type":"invoice.paid","amount":1200}'


class VerifyStack(Stack):
    metrics_port: int
    secrets_dir: Path


@pytest.fixture(scope="module")
def vstack(module_redis: RedisProcess, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[VerifyStack]:
    metrics = free_port()
    s = VerifyStack(module_redis.url, tmp_path_factory.mktemp("routes"),
                    tmp_path_factory.mktemp("logs"),
                    app_args=["--metrics-addr", f"127.0.0.1:{metrics}",
                              "--dedupe-headers", "X-GitHub-Delivery"])
    s.metrics_port = metrics
    s.secrets_dir = tmp_path_factory.mktemp("secrets")
    s.start()
    yield s
    s.stop()


def verified_route(stack: VerifyStack, host: str, backend: RecordingBackend, provider: str,
                   secret: str, **verify: str) -> Path:
    """A RequestClone for ``host`` with ``spec.verify`` and its secret in a file."""
    secret_file = stack.secrets_dir / f"{host}.secret"
    write(secret_file, secret + "\n")
    spec = {"host": host, "backend": {"serviceName": "127.0.0.1", "servicePort": backend.port},
            "verify": {"provider": provider, "secretFile": str(secret_file), **verify}}
    if provider == "hmac-sha256":
        spec["verify"]["header"] = signers.HMAC_HEADER
    doc = {"apiVersion": "proxy.infra.doodle.com/v1beta1", "kind": "RequestClone",
           "metadata": {"name": host.replace(".", "-")}, "spec": spec}
    path = stack.routes_dir / f"{host}.yaml"
    write(path, yaml.safe_dump(doc))
    return secret_file


def write(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.rename(path)


def post(stack: Stack, host: str, headers: list[tuple[str, str]], body: bytes = BODY
         ) -> requests.Response:
    return raw_send(stack.url, host, body, headers=headers)


def until_live(stack: Stack, host: str, sign: Callable[[], list[tuple[str, str]]],
               sent: list[tuple[str, str]] | None = None) -> requests.Response:
    """Send freshly signed requests until the route is live (503 before that); ``sent``
    gets the header lines of the last one."""
    deadline = time.monotonic() + 10
    while True:
        headers = sign()
        resp = post(stack, host, headers)
        if resp.status_code != 503 or time.monotonic() > deadline:
            if sent is not None:
                sent[:] = headers
            return resp
        time.sleep(0.05)


def hookfan_keys(client: redis.Redis) -> set[bytes]:
    return set(client.scan_iter("hookfan:*", count=1000))


def refused_leaving_nothing(stack: Stack, host: str, headers: list[tuple[str, str]],
                            reason: str) -> None:
    """The request gets 401 naming ``reason``, and no hookfan key appears in Redis."""
    before = hookfan_keys(stack.client)
    resp = post(stack, host, headers)
    assert resp.status_code == 401, resp.text
    assert resp.json() == {"error": "signature verification failed", "reason": reason}
    assert hookfan_keys(stack.client) - before == set()


def rejected_signature(stack: VerifyStack) -> float:
    text = requests.get(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=5).text
    m = re.search(r'^hookfan_intake_rejected_total\{reason="signature"\} (\S+)$', text, re.M)
    return float(m.group(1)) if m else 0.0


@pytest.mark.parametrize("provider", sorted(SIGNERS))
def test_signed_request_is_delivered_and_forged_one_gets_401_storing_nothing(
        vstack, make_backend, provider):
    backend = make_backend()
    host = f"{provider}.verify.example.com"
    verified_route(vstack, host, backend, provider, SECRETS[provider])
    good = SIGNERS[provider](BODY)
    sent: list[tuple[str, str]] = []
    resp = until_live(vstack, host, lambda: SIGNERS[provider](BODY), sent)
    assert resp.status_code == 202, resp.text
    got = backend.wait_for(1)[0]
    assert got.body == BODY
    for name, value in sent:  # the signature headers arrive as sent
        assert got.header(name) == value
    # Let the delivery finish (its keys come and go) before counting keys.
    wait_until(lambda: vstack.client.hlen(f"hookfan:c:{backend.url}") == 0, what="delivered")
    counted = rejected_signature(vstack)
    forged = SIGNERS[provider](BODY, secret=SECRETS[provider] + "-forged")
    if provider == "standard-webhooks":
        forged = signers.standard(BODY, secret="whsec_Zm9yZ2VkLXNlY3JldC1rZXktZm9yZ2VkLXRlc3Q=")
    refused_leaving_nothing(vstack, host, forged, "signature mismatch")
    tampered = good if provider in TIMESTAMPED else SIGNERS[provider](BODY)
    before = hookfan_keys(vstack.client)
    resp = post(vstack, host, tampered, BODY.replace(b"1200", b"9900"))
    assert (resp.status_code, resp.json()["reason"]) == (401, "signature mismatch")
    assert hookfan_keys(vstack.client) - before == set()
    wait_until(lambda: rejected_signature(vstack) >= counted + 2, what="401s counted")
    log = (vstack.log_dir / "app.log").read_text()
    assert "signature verification failed (signature mismatch)" in log
    for _, value in forged + good:
        assert value not in log  # no header value is logged
    assert BODY.decode() not in log


@pytest.mark.parametrize("provider", TIMESTAMPED)
def test_stale_and_replayed_requests_get_401_and_leave_no_key(vstack, make_backend, provider):
    backend = make_backend()
    host = f"{provider}.replay.example.com"
    verified_route(vstack, host, backend, provider, SECRETS[provider])
    signed = SIGNERS[provider](BODY)
    assert until_live(vstack, host, lambda: signed).status_code == 202
    backend.wait_for(1)
    wait_until(lambda: vstack.client.hlen(f"hookfan:c:{backend.url}") == 0, what="delivered")
    seen = [k for k in hookfan_keys(vstack.client) if k.startswith(b"hookfan:seen:")]
    assert seen and all(0 < vstack.client.pttl(k) <= 301_000 for k in seen)
    refused_leaving_nothing(vstack, host, signed,
                            "replayed: this signed request was accepted before")
    stale = SIGNERS[provider](BODY, stamp=int(time.time()) - 400)
    refused_leaving_nothing(vstack, host, stale, "timestamp outside tolerance")
    # The provider's retry is signed anew (a new timestamp): not a replay.
    time.sleep(1.0)
    assert post(vstack, host, SIGNERS[provider](BODY)).status_code == 202
    backend.wait_for(2)
    assert len(backend.received) == 2


def test_github_repeat_is_answered_by_dedupe_with_the_first_id_and_nothing_stored(
        vstack, make_backend):
    """GitHub signs no timestamp: a replay is caught by X-GitHub-Delivery de-duplication
    (``--dedupe-headers``), which answers the first request's 202 and stores nothing."""
    backend = make_backend()
    host = "github.dedupe.example.com"
    verified_route(vstack, host, backend, "github", SECRETS["github"])
    signed = signers.github(BODY)
    first = until_live(vstack, host, lambda: signed)
    assert first.status_code == 202
    backend.wait_for(1)
    wait_until(lambda: vstack.client.hlen(f"hookfan:c:{backend.url}") == 0, what="delivered")
    before = hookfan_keys(vstack.client)
    again = post(vstack, host, signed)
    assert again.status_code == 202 and again.json()["id"] == first.json()["id"]
    assert hookfan_keys(vstack.client) - before == set()


def test_a_rotated_secret_file_applies_without_a_restart(vstack, make_backend):
    backend = make_backend()
    host = "rotate.verify.example.com"
    secret_file = verified_route(vstack, host, backend, "stripe", SECRETS["stripe"])
    new = "whsec_rotated0123456789"
    sent = iter(range(1000))

    def send(secret: str) -> int:
        body = b'{"n":%d}' % next(sent)  # each its own request, never a replay
        return post(vstack, host, signers.stripe(body, secret=secret), body).status_code

    assert until_live(vstack, host, lambda: signers.stripe(BODY)).status_code == 202
    write(secret_file, f"{SECRETS['stripe']}\n{new}\n")  # both, while the sender switches
    deadline = time.monotonic() + 5
    while send(new) != 202:
        assert time.monotonic() < deadline, "the new secret never applied"
        time.sleep(0.1)
    assert send(SECRETS["stripe"]) == 202
    write(secret_file, new + "\n")  # the old one retired
    deadline = time.monotonic() + 5
    while send(SECRETS["stripe"]) != 401:
        assert time.monotonic() < deadline, "the old secret was never retired"
        time.sleep(0.1)
    assert send(new) == 202
    assert vstack.procs["operator"].proc.poll() is None  # no restart


def test_the_route_table_holds_no_secret(vstack, make_backend):
    backend = make_backend()
    host = "secretless.verify.example.com"
    verified_route(vstack, host, backend, "slack", SECRETS["slack"])
    wait_until(lambda: host in json.loads(vstack.client.get("hookfan:routes"))["routes"],
               what="route published")
    published = vstack.client.get("hookfan:routes")
    assert SECRETS["slack"].encode() not in published
    assert base64.b64encode(SECRETS["slack"].encode()) not in published
    assert host in json.loads(vstack.client.get("hookfan:verify"))


def test_unsigned_hosts_are_not_verified(vstack, make_backend):
    backend = make_backend()
    host = "plain.verify.example.com"
    from tests.conftest import route_file
    route_file(vstack.routes_dir, host, [backend], name="plain")
    assert until_live(vstack, host, lambda: []).status_code == 202
