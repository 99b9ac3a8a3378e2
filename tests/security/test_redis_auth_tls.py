"""Redis with a password (``requirepass``) and with TLS: every process reaches it through the
same settings (URL, --redis-password-file, --redis-tls-*-file), and no output shows the password.

The TLS tests need a redis-server built with TLS (scripts/ensure-redis.sh installs Debian's);
they skip, saying so, on a build without it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hookfan import config
from hookfan.config import COMMON, SettingsError
from tests.conftest import route_file
from tests.security.certs import PKI
from tests.security.conftest import SecureStack
from tests.stackfixtures import send
from tests.support.procs import HookfanProcess, wait_until
from tests.support.redisproc import RedisProcess, ServerTLS, tls_supported

needs_tls = pytest.mark.skipif(not tls_supported(), reason=(
    "redis-server has no TLS support: run scripts/ensure-redis.sh (installs Debian's)"))


def secret_password() -> str:
    # Characters that break a naively assembled URL: the password file must survive them.
    return "pw-" + os.urandom(8).hex() + "@:/%#?"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hookfan.cli", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def deliver_one(stack: SecureStack, make_backend, host: str) -> None:  # type: ignore[no-untyped-def]
    """The core end-to-end path: one webhook through app and worker to a backend."""
    backend = make_backend()
    route_file(stack.routes_dir, host, [backend], name=host.split(".")[0])
    resp = send(stack, host, b'{"core":1}', headers=[("X-Signature", "sig")])
    assert resp.status_code == 202, resp.content
    (got,) = backend.wait_for(1)
    assert got.body == b'{"core":1}' and got.header("X-Signature") == "sig"


def assert_hidden(password: str, *outputs: str) -> None:
    from urllib.parse import quote
    for out in outputs:
        assert password not in out and quote(password, safe="") not in out


def test_requirepass_stack_delivers_with_a_password_file(tmp_path, make_backend, secure_stacks):
    password = secret_password()
    server = RedisProcess(tmp_path / "redis", password=password).start()
    pw_file = tmp_path / "redis-password"
    pw_file.write_text(password + "\n")
    env = {"HOOKFAN_REDIS_PASSWORD_FILE": str(pw_file)}
    stack = SecureStack(server, server.bare_url, tmp_path, env)
    secure_stacks.append(stack)
    stack.start()
    deliver_one(stack, make_backend, "auth.example.com")

    routes = cli("routes", "--redis-url", server.bare_url, env=env)
    assert routes.returncode == 0 and "auth.example.com" in routes.stdout
    assert_hidden(password, routes.stdout, routes.stderr, *stack.logs().values())


def test_without_the_password_every_process_is_refused_and_says_so_masked(tmp_path):
    password = secret_password()
    server = RedisProcess(tmp_path / "redis", password=password).start()
    try:
        out = cli("routes", "--redis-url", server.bare_url)
        assert out.returncode == 1
        assert "cannot reach Redis" in out.stderr and "AuthenticationError" in out.stderr
        wrong = server.url.replace("pw-", "wrong-")
        bad = cli("deadletters", "list", "--redis-url", wrong)
        assert bad.returncode == 1 and ":***@127.0.0.1" in bad.stderr
        assert_hidden(password.replace("pw-", "wrong-"), bad.stdout, bad.stderr)
    finally:
        server.stop()


def test_worker_banner_and_connection_errors_mask_the_password(tmp_path):
    """Celery prints the broker URL in every reconnect error (and in its banner, if shown):
    masked."""
    password = secret_password()
    server = RedisProcess(tmp_path / "redis", password=password + "x").start()
    try:
        worker = HookfanProcess(["worker", "--redis-url",
                                 server.url.replace("%23%3F", "%23%3Fy"),
                                 "--concurrency", "1"], tmp_path, "worker").start()
        try:
            wait_until(lambda: "Cannot connect" in worker.log(),
                       timeout=30, what="the worker reporting it cannot connect")
        finally:
            worker.stop()
    finally:
        server.stop()
    log = worker.log()
    assert "Cannot connect to redis://:**@127.0.0.1" in log, log[-2000:]
    banner = [ln for ln in log.splitlines() if "transport:" in ln]  # when Celery prints one
    assert all("redis://:**@127.0.0.1" in ln for ln in banner), banner
    assert_hidden(password, log)


def test_password_file_is_percent_encoded_into_the_url(tmp_path):
    f = tmp_path / "pw"
    f.write_text("a@b:c/d%e#f?g\n")
    s = config.build(COMMON, {"redis-password-file": str(f),
                              "redis-url": "redis://h:6380/1"}, environ={})
    url = s.redis.client_url()
    import redis
    pool = redis.ConnectionPool.from_url(url)
    assert pool.connection_kwargs["password"] == "a@b:c/d%e#f?g"
    assert pool.connection_kwargs["host"] == "h" and pool.connection_kwargs["port"] == 6380
    assert "a@b" not in config.mask_url(url) and ":***@h:6380" in config.mask_url(url)


@pytest.mark.parametrize(("given", "fix"), [
    ({"redis-tls-ca-file": "CA"}, "needs a rediss://"),
    ({"redis-url": "rediss://h/0", "redis-tls-cert-file": "CA"}, "go together"),
    ({"redis-url": "rediss://h/0", "redis-tls-ca-file": "/no/such/ca.pem"}, "no such file"),
    ({"redis-password-file": "/no/such/password"}, "no such file"),
])
def test_bad_redis_security_flags_name_the_fix(tmp_path, given, fix):
    (tmp_path / "CA").write_text("x")
    given = {k: str(tmp_path / v) if v == "CA" else v for k, v in given.items()}
    with pytest.raises(SettingsError, match=fix):
        config.build(COMMON, given, environ={})


def test_tls_files_reach_redis_py_and_celery(tmp_path):
    from hookfan.worker.celeryapp import celery_config
    for name in ("ca", "crt", "key"):
        (tmp_path / name).write_text("x")
    s = config.build(COMMON, {"redis-url": "rediss://:pw@h:6380/0",
                              "redis-tls-ca-file": str(tmp_path / "ca"),
                              "redis-tls-cert-file": str(tmp_path / "crt"),
                              "redis-tls-key-file": str(tmp_path / "key")}, environ={})
    assert s.redis.ssl_options() == {"ssl_ca_certs": str(tmp_path / "ca"),
                                     "ssl_certfile": str(tmp_path / "crt"),
                                     "ssl_keyfile": str(tmp_path / "key")}
    import ssl
    assert celery_config(s)["broker_use_ssl"] == {"ssl_cert_reqs": ssl.CERT_REQUIRED,
                                                  **s.redis.ssl_options()}
    plain = config.build(COMMON, {"redis-url": "redis://h/0"}, environ={})
    assert plain.redis.ssl_options() == {} and celery_config(plain)["broker_use_ssl"] is None


def tls_server(tmp_path: Path, pki: PKI, password: str) -> RedisProcess:
    return RedisProcess(tmp_path / "redis", password=password, tls=ServerTLS(
        pki.ca, pki.server_cert, pki.server_key, auth_clients="yes",
        client_cert=pki.client_cert, client_key=pki.client_key)).start()


def tls_env(pki: PKI) -> dict[str, str]:
    return {"HOOKFAN_REDIS_TLS_CA_FILE": str(pki.ca),
            "HOOKFAN_REDIS_TLS_CERT_FILE": str(pki.client_cert),
            "HOOKFAN_REDIS_TLS_KEY_FILE": str(pki.client_key)}


@needs_tls
def test_tls_with_client_certificates_and_password_delivers(tmp_path, pki, make_backend,
                                                            secure_stacks):
    """Redis speaks only TLS, demands client certificates and a password: the operator, the app,
    the worker (its Celery broker connection too) and the CLI all get through."""
    password = secret_password()
    server = tls_server(tmp_path, pki, password)
    stack = SecureStack(server, server.url, tmp_path, tls_env(pki))
    secure_stacks.append(stack)
    stack.start()
    deliver_one(stack, make_backend, "tls.example.com")
    out = cli("deadletters", "list", "--redis-url", server.url, env=tls_env(pki))
    assert out.returncode == 0, out.stderr
    assert_hidden(password, out.stdout, out.stderr, *stack.logs().values())


@needs_tls
@pytest.mark.parametrize("case", ["untrusted-ca", "no-client-certificate", "plain-redis-url"])
def test_tls_refuses_what_it_should(tmp_path, pki, case):
    server = tls_server(tmp_path, pki, "pw")
    env = tls_env(pki)
    url = server.url
    if case == "untrusted-ca":
        env["HOOKFAN_REDIS_TLS_CA_FILE"] = str(pki.other_ca)
    elif case == "no-client-certificate":
        del env["HOOKFAN_REDIS_TLS_CERT_FILE"], env["HOOKFAN_REDIS_TLS_KEY_FILE"]
    else:
        url = url.replace("rediss://", "redis://")
        env = {}
    try:
        out = cli("routes", "--redis-url", url, env=env)
    finally:
        server.stop()
    assert out.returncode == 1 and "cannot reach Redis" in out.stderr, out.stderr
