"""Backends as an operator sees them: their routes, policy and backlog, and pausing them.

A paused backend's copies stay in its ready queue and are neither dispatched nor claimed
(``dispatch.lua``, ``settle.lua``); attempts already in flight finish. Nothing is written per
copy while it stays paused. ``resume.lua`` moves each pending copy's retry-age start forward
by the time it spent paused (a chunk of copies per call), so a pause never brings a copy
closer to ``--max-retry-age``.
The pause itself is one hash entry (:data:`keys.PAUSED`), set by ``hookfan backends pause``
or by a worker's ``--auto-pause-after``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from typing import Any

from hookfan import deliverypolicy, keys, scripts
from hookfan.config import DeliverySettings
from hookfan.deliverypolicy import DeliveryPolicy
from hookfan.routes import RouteTable

RESUME_CHUNK = 1000
"""Copies one resume script call moves: Redis is held about a millisecond per call."""
AGE_SCAN = 100_000
"""Copies read per backend to find the oldest (``hookfan backends list``): past it the age
is that of the oldest among those read."""


@dataclass(frozen=True)
class Pause:
    """Why and since when a backend is paused."""

    since: float
    """Unix time (Redis clock)."""
    by: str
    """``cli`` (``hookfan backends pause``) or ``auto`` (``--auto-pause-after``)."""
    reason: str

    @classmethod
    def parse(cls, raw: bytes | str) -> Pause:
        data = json.loads(raw)
        return cls(int(data.get("since") or 0) / 1000, str(data.get("by") or ""),
                   str(data.get("reason") or ""))


@dataclass(frozen=True)
class BackendView:
    """One line of ``hookfan backends list``."""

    url: str
    routes: list[str]
    policy: dict[str, Any]
    in_flight: int
    pending: int
    """Copies not yet delivered nor dead-lettered (ready, waiting to retry, or in flight)."""
    oldest_age: float | None
    """Seconds the oldest pending copy has aged toward ``--max-retry-age`` (paused time not
    counted); None when nothing is pending."""
    paused: Pause | None
    last_error: str | None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["paused"] = self.paused is not None
        out["pause"] = asdict(self.paused) if self.paused is not None else None
        return out


def policy_of(worker: dict[str, Any], route: DeliveryPolicy | None = None) -> dict[str, Any]:
    """The delivery policy in effect for a backend: the worker flags, overridden field by
    field by its routes' ``spec.delivery`` (``route``, already merged: the stricter value
    wins). Pure."""
    out = dict(worker)
    if route is None:
        return out
    for name, value in (("maxRetryAge", route.max_retry_age),
                        ("minRetryDelay", route.min_retry_delay),
                        ("maxRetryDelay", route.max_retry_delay),
                        ("concurrency", 1 if route.ordered else route.concurrency)):
        if value is not None:
            out[name] = value
    if route.rate is not None:
        out["rateLimit"] = {"perSecond": route.rate, "burst": route.bucket}
    if route.ordered:
        out["ordered"] = True
    return out


def worker_policy(s: DeliverySettings) -> dict[str, Any]:
    """The policy fields a worker's flags set, named as ``spec.delivery`` names them."""
    return {"maxRetryAge": s.max_retry_age, "minRetryDelay": s.min_retry_delay,
            "maxRetryDelay": s.max_retry_delay, "concurrency": s.backend_concurrency,
            "deliveryTimeout": s.delivery_timeout, "autoPauseAfter": s.auto_pause_after}


def publish_worker_policy(client: Any, s: DeliverySettings) -> None:
    """Record the worker's flags for ``hookfan backends list``. Raises redis errors."""
    client.set(keys.WORKER_POLICY, json.dumps(worker_policy(s)))


def age_toward_limit(started: float, now: float, pause: Pause | None) -> float:
    """Seconds a copy whose retry age started at ``started`` has aged: the time since, less
    the current pause (resume moves ``started`` by it). Pure."""
    end = min(now, pause.since) if pause is not None else now
    return max(0.0, end - max(started, 0.0)) if started < end else 0.0


class UnknownBackend(LookupError):
    """A URL or route hookfan has no backend for; the message names the fix."""


class Backends:
    """Pause, resume and list backends; ``client`` is a redis-py client returning bytes."""

    def __init__(self, client: Any) -> None:
        self.r = client
        self.scripts = scripts.register(client)

    def now(self) -> float:
        return scripts.redis_time(self.r)

    def paused(self) -> dict[str, Pause]:
        """Every paused backend URL and its pause."""
        return {u.decode(): Pause.parse(v) for u, v in self.r.hgetall(keys.PAUSED).items()}

    def pause(self, url: str, by: str = "cli", reason: str = "") -> bool:
        """Pause ``url``; False when it already was (its first pause is kept)."""
        return bool(self.scripts["pause"](keys=[keys.PAUSED, keys.DUE], args=[url, by, reason]))

    def resume(self, url: str, chunk: int = RESUME_CHUNK) -> tuple[int, float] | None:
        """Resume ``url``: (pending copies whose age start was moved, seconds it was paused),
        or None when it was not paused. ``chunk`` copies per script call; an error between
        calls leaves the backend paused, and calling again goes on where it stopped."""
        moved = 0
        while True:
            out = self.scripts["resume"](
                keys=[keys.PAUSED, keys.copies(url), keys.ready(url), keys.DUE, keys.FAILING,
                      keys.OWNED, keys.resuming(url)], args=[url, chunk])
            if not isinstance(out, list):
                return None
            moved += int(out[0])
            if int(out[2]):
                return moved, int(out[1]) / 1000

    def routes_by_url(self, table: RouteTable | None) -> dict[str, set[str]]:
        """Backend URL -> routes naming it: in the route table, and in the figures workers
        kept (a route gone from the table whose copies are still pending)."""
        out: dict[str, set[str]] = defaultdict(set)
        if table is not None:
            for bs in table.routes.values():
                for b in bs:
                    out[b.url].add(b.route)
            for rcv in table.receivers.values():
                for b in rcv.backends:
                    out[b.url].add(b.route)
        for field in self.r.hkeys(keys.STATS):
            _, _, pair = field.decode().partition(":")
            route, _, url = pair.rpartition(" ")
            if route and url:
                out[url].add(route)
        return out

    def resolve(self, url: str | None, route: str | None,
                table: RouteTable | None) -> list[str]:
        """The backend URLs a ``pause``/``resume`` names: ``url`` itself, or every backend of
        ``route``. Raises :class:`UnknownBackend` naming the fix."""
        by_url = self.routes_by_url(table)
        known = set(by_url) | {u.decode() for u in self.r.smembers(keys.BACKENDS)}
        if route is not None:
            urls = sorted(u for u, rs in by_url.items() if route in rs)
            if not urls:
                raise UnknownBackend(
                    f"no backend for route {route!r}: give it as NAMESPACE/NAME of a "
                    "RequestClone (receiver:NAMESPACE/NAME for a Receiver); "
                    "`hookfan backends list` shows the routes")
            return urls
        if url is None or url not in known | set(self.paused()):
            raise UnknownBackend(
                f"no backend {url!r}: give a URL exactly as `hookfan backends list` shows it "
                "(e.g. http://10.0.0.7:8080), or --route NAMESPACE/NAME")
        return [url]

    def views(self, table: RouteTable | None) -> list[BackendView]:
        """Every backend that is routed, has had a copy, or is paused, by URL."""
        by_url = self.routes_by_url(table)
        paused = self.paused()
        urls = sorted(set(by_url) | {u.decode() for u in self.r.smembers(keys.BACKENDS)}
                      | set(paused))
        raw = self.r.get(keys.WORKER_POLICY)
        worker = json.loads(raw) if raw else {}
        policies = deliverypolicy.load(self.r.get(keys.POLICY))
        stats = {k.decode(): v.decode() for k, v in self.r.hgetall(keys.STATS).items()}
        pipe = self.r.pipeline(transaction=False)
        for url in urls:
            pipe.hlen(keys.copies(url))
            pipe.zcard(keys.inflight(url))
        counts = iter(pipe.execute())
        now = self.now()
        out = []
        for url, pending, in_flight in zip(urls, counts, counts, strict=True):
            routes = sorted(by_url.get(url, ()))
            errors = [v for k, v in sorted(stats.items())
                      if k.startswith("last_error:") and k.endswith(" " + url)]
            out.append(BackendView(url, routes, policy_of(worker, policies.get(url)),
                                   int(in_flight),
                                   int(pending), self._oldest(url, now, paused.get(url))
                                   if pending else None, paused.get(url),
                                   errors[-1] if errors else None))
        return out

    def _oldest(self, url: str, now: float, pause: Pause | None) -> float | None:
        oldest: float | None = None
        for n, (_, value) in enumerate(self.r.hscan_iter(keys.copies(url), count=1000)):
            started = int(value.split(b" ", 3)[2]) / 1000
            oldest = started if oldest is None else min(oldest, started)
            if n + 1 >= AGE_SCAN:
                break
        return None if oldest is None else round(age_toward_limit(oldest, now, pause), 3)

    def pop_events(self, count: int = 100) -> list[dict[str, Any]]:
        """Take up to ``count`` auto-pauses for Events (oldest first); malformed ones are
        dropped."""
        out = []
        for raw in self.r.lpop(keys.PAUSE_EVENTS, count) or []:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if isinstance(event, dict):
                out.append(event)
        return out
