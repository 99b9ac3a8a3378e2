"""The AOF backup and restore of docs/operations.md, run as documented (`sh -c "$(cat script)"`)
against real redis-servers: a backup of a live, password-protected Redis, restored into a fresh
directory, brings back exactly what was acknowledged before the backup."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.redisproc import RedisProcess

from .chart import ROOT

BACKUP = ROOT / "scripts" / "redis-aof-backup.sh"
RESTORE = ROOT / "scripts" / "redis-aof-restore.sh"
OPERATIONS = ROOT / "docs" / "operations.md"
PASSWORD = "backup-test-pw"


def run_script(script: Path, *args: str, env: dict[str, str], stdin: bytes = b""
               ) -> subprocess.CompletedProcess[bytes]:
    """As the docs run it: the script's text through `sh -c`, with $0 and arguments."""
    # A test that cannot find redis-cli fails: make test installs it (scripts/ensure-redis.sh).
    assert shutil.which("redis-cli"), "redis-cli not on PATH (scripts/ensure-redis.sh installs it)"
    return subprocess.run(["sh", "-c", script.read_text(), script.stem, *args], input=stdin,
                          capture_output=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin:/usr/local/bin", **env})


def snapshot(client: redis.Redis) -> dict[bytes, object]:
    """Every key's value (DUMP would differ in encoding, not content, after a reload)."""
    read = {b"hash": client.hgetall, b"string": client.get,
            b"zset": lambda k: client.zrange(k, 0, -1, withscores=True)}
    return {k: read[client.type(k)](k) for k in client.keys("*")}  # type: ignore[operator,index]


def fill(client: redis.Redis, prefix: str, n: int) -> None:
    for i in range(n):
        client.hset(f"{prefix}:req:{i}", mapping={"body": b"\x00\xff" * 64, "host": "h"})
        client.zadd(f"{prefix}:ready", {f"{prefix}:{i}": i})
        client.set(f"{prefix}:plain:{i}", i)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisProcess]:
    proc = RedisProcess(tmp_path / "live", password=PASSWORD).start()
    yield proc
    proc.stop()


def test_a_backup_restores_what_was_acknowledged_before_it(
        server: RedisProcess, tmp_path: Path) -> None:
    client = server.client()
    fill(client, "before-rewrite", 200)
    client.bgrewriteaof()  # the backup then spans a base file and incremental ones
    while client.info("persistence")["aof_rewrite_in_progress"]:
        client.ping()
    fill(client, "after-rewrite", 100)
    expected = snapshot(client)
    env = {"REDISCLI_AUTH": PASSWORD, "REDIS_PORT": str(server.port)}

    done = run_script(BACKUP, env=env)
    assert done.returncode == 0, done.stderr.decode()
    # Rewrites were paused for the copy and are back as they were.
    assert client.config_get("auto-aof-rewrite-percentage") == {
        "auto-aof-rewrite-percentage": "100"}
    fill(client, "after-backup", 10)  # not in the backup
    server.stop()

    target = tmp_path / "restored"
    target.mkdir()
    restored = run_script(RESTORE, str(target), env={}, stdin=done.stdout)
    assert restored.returncode == 0, restored.stderr.decode()
    files = sorted(p.name for p in (target / "appendonlydir").iterdir())
    assert any(f.endswith(".manifest") for f in files) and any(".base." in f for f in files)

    again = RedisProcess(target, password=PASSWORD).start()
    try:
        assert snapshot(again.client()) == expected
    finally:
        again.stop()


def test_restore_keeps_what_it_replaces_and_refuses_a_non_backup(tmp_path: Path) -> None:
    target = tmp_path / "data"
    (target / "appendonlydir").mkdir(parents=True)
    (target / "appendonlydir" / "old.manifest").write_text("old")
    refused = run_script(RESTORE, str(target), env={}, stdin=b"not a tar")
    assert refused.returncode != 0
    assert (target / "appendonlydir" / "old.manifest").read_text() == "old"  # untouched
    bogus = tmp_path / "bogus"
    (bogus / "somedir").mkdir(parents=True)
    tar = subprocess.run(["tar", "-C", str(bogus), "-cf", "-", "somedir"], capture_output=True,
                         check=True).stdout
    refused = run_script(RESTORE, str(target), env={}, stdin=tar)
    assert refused.returncode != 0 and b"not a backup" in refused.stderr


def test_backup_refuses_a_redis_without_aof(tmp_path: Path) -> None:
    proc = RedisProcess(tmp_path / "noaof", extra=["--appendonly", "no"]).start()
    try:
        done = run_script(BACKUP, env={"REDIS_PORT": str(proc.port)})
        assert done.returncode != 0 and b"appendonly is not yes" in done.stderr
    finally:
        proc.stop()


def test_the_docs_run_these_scripts_as_this_test_does() -> None:
    text = OPERATIONS.read_text()
    assert re.search(r'sh -c "\$\(cat scripts/redis-aof-backup\.sh\)" backup >', text)
    assert re.search(r'sh -c "\$\(cat scripts/redis-aof-restore\.sh\)" restore /data <', text)
