"""Leader election over a ``coordination.k8s.io/v1`` Lease, on the ``kubernetes`` client's own
``leaderelection`` package.

Each round is the library's ``LeaderElection.try_acquire_or_renew`` with its ``LeaseLock``:
client-go's rules, so a held Lease counts as expired when its record has not changed for
``lease_duration`` *by our own clock* (clocks of different nodes are never compared), and
writes carry the Lease's resourceVersion, so two candidates racing for it cannot both win.

What the library's loop lacks, this module adds around the round (its ``run`` cannot be
stopped, sleeps with ``time.sleep``, refuses periods under a second through ``sys.exit``, hands
no Lease back and would keep a leader writing for a whole renew deadline after another holder
appeared):

- :meth:`LeaderElector.is_leader`, the check every write makes: false as soon as another
  holder is seen, or once the last successful renewal is older than ``renew_deadline`` (even
  while a renewal call hangs);
- a loop that stops on an Event and then releases the Lease so a standby takes over at once;
- every API call after ``before_call`` (the client's rate limit) and within ``retry_period``;
- ``leaseTransitions`` counted on each change of holder, as client-go does.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from kubernetes import client
from kubernetes.leaderelection.leaderelection import LeaderElection
from kubernetes.leaderelection.resourcelock.leaselock import LeaseLock

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LeaseConfig:
    namespace: str
    name: str
    identity: str
    lease_duration: float = 35.0
    renew_deadline: float = 30.0
    retry_period: float = 5.0
    release_on_cancel: bool = True


class _Calls:
    """An API object whose every method call first runs ``before_call`` and carries
    ``_request_timeout`` (the library's lock calls without one, so a hung call would hang
    the election)."""

    def __init__(self, api: Any, timeout: float, before_call: Callable[[], None]) -> None:
        self._api, self._timeout, self._before_call = api, timeout, before_call

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._api, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            self._before_call()
            kwargs.setdefault("_request_timeout", self._timeout)
            return method(*args, **kwargs)
        return call


class _Lock(LeaseLock):
    """The library's Lease lock on our API client (it would build one from the default
    configuration, not the operator's kubeconfig), counting ``leaseTransitions``."""

    def __init__(self, api: Any, cfg: LeaseConfig) -> None:
        super().__init__(cfg.name, cfg.namespace, cfg.identity)  # type: ignore[no-untyped-call]
        self.api_instance = api

    def get_lease_spec(self, record: Any, current_spec: Any = None) -> Any:
        before = getattr(current_spec, "holder_identity", None)
        transitions = getattr(current_spec, "lease_transitions", None) or 0
        spec = super().get_lease_spec(record, current_spec)  # type: ignore[no-untyped-call]
        spec.lease_transitions = transitions + (before != record.holder_identity)
        return spec


class LeaderElector:
    def __init__(self, api: client.CoordinationV1Api, cfg: LeaseConfig,
                 on_change: Callable[[bool], None] = lambda _: None,
                 before_call: Callable[[], None] = lambda: None) -> None:
        self.api = _Calls(api, cfg.retry_period, before_call)
        self.cfg, self.on_change = cfg, on_change
        # The round reads only ``lock`` and ``lease_duration`` of its config; the library's
        # Config class would exit the process for the sub-second periods tests use.
        self._election = LeaderElection(SimpleNamespace(  # type: ignore[no-untyped-call]
            lock=_Lock(self.api, cfg), lease_duration=max(1, math.ceil(cfg.lease_duration))))
        self._renewed: float | None = None
        self._was_leader = False

    def is_leader(self) -> bool:
        """True while our last successful acquire/renew is within ``renew_deadline``."""
        renewed = self._renewed
        return renewed is not None and time.monotonic() - renewed < self.cfg.renew_deadline

    def run(self, stop: threading.Event) -> None:
        """Acquire and renew until ``stop``; then release the Lease if configured. Never
        raises: an API failure only means this round did not renew."""
        while not stop.is_set():
            try:
                if self._election.try_acquire_or_renew():  # type: ignore[no-untyped-call]
                    self._renewed = time.monotonic()
                elif self._held_elsewhere():
                    self._renewed = None  # someone else holds it: we are not the leader, now
            except Exception as exc:
                log.warning("lease round failed", extra={"error": type(exc).__name__})
            self._notify()
            stop.wait(self.cfg.retry_period)
        if self._was_leader and self.cfg.release_on_cancel:
            self.release()
        self._renewed = None
        self._notify()

    def _held_elsewhere(self) -> bool:
        seen = self._election.observed_record
        return seen is not None and seen.holder_identity not in (None, self.cfg.identity)

    def _notify(self) -> None:
        leader = self.is_leader()
        if leader != self._was_leader:
            self._was_leader = leader
            log.info("leadership changed", extra={"leader": leader,
                                                  "identity": self.cfg.identity})
            self.on_change(leader)

    def release(self) -> None:
        """Hand the Lease back (empty holder, 1 s duration) so a standby takes over at once."""
        try:
            lease = self.api.read_namespaced_lease(self.cfg.name, self.cfg.namespace)
            if lease.spec.holder_identity != self.cfg.identity:
                return
            body = {"metadata": {"name": self.cfg.name, "namespace": self.cfg.namespace,
                                 "resourceVersion": lease.metadata.resource_version},
                    "spec": {"holderIdentity": "", "leaseDurationSeconds": 1,
                             "renewTime": datetime.now(UTC).strftime(
                                 "%Y-%m-%dT%H:%M:%S.%fZ"),
                             "leaseTransitions": lease.spec.lease_transitions or 0}}
            self.api.replace_namespaced_lease(self.cfg.name, self.cfg.namespace, body)
            log.info("lease released", extra={"identity": self.cfg.identity})
        except Exception as exc:
            log.warning("lease not released", extra={"error": type(exc).__name__})
