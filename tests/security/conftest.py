"""Fixtures for the security tests: the shared stack fixtures, throw-away certificates, and a
stack on a Redis that demands a password (and TLS)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.security.certs import PKI, make_pki
from tests.stackfixtures import module_redis, routed, stack, stack_store  # noqa: F401
from tests.support.procs import HookfanProcess, Stack, wait_until
from tests.support.redisproc import RedisProcess


class SecureStack(Stack):
    """A :class:`Stack` whose own readiness checks reach Redis the way its processes do
    (password, TLS), through ``server``'s client."""

    def __init__(self, server: RedisProcess, redis_url: str, tmp: Path,
                 env: dict[str, str], operator_args: list[str] | None = None,
                 **kwargs: list[str]) -> None:
        super().__init__(redis_url, tmp / "routes", tmp / "logs", env=env, **kwargs)
        self.routes_dir.mkdir(parents=True, exist_ok=True)
        self.server = server
        self.operator_args = operator_args or []

    def start_operator(self) -> HookfanProcess:
        p = self._spawn("operator", ["operator", "--routes-dir", str(self.routes_dir),
                                     "--poll-interval", "100ms", *self.operator_args])
        client = self.server.client()
        wait_until(lambda: client.exists("hookfan:routes") == 1, what="route table published")
        return p


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def secure_stacks() -> Iterator[list[SecureStack]]:
    """Stacks a test starts; all stopped afterwards, Redis last."""
    made: list[SecureStack] = []
    yield made
    for s in made:
        s.stop()
        s.server.stop()
