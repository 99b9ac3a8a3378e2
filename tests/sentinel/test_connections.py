"""Clients through Sentinel: :func:`hookfan.store.connect` and the intake's group commit find
the primary the Sentinels name, follow a failover (``kill -9`` of the primary) without a
restart, and fail fast while no primary is known; a TLS primary is reached with the
``--redis-tls-*`` files. Real redis-servers and Sentinels."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

import pytest
import redis

from hookfan import keys
from hookfan.app.commit import GroupCommit, NotSent
from hookfan.config import RedisSettings
from hookfan.devstack import free_port
from hookfan.envelope import StoredRequest
from hookfan.routes import Backend
from hookfan.store import Store, connect
from tests.security.certs import make_pki
from tests.sentinel.conftest import through_sentinel
from tests.support.procs import wait_until
from tests.support.redisproc import RedisProcess, ServerTLS, tls_supported
from tests.support.sentinel import SentinelRig

BACKEND = (Backend("ns/a", "http://127.0.0.1:9/a"),)


def request() -> StoredRequest:
    return StoredRequest("POST", "/", (("Content-Type", "text/plain"),), b"{}", "10.0.0.1",
                         time.time(), "sentinel.example.com")


def retry_until_it_works(call, timeout: float = 15.0):  # type: ignore[no-untyped-def]
    """``call()``'s result once it stops raising connection errors (a failover's window)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return call()
        except redis.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_a_client_finds_the_primary_and_follows_a_failover_with_url_db_and_password(
        tmp_path: Path):
    rig = SentinelRig(tmp_path / "rig", password="s3cret").start()
    try:
        settings = through_sentinel(rig, db=3)
        client = connect(settings)
        client.set("before", "1")
        primary_db3 = redis.Redis(port=rig.primary().port, password="s3cret", db=3)
        assert primary_db3.get("before") == b"1"  # the URL's database, on the primary
        # Replication is asynchronous: the failover must not race the write to the replicas.
        wait_until(lambda: all(redis.Redis(port=r.port, password="s3cret", db=3).get("before")
                               == b"1" for r in rig.replicas()), what="'before' replicated")
        old, new, _ = rig.failover()
        retry_until_it_works(lambda: client.set("after", "2"))
        new_db3 = redis.Redis(port=new.port, password="s3cret", db=3)
        assert new_db3.get("after") == b"2" and new_db3.get("before") == b"1"
        assert new.port != old.port
    finally:
        rig.stop()


def test_while_no_sentinel_answers_commands_fail_fast_as_connection_errors(
        rig: SentinelRig):
    client = connect(through_sentinel(rig), timeout=0.5)
    client.ping()
    for s in rig.sentinels:
        s.stop()
    client.connection_pool.disconnect()  # a new connection must ask the Sentinels first
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError, match="No master found"):
        client.ping()
    assert time.monotonic() - started < 2.0


def test_group_commit_writes_to_the_new_primary_after_a_failover(rig: SentinelRig):
    store = Store(connect(through_sentinel(rig)))
    commit = GroupCommit(store.r, store.scripts["accept"])

    def accept() -> str:
        rid = os.urandom(16).hex()
        keys_, args, _ = store.accept_call(rid, request(), BACKEND)
        commit(keys_, args)
        return rid

    before = accept()
    _, new, _ = rig.failover()
    after = retry_until_it_works(accept)
    on_new = new.client()
    assert on_new.hget(keys.request(after), "n") == b"1"
    assert on_new.exists(keys.request(before)) == 1  # replicated before the kill


def test_group_commit_drops_a_connection_a_replica_refuses(tmp_path: Path):
    # A replica of a primary that is not there: read-only all the same.
    replica = RedisProcess(tmp_path / "r", extra=["--replicaof", "127.0.0.1",
                                                  str(free_port())]).start()
    try:
        store = Store(connect(RedisSettings(url=replica.url)))
        commit = GroupCommit(store.r, store.scripts["accept"])
        keys_, args, _ = store.accept_call(os.urandom(16).hex(), request(), BACKEND)
        with pytest.raises(NotSent):  # committed nothing: the intake answers 503
            commit(keys_, args)
        assert commit.conn._sock is None  # the next batch connects (asks Sentinel) anew
    finally:
        replica.stop()


@pytest.mark.skipif(not tls_supported(), reason=(
    "redis-server has no TLS support: run scripts/ensure-redis.sh (installs Debian's)"))
def test_a_tls_primary_is_reached_through_sentinel_with_the_tls_files(tmp_path: Path):
    pki = make_pki(tmp_path / "pki")
    tls = ServerTLS(pki.ca, pki.server_cert, pki.server_key)
    rig = SentinelRig(tmp_path / "rig", password="pw", tls=tls).start()
    try:
        settings = dataclasses.replace(through_sentinel(rig), tls_ca_file=str(pki.ca))
        client = connect(settings)
        client.set("k", "v")
        _, new, _ = rig.failover()
        assert retry_until_it_works(lambda: client.get("k")) == b"v"
        assert new.client().get("k") == b"v"
        untrusted = dataclasses.replace(settings, tls_ca_file=str(pki.other_ca))
        with pytest.raises(redis.ConnectionError):  # the certificate is verified
            connect(untrusted).ping()
    finally:
        rig.stop()
