"""Replica-acknowledged 202s across a failover (issue 15, part 3), with real processes: a
primary, three replicas and three Sentinels (AOF ``always`` on every data node), the operator,
the app with ``--min-replicas-ack 1``, a worker (restarted if it exits, as Kubernetes would),
and two backends, one of them flapping (it answers 503 every other second, so copies are
retried across the failover). Steady load of about 50 webhooks a second.

One replica is killed: accepts go on, acknowledged by the others. Then the replicas are stopped
(SIGSTOP) for a second and a half, so none can acknowledge, and the primary is killed; the
replicas resume and Sentinel promotes the most up-to-date one. Nothing is answered 202 while no
replica acknowledges, and every webhook answered 202 is delivered to both backends: 0 lost.
Figures (503s, the intake's 503 window, duplicates) are printed for docs/guarantees.md."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

from hookfan.store import connect
from tests.chaos.conftest import Supervisor
from tests.chaos.harness import Sender, marker_of, wait_delivered
from tests.conftest import route_file
from tests.sentinel.conftest import through_sentinel
from tests.stackfixtures import send
from tests.support.backends import Received
from tests.support.procs import Stack, wait_until
from tests.support.sentinel import MASTER, SentinelRig

HOST = "acked-failover.example.com"
STALL = 1.5
"""Seconds the replicas are stopped before the primary is killed."""
SETTLE = 0.7
"""Longer than --replica-ack-timeout and a round trip: a request whose WAIT was answered
before the replicas stopped has its 202 by then."""


def flapping(_req: Received, _n: int) -> tuple[int, dict[str, str]]:
    return (503 if int(time.monotonic()) % 2 else 200), {}


def test_with_one_replica_ack_every_202_survives_a_replica_and_then_the_primary_dying(
        tmp_path: Path, make_backend):
    rig = SentinelRig(tmp_path / "rig", replicas=3).start()
    steady, flappy = make_backend(), make_backend(respond=flapping)
    routes = tmp_path / "routes"
    routes.mkdir()
    route_file(routes, HOST, [steady, flappy])
    stack = Stack(rig.url(), routes, tmp_path / "logs",
                  env={"HOOKFAN_REDIS_SENTINEL": rig.sentinel_addrs,
                       "HOOKFAN_REDIS_SENTINEL_MASTER": MASTER},
                  client=connect(through_sentinel(rig)),
                  app_args=["--min-replicas-ack", "1", "--replica-ack-timeout", "500ms"],
                  worker_args=["--max-retry-delay", "5s"])
    supervisor = Supervisor(stack)
    sender = Sender(stack.url, HOST, threads=4, pace=0.07, prefix="f")
    try:
        stack.start()
        supervisor.start()
        first = send(stack, HOST, json.dumps({"marker": "first"}).encode())
        assert first.status_code == 202, first.text
        sender.start()
        sender.wait_accepted(50)
        rig.kill_replica()
        sender.wait_accepted(len(sender.accepted) + 50)  # the other replicas acknowledge
        replicas = rig.replicas()
        for r in replicas:
            os.kill(r.proc.pid, signal.SIGSTOP)
        time.sleep(SETTLE)
        stalled = set(sender.accepted)
        time.sleep(STALL - SETTLE)  # the load goes on; no replica can acknowledge
        during_stall = set(sender.accepted) - stalled
        before_kill, killed_at = len(sender.accepted), time.monotonic()
        old = rig.kill_primary()
        for r in replicas:
            os.kill(r.proc.pid, signal.SIGCONT)
        rig.wait_for_new_primary(old)
        promoted_in = time.monotonic() - killed_at
        wait_until(lambda: len(sender.accepted) > before_kill, timeout=60,
                   what="a 202 from the new primary", interval=0.02)
        window = time.monotonic() - killed_at
        sender.wait_accepted(len(sender.accepted) + 50)
        sender.stop()
        owed = sender.accepted | {"first"}
        wait_delivered([steady, flappy], owed, timeout=120)
        print(f"{sender.sent} sent, {len(owed)} answered 202, {sender.statuses[503]} answered "
              f"503, {sender.cut} cut; primary killed: promoted in {promoted_in:.1f} s, first "
              f"202 after the kill {window:.1f} s after it; process exits {supervisor.exits}")
        assert not during_stall  # nothing acknowledged while no replica could
        for name, backend in (("steady", steady), ("flapping", flappy)):
            got = Counter(marker_of(r) for r in list(backend.received))
            lost = owed - set(got)
            print(f"  {name}: {len(lost)} lost, {sum(got.values()) - len(got)} duplicates")
            assert not lost, f"{name}: {len(lost)} acknowledged webhooks lost: {sorted(lost)[:5]}"
        assert window < 30
    finally:
        supervisor.stop()
        sender.stop()
        stack.stop()
        rig.stop()
