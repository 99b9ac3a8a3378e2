"""Connections are spread over the app's worker processes (hookfan.app.balance).

gunicorn's workers share one listening socket and the first to call ``accept`` wins: a burst of
kept-alive connections (an ingress's upstream pool, a load generator) could all land in one
worker and stay there while the other idled. Here a real ``hookfan app`` with 2 workers gets
bursts of 24 kept-alive connections from one thread, as a load generator opens them, and each
worker must hold its share of every burst, counted from the kernel's socket tables.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from hookfan.app.balance import SLACK, WIDTH, Balance
from tests.conftest import route_file
from tests.support.backends import RecordingBackend
from tests.support.procs import Stack, wait_until
from tests.support.redisproc import RedisProcess

HOST = "balance.example.com"
CONNECTIONS = 24
BURSTS = 4


@pytest.fixture
def app_stack(module_redis: RedisProcess, tmp_path: Path,
              make_backend) -> Iterator[Stack]:
    (tmp_path / "routes").mkdir()
    s = Stack(module_redis.url, tmp_path / "routes", tmp_path / "logs")
    backend: RecordingBackend = make_backend()
    route_file(s.routes_dir, HOST, [backend])
    s.start_operator()
    s.start_app()
    yield s
    s.stop()


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def established(port: int) -> dict[int, int]:
    """Inode -> 1 for every established TCP socket whose local port is ``port``."""
    out = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "01":
                    out[int(cols[9])] = 1
    return out


def held_by(pids: list[int], port: int) -> dict[int, int]:
    """Connections to ``port`` each process holds, from its open file descriptors."""
    ours = established(port)
    counts = {}
    for pid in pids:
        n = 0
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and int(target[8:-1]) in ours:
                n += 1
        counts[pid] = n
    return counts


def request(sock: socket.socket) -> bytes:
    sock.sendall(b"POST / HTTP/1.1\r\nHost: " + HOST.encode() +
                 b"\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
    answer = b""
    while b"\r\n\r\n" not in answer or not answer.endswith(b"}\n"):
        chunk = sock.recv(4096)
        assert chunk, answer
        answer += chunk
    return answer


def test_a_burst_of_kept_alive_connections_is_shared_by_the_workers(app_stack: Stack):
    master = app_stack.procs["app"].pid
    wait_until(lambda: len(children(master)) == 2, what="2 app workers")
    workers = children(master)
    for _ in range(BURSTS):
        socks = [socket.create_connection(("127.0.0.1", app_stack.port))
                 for _ in range(CONNECTIONS)]
        try:
            for s in socks:  # each connection carries a webhook and stays open
                assert request(s).startswith(b"HTTP/1.1 202"), "not accepted"
            counts = held_by(workers, app_stack.port)
            assert sum(counts.values()) == CONNECTIONS, counts
            # Never more than SLACK apart, plus one the table had not yet seen.
            assert max(counts.values()) - min(counts.values()) <= SLACK + 2, counts
        finally:
            for s in socks:
                s.close()
        wait_until(lambda: sum(held_by(workers, app_stack.port).values()) == 0,
                   what="connections closed")


def test_the_least_loaded_live_worker_always_accepts():
    # Two rows in one process stand for two workers (the table is shared memory either way).
    balance = Balance(2)
    balance.join()
    rows, mine = balance._rows, WIDTH * balance.slot
    other = WIDTH * ((balance.slot + 1) % balance.size)
    rows[other], rows[other + 1] = os.getppid(), 3  # a live process with 3 connections
    assert balance.may_accept(3 + SLACK)  # within the slack
    assert not balance.may_accept(4 + SLACK)  # the other should take the next one
    rows[other + 1] = 10
    assert balance.may_accept(4 + SLACK)  # now this one holds the fewest
    rows[other], rows[other + 1] = 2 ** 22 + 12345, 0  # a pid that is gone
    assert balance.may_accept(100)  # a dead worker's row holds no one back
    balance.leave()
    assert rows[mine + 1] > 100  # shutting down: no one holds back for this one
