"""A metrics or health address that is already taken stops the process at start with an
error that names the flag: exit code 2, one line, no traceback (real processes, real Redis)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hookfan.devstack import free_port


@pytest.fixture
def taken() -> Iterator[int]:
    """A loopback port some other program is listening on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


@pytest.mark.parametrize(("command", "flag"), [
    ("app", "metrics-addr"), ("app", "health-addr"),
    ("worker", "metrics-addr"), ("worker", "health-addr"),
    ("operator", "metrics-addr"), ("operator", "health-addr"),
])
def test_taken_address_is_an_error_naming_the_flag(
        command: str, flag: str, taken: int, redis_url: str, tmp_path: Path) -> None:
    args = [sys.executable, "-m", "hookfan.cli", command, "--redis-url", redis_url,
            f"--{flag}", f"127.0.0.1:{taken}"]
    if command == "app":
        args += ["--http-addr", f"127.0.0.1:{free_port()}"]
    if command == "operator":
        (tmp_path / "routes").mkdir()
        args += ["--routes-dir", str(tmp_path / "routes")]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"--{flag} 127.0.0.1:{taken}: cannot listen there" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout
