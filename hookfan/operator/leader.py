"""Leader election over a ``coordination.k8s.io/v1`` Lease, as client-go does it.

One thread tries to acquire or renew the Lease every ``retry_period``. A held Lease counts as
expired when its record has not changed for ``lease_duration`` *by our own clock* (clocks of
different nodes are never compared). Writes use the Lease's resourceVersion, so two candidates
racing for it cannot both win (the loser gets 409 Conflict).

:meth:`LeaderElector.is_leader` is the check every write makes: it turns false as soon as the
last successful renewal is older than ``renew_deadline``, even while a renewal call hangs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

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


def _micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, api: client.CoordinationV1Api, cfg: LeaseConfig,
                 on_change: Callable[[bool], None] = lambda _: None,
                 before_call: Callable[[], None] = lambda: None) -> None:
        # The client's generated stubs insist on model objects; plain dicts serialise the same.
        self.api: Any = api
        self.cfg, self.on_change, self.before_call = cfg, on_change, before_call
        self._renewed: float | None = None
        self._observed: tuple[Any, float] = (None, 0.0)
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
                if self._try_acquire_or_renew():
                    self._renewed = time.monotonic()
            except Exception as exc:
                log.warning("lease round failed", extra={"error": type(exc).__name__})
            self._notify()
            stop.wait(self.cfg.retry_period)
        if self._was_leader and self.cfg.release_on_cancel:
            self.release()
        self._renewed = None
        self._notify()

    def _notify(self) -> None:
        leader = self.is_leader()
        if leader != self._was_leader:
            self._was_leader = leader
            log.info("leadership changed", extra={"leader": leader,
                                                  "identity": self.cfg.identity})
            self.on_change(leader)

    def _spec(self, lease: Any) -> dict[str, Any]:
        """The spec we write: renewing keeps acquireTime, taking over counts a transition."""
        now = _micro_time()
        spec = None if lease is None else lease.spec
        held = spec is not None and spec.holder_identity == self.cfg.identity
        transitions = (spec.lease_transitions or 0) if spec is not None else 0
        acquired = spec.acquire_time if held and spec is not None else None
        return {"holderIdentity": self.cfg.identity,
                "leaseDurationSeconds": max(1, int(self.cfg.lease_duration)),
                "acquireTime": acquired.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if acquired else now,
                "renewTime": now,
                "leaseTransitions": transitions if held else transitions + 1}

    def _try_acquire_or_renew(self) -> bool:
        self.before_call()
        try:
            lease = self.api.read_namespaced_lease(self.cfg.name, self.cfg.namespace,
                                                   _request_timeout=self.cfg.retry_period)
        except ApiException as exc:
            if exc.status != 404:
                raise
            body = {"metadata": {"name": self.cfg.name, "namespace": self.cfg.namespace},
                    "spec": self._spec(None)}
            return self._write(lambda: self.api.create_namespaced_lease(
                self.cfg.namespace, body, _request_timeout=self.cfg.retry_period))
        spec = lease.spec
        record = (spec.holder_identity, spec.renew_time, spec.lease_duration_seconds)
        if record != self._observed[0]:
            self._observed = (record, time.monotonic())
        mine = spec.holder_identity == self.cfg.identity
        duration = spec.lease_duration_seconds or self.cfg.lease_duration
        expired = time.monotonic() - self._observed[1] >= duration
        if not mine and spec.holder_identity and not expired:
            self._renewed = None  # someone else holds it: we are not the leader, now
            return False
        body = {"metadata": {"name": self.cfg.name, "namespace": self.cfg.namespace,
                             "resourceVersion": lease.metadata.resource_version},
                "spec": self._spec(lease)}
        return self._write(lambda: self.api.replace_namespaced_lease(
            self.cfg.name, self.cfg.namespace, body, _request_timeout=self.cfg.retry_period))

    def _write(self, call: Callable[[], Any]) -> bool:
        self.before_call()
        try:
            call()
            return True
        except ApiException as exc:
            if exc.status == 409:  # another candidate wrote first
                return False
            raise

    def release(self) -> None:
        """Hand the Lease back (empty holder, 1 s duration) so a standby takes over at once."""
        try:
            lease = self.api.read_namespaced_lease(self.cfg.name, self.cfg.namespace,
                                                   _request_timeout=2)
            if lease.spec.holder_identity != self.cfg.identity:
                return
            body = {"metadata": {"name": self.cfg.name, "namespace": self.cfg.namespace,
                                 "resourceVersion": lease.metadata.resource_version},
                    "spec": {"holderIdentity": "", "leaseDurationSeconds": 1,
                             "renewTime": _micro_time(),
                             "leaseTransitions": lease.spec.lease_transitions or 0}}
            self.api.replace_namespaced_lease(self.cfg.name, self.cfg.namespace, body,
                                              _request_timeout=2)
            log.info("lease released", extra={"identity": self.cfg.identity})
        except Exception as exc:
            log.warning("lease not released", extra={"error": type(exc).__name__})
