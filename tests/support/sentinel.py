"""A Redis primary, its replicas and three Sentinels, as real processes on free ports.

Every data node runs as :class:`~tests.support.redisproc.RedisProcess` does (AOF on,
``appendfsync always``, ``noeviction``); the Sentinels are ``redis-server --sentinel`` with a
config written here (Sentinel rewrites it as it learns). Failure detection is quick
(:data:`DOWN_AFTER_MS`, :data:`FAILOVER_TIMEOUT_MS`), so after a ``kill -9`` of the primary
a replica is promoted within a few seconds.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path

import redis

from hookfan.devstack import free_port, redis_server_binary
from tests.support.procs import wait_until
from tests.support.redisproc import RedisProcess, ServerTLS

MASTER = "hookfan"
"""The name the Sentinels monitor the primary under (``--redis-sentinel-master``)."""
DOWN_AFTER_MS = 1000
"""A primary silent this long is subjectively down (production: 5-30 s)."""
FAILOVER_TIMEOUT_MS = 3000
QUORUM = 2


class SentinelProcess:
    """One ``redis-server --sentinel`` monitoring :data:`MASTER` at ``primary_port``."""

    def __init__(self, directory: Path, primary_port: int, password: str | None = None,
                 tls: ServerTLS | None = None):
        self.directory = directory
        self.tls = tls
        self.port = free_port()
        self.tls_port = free_port() if tls else None
        """With TLS, where the other Sentinels reach this one (clients use :attr:`port`)."""
        self.myid = secrets.token_hex(20)
        self.primary_port = primary_port
        self.password = password
        self.known: list[str] = []
        """Config lines naming the other Sentinels and the replicas (:meth:`SentinelRig.start`
        fills them in): without them a Sentinel learns them from hello messages only every
        2 s, and a failover needs them."""
        self.proc: subprocess.Popen[bytes] | None = None

    def _config(self) -> str:
        auth = [f"sentinel auth-pass {MASTER} {self.password}"] if self.password else []
        if self.tls is not None:  # clients ask in plain text; nodes and Sentinels talk TLS
            auth += [f"tls-port {self.tls_port}", f"tls-cert-file {self.tls.cert}",
                     f"tls-key-file {self.tls.key}", f"tls-ca-cert-file {self.tls.ca}",
                     "tls-auth-clients no", "tls-replication yes"]
        return "\n".join([
            f"port {self.port}", "bind 127.0.0.1", "protected-mode no", f"dir {self.directory}",
            f"sentinel myid {self.myid}",
            f"sentinel monitor {MASTER} 127.0.0.1 {self.primary_port} {QUORUM}",
            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {MASTER} 1", *auth, *self.known, ""])

    def start(self) -> SentinelProcess:
        self.directory.mkdir(parents=True, exist_ok=True)
        conf = self.directory / "sentinel.conf"
        conf.write_text(self._config())
        self.proc = subprocess.Popen(
            [redis_server_binary(), str(conf), "--sentinel", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._answers, timeout=10, what=f"Sentinel on port {self.port}")
        return self

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=1.0, socket_connect_timeout=1.0)

    def _answers(self) -> bool:
        try:
            return bool(self.client().ping())
        except redis.ConnectionError:
            return False

    def master_state(self) -> dict[str, object]:
        """What this Sentinel knows of :data:`MASTER` (``SENTINEL MASTERS``' entry)."""
        state: dict[str, object] = self.client().sentinel_masters()[MASTER]
        return state

    def primary_port_now(self) -> int | None:
        """The primary's port as this Sentinel names it; None if it does not answer."""
        try:
            addr = self.client().sentinel_get_master_addr_by_name(MASTER)
        except redis.RedisError:
            return None
        return None if not addr else int(addr[1])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class SentinelRig:
    """One primary, ``replicas`` replicas and ``sentinels`` Sentinels on 127.0.0.1, started
    by :meth:`start` and ready for a failover when it returns: every replica is in sync and
    every Sentinel knows the replicas and the other Sentinels."""

    def __init__(self, base: Path, replicas: int = 2, sentinels: int = 3,
                 password: str | None = None, tls: ServerTLS | None = None) -> None:
        """``tls``: the data nodes speak only TLS (replication too); the Sentinels listen in
        plain text and reach the nodes over TLS."""
        self.base = base
        self.password = password
        self.tls = tls
        # A full sync would otherwise wait 5 s for more replicas to share it.
        auth = ["--repl-diskless-sync-delay", "0",
                *(["--masterauth", password] if password else []),
                *(["--tls-replication", "yes"] if tls else [])]
        self.nodes = [RedisProcess(base / "node0", password=password, extra=auth, tls=tls)]
        primary = self.nodes[0].port
        self.nodes += [RedisProcess(base / f"node{i + 1}", password=password, tls=tls,
                                    extra=[*auth, "--replicaof", "127.0.0.1", str(primary)])
                       for i in range(replicas)]
        self.sentinels = [SentinelProcess(base / f"sentinel{i}", primary, password, tls)
                          for i in range(sentinels)]

    @property
    def sentinel_addrs(self) -> str:
        """``--redis-sentinel``'s value for this rig."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def url(self, db: int = 0) -> str:
        """A ``--redis-url`` whose host and port lead nowhere: with Sentinel only its
        database and password count."""
        auth = f":{self.password}@" if self.password else ""
        return f"{'rediss' if self.tls else 'redis'}://{auth}127.0.0.1:1/{db}"

    def start(self) -> SentinelRig:
        try:
            for node in self.nodes:
                node.start()
            wait_until(lambda: self._in_sync(self.nodes[0]), timeout=20,
                       what="replicas in sync")
            for s in self.sentinels:
                s.known = [f"sentinel known-replica {MASTER} 127.0.0.1 {n.port}"
                           for n in self.nodes[1:]]
                s.known += [f"sentinel known-sentinel {MASTER} 127.0.0.1 "
                            f"{o.tls_port or o.port} {o.myid}"
                            for o in self.sentinels if o is not s]
                s.start()
            wait_until(self._sentinels_ready, timeout=30,
                       what="Sentinels know the replicas and each other")
        except BaseException:
            self.stop()
            raise
        return self

    def _in_sync(self, primary: RedisProcess) -> bool:
        info = primary.client().info("replication")
        online = [v for k, v in info.items() if k.startswith("slave")
                  and isinstance(v, dict) and v.get("state") == "online"]
        return len(online) >= len(self.nodes) - 1

    def _sentinels_ready(self) -> bool:
        others = len(self.sentinels) - 1
        for s in self.sentinels:
            state = s.master_state()
            if int(str(state["num-slaves"])) < len(self.nodes) - 1 \
                    or int(str(state["num-other-sentinels"])) < others:
                return False
        return True

    def primary(self) -> RedisProcess:
        """The data node the Sentinels name as primary (by majority of those answering)."""
        ports = [p for p in (s.primary_port_now() for s in self.sentinels) if p is not None]
        port = max(set(ports), key=ports.count)
        return next(n for n in self.nodes if n.port == port)

    def replicas(self) -> list[RedisProcess]:
        """The data nodes other than the primary that still run."""
        primary = self.primary()
        return [n for n in self.nodes if n is not primary and n.proc is not None
                and n.proc.poll() is None]

    def kill_primary(self) -> RedisProcess:
        """``kill -9`` the primary; returns it (its AOF stays on disk)."""
        old = self.primary()
        old.kill()
        return old

    def wait_for_new_primary(self, old: RedisProcess, timeout: float = 30.0) -> RedisProcess:
        """Wait until every Sentinel names a primary other than ``old`` and that node says it
        is one; returns it. Raises AssertionError after ``timeout`` seconds."""
        def promoted() -> bool:
            ports = {s.primary_port_now() for s in self.sentinels}
            if len(ports) != 1 or old.port in ports or None in ports:
                return False
            node = next(n for n in self.nodes if n.port in ports)
            try:
                return node.client().info("replication")["role"] == "master"
            except redis.RedisError:
                return False
        wait_until(promoted, timeout=timeout, what="Sentinel to promote a replica",
                   interval=0.05)
        return self.primary()

    def wait_replicated(self, timeout: float = 30.0) -> None:
        """Wait until every running replica has what the primary had written when called.
        Replication is asynchronous: without this, a kill can take the last writes with it."""
        primary = self.primary()
        offset = int(primary.client().info("replication")["master_repl_offset"])

        def caught_up() -> bool:
            for node in self.replicas():
                try:
                    info = node.client().info("replication")
                except redis.RedisError:
                    return False
                if int(info.get("slave_repl_offset", -1)) < offset:
                    return False
            return True
        wait_until(caught_up, timeout=timeout, what="the replicas to catch up", interval=0.02)

    def failover(self, timeout: float = 30.0) -> tuple[RedisProcess, RedisProcess, float]:
        """Let the replicas catch up with what was written so far, kill the primary and wait
        for its successor: (old, new, seconds from the kill). ``kill_primary`` is the
        failover that races replication."""
        self.wait_replicated(timeout)
        started = time.monotonic()
        old = self.kill_primary()
        new = self.wait_for_new_primary(old, timeout)
        return old, new, time.monotonic() - started

    def kill_replica(self) -> RedisProcess:
        """``kill -9`` one replica that runs; returns it."""
        victim = self.replicas()[0]
        victim.kill()
        return victim

    def stop(self) -> None:
        for s in self.sentinels:
            s.stop()
        for node in self.nodes:
            node.stop()
