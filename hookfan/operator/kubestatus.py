"""Ready conditions and Events on RequestClones: what to write, and writing it in parallel.

A condition is written only when it differs from the one the object carries (or the one this
process last wrote, before the watch shows it back); an Event goes with every write whose
(status, reason) differs from the previous one, so a resync that changes nothing writes nothing.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .kubeclient import Kube, now_rfc3339
from .resolve import Condition

log = logging.getLogger(__name__)

Seen = tuple[str, str, str, int, str]
"""(status, reason, message, observedGeneration, further fields as JSON) of a Ready
condition and the status fields written with it (:attr:`Condition.extra`)."""


def current(obj: Mapping[str, Any], extra: str = "") -> tuple[Seen | None, str | None]:
    """The object's Ready condition as :data:`Seen` (with the status fields ``extra`` names,
    as they are now), and its lastTransitionTime."""
    status = obj.get("status") or {}
    fields = "" if not extra else json.dumps(
        {k: status.get(k) for k in json.loads(extra)}, sort_keys=True)
    for c in (status.get("conditions") or []):
        if isinstance(c, dict) and c.get("type") == "Ready":
            seen = (str(c.get("status")), str(c.get("reason")), str(c.get("message")),
                    int(c.get("observedGeneration") or 0), fields)
            return seen, c.get("lastTransitionTime")
    return None, None


def seen_of(cond: Condition) -> Seen:
    return ("True" if cond.ready else "False", cond.reason, cond.message, cond.generation,
            cond.extra)


def status_body(cond: Condition, transition: str) -> dict[str, Any]:
    status, reason, message, gen, extra = seen_of(cond)
    return {**(json.loads(extra) if extra else {}), "observedGeneration": gen, "conditions": [{
        "type": "Ready", "status": status, "reason": reason, "message": message,
        "observedGeneration": gen, "lastTransitionTime": transition}]}


class StatusWriter:
    """Writes conditions with up to ``concurrent`` calls in flight. ``allowed()`` is checked
    right before each call, so a leader that lost its Lease stops writing at once."""

    def __init__(self, kube: Kube, concurrent: int, allowed: Callable[[], bool],
                 on_failure: Callable[[], None], plural: str = "requestclones") -> None:
        self.kube, self.allowed, self.on_failure = kube, allowed, on_failure
        self.plural = plural
        self._pool = ThreadPoolExecutor(max_workers=concurrent, thread_name_prefix="status")
        self._written: dict[tuple[str, str], Seen] = {}
        self._lock = threading.Lock()

    def reset(self) -> None:
        """Forget what was written (a new term as leader starts from what objects carry)."""
        with self._lock:
            self._written.clear()

    def sync(self, objects: Mapping[str, Mapping[str, Any]],
             conditions: Mapping[str, Condition]) -> int:
        """Queue a write for every object (``namespace/name`` -> object) whose condition
        differs; returns how many were queued."""
        queued = 0
        with self._lock:
            live = {(k, str(o["metadata"].get("uid"))) for k, o in objects.items()}
            for gone in set(self._written) - live:
                del self._written[gone]
            for key, cond in conditions.items():
                obj = objects.get(key)
                if obj is None:
                    continue
                slot = (key, str(obj["metadata"].get("uid")))
                want = seen_of(cond)
                have, transition = current(obj, cond.extra)
                before = self._written.get(slot, have)
                if want in (before, have):
                    continue
                self._written[slot] = want
                moved = before is None or before[:2] != want[:2]
                stamp = now_rfc3339() if have is None or have[0] != want[0] else transition
                self._pool.submit(self._write, slot, obj, cond, stamp or now_rfc3339(), moved)
                queued += 1
        return queued

    def _write(self, slot: tuple[str, str], obj: Mapping[str, Any], cond: Condition,
               transition: str, event: bool) -> None:
        meta = obj["metadata"]
        try:
            if not self.allowed():
                raise PermissionError("not the leader")
            self.kube.patch_status(meta["namespace"], meta["name"], status_body(cond, transition),
                                   self.plural)
            if event and self.allowed():
                self.kube.event(dict(obj), "Normal" if cond.ready else "Warning", cond.reason,
                                cond.message)
        except Exception as exc:
            with self._lock:
                self._written.pop(slot, None)
            if not isinstance(exc, PermissionError):
                log.warning("status not written", extra={"route": slot[0],
                                                         "error": type(exc).__name__})
                self.on_failure()

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
