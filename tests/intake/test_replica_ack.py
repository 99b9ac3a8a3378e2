"""Replica-acknowledged 202s (``--min-replicas-ack``): a real primary and a real replica (each
with AOF ``always``), a real app under gunicorn. With the replica up a 202 means the replica has
the request too; with it gone the intake answers 503 with Retry-After within the timeout, and
says so in a metric (the request is on the primary: the sender's retry may be delivered twice)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import requests

from hookfan import keys
from hookfan.devstack import free_port
from tests.conftest import route_file
from tests.stackfixtures import raw_send, send
from tests.support.ledger import request_stored
from tests.support.procs import Stack, wait_until
from tests.support.redisproc import RedisProcess

HOST = "acked.example.com"


def unacknowledged(metrics_port: int) -> float:
    text = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
    m = re.search(r"^hookfan_intake_unacknowledged_total (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_a_202_waits_for_a_replica_and_without_one_the_answer_is_503(tmp_path: Path,
                                                                       make_backend):
    primary = RedisProcess(tmp_path / "primary").start()
    replica = RedisProcess(tmp_path / "replica",
                           extra=["--replicaof", "127.0.0.1", str(primary.port)]).start()
    routes = tmp_path / "routes"
    routes.mkdir()
    route_file(routes, HOST, [make_backend()])
    metrics = free_port()
    stack = Stack(primary.url, routes, tmp_path / "logs",
                  app_args=["--min-replicas-ack", "1", "--replica-ack-timeout", "500ms",
                            "--metrics-addr", f"127.0.0.1:{metrics}"])
    on_primary, on_replica = primary.client(), replica.client()
    try:
        wait_until(lambda: on_replica.info("replication")["master_link_status"] == "up",
                   what="the replica in sync")
        stack.start_operator()
        stack.start_app()
        first = send(stack, HOST, b'{"n": 1}')
        assert first.status_code == 202, first.text
        rid = first.headers["X-Hookfan-Request"]
        assert request_stored(on_replica, rid)  # acknowledged: the replica has it already

        replica.kill()
        wait_until(lambda: on_primary.info("replication")["connected_slaves"] == 0,
                   what="the primary to see its replica gone")
        started = time.monotonic()
        second = raw_send(stack.url, HOST, b'{"n": 2}')
        took = time.monotonic() - started
        assert second.status_code == 503, second.text
        assert second.headers["Retry-After"].isdigit()
        assert "not replicated" in second.json()["error"]
        assert 0.5 <= took < 2.0, took  # waited the ack timeout, answered within a sender's 2 s
        # Stored on the primary all the same (the documented duplicate on the sender's retry):
        # one request hash more than the first.
        assert len(list(on_primary.scan_iter(keys.request("*")))) == 2
        wait_until(lambda: unacknowledged(metrics) == 1, what="the 503 counted")
        assert "answered 503" in stack.logs()["app"]
    finally:
        stack.stop()
        replica.stop()
        primary.stop()
