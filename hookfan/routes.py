"""The route table and the pure host match. No I/O here."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hookfan.deliverypolicy import DeliveryPolicy
from hookfan.signatures import Verification


@dataclass(frozen=True, order=True)
class Backend:
    route: str
    """The RequestClone that asked for this copy, as ``namespace/name``."""
    url: str
    """Base URL of the backend, ``http://host:port``; the request's path is appended."""


RECEIVER_ROUTE = "receiver:"
"""Prefix of a Receiver's route label (``receiver:namespace/name``): a RequestClone and a
Receiver of the same namespace/name never share delivery figures or metrics."""
RESPONSE_TYPES = ("Async", "AwaitAllPreferSuccessful", "AwaitAllPreferFailed", "AwaitAllReport")


@dataclass(frozen=True)
class PathRoute:
    """A Receiver as the intake serves it, under its webhook path."""

    route: str
    """``receiver:namespace/name``."""
    backends: tuple[Backend, ...] = ()
    """One per resolved target; each URL ends with the target's path (``http://h:p/x``), to
    which the worker sends the copy with the request's query string."""
    mode: str = "Async"
    """``spec.responseType``, kept as written: ``Async`` is answered 202, the AwaitAll modes
    with the targets' first answers (:mod:`hookfan.answers`)."""
    timeout: float = 10.0
    """``spec.timeout`` in seconds: how long an AwaitAll request waits for the first answers
    (each attempt is bounded by --delivery-timeout)."""
    body_limit: int = 0
    """``spec.bodySizeLimit`` in bytes; 0: the app's --body-size-limit."""
    suspended: bool = False
    """``spec.suspend``: the intake answers 503 with Retry-After."""

    def to_list(self) -> list[object]:
        return [self.route, [[b.route, b.url] for b in self.backends], self.mode,
                self.timeout, self.body_limit, self.suspended]

    @classmethod
    def from_list(cls, item: list[Any]) -> PathRoute:
        route, pairs, mode, timeout, limit, suspended = item
        return cls(str(route), tuple(Backend(r, u) for r, u in pairs), str(mode),
                   float(timeout), int(limit), bool(suspended))


@dataclass(frozen=True)
class RouteTable:
    version: int = 0
    routes: Mapping[str, tuple[Backend, ...]] = field(default_factory=dict)
    """Normalised host -> backends, each backend once, in a stable order."""
    receivers: Mapping[str, PathRoute] = field(default_factory=dict)
    """Webhook path (``/hooks/...``) -> the Receiver served there."""
    verify: Mapping[str, Verification] = field(default_factory=dict)
    """Normalised host -> how its requests are verified (``spec.verify``), for routed hosts
    only. Never part of :meth:`to_json`: it holds secrets, and is kept in a Redis key of its
    own (:data:`hookfan.keys.VERIFY`)."""
    policies: Mapping[str, DeliveryPolicy] = field(default_factory=dict)
    """Backend URL -> its delivery policy (``spec.delivery``), for backends that have one.
    Not part of :meth:`to_json` either: the workers read it from :data:`hookfan.keys.POLICY`,
    and the intake has no use for it."""

    def to_json(self) -> str:
        data: dict[str, object] = {
            "version": self.version,
            "routes": {h: [[b.route, b.url] for b in bs] for h, bs in sorted(self.routes.items())},
        }
        if self.receivers:  # absent when there are none: the table tables had before
            data["receivers"] = {p: r.to_list() for p, r in sorted(self.receivers.items())}
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str | bytes) -> RouteTable:
        data = json.loads(text)
        return cls(version=int(data["version"]), routes={
            host: tuple(Backend(route, url) for route, url in pairs)
            for host, pairs in data["routes"].items()
        }, receivers={p: PathRoute.from_list(r)
                      for p, r in (data.get("receivers") or {}).items()})


def normalize_host(host: str) -> str:
    """Lower-case, without port or trailing dot: ``WEB.example.com:8080`` -> ``web.example.com``."""
    host = host.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit():
        host = name
    return host.rstrip(".")


_NOT_A_NAME = re.compile(r"[\x00-\x20\x7f/\\@?#\[\]]|\.\.|^\.|\.$").search
"""Whitespace or control characters, characters that end or leave the authority, an empty
label (``a..b``, ``.a``), or a trailing dot left after the one that is stripped."""


def request_host(host: str | None) -> str | None:
    """The route-table key for a request's Host value (lower-case, port dropped, one
    trailing dot stripped), or None for what DNS or RFC 3986 would refuse: an empty value,
    whitespace or control characters anywhere, a run of trailing dots or an empty label, a
    port that is not 1-5 digits up to 65535, an unclosed or unbracketed IPv6 literal."""
    if not host:
        return None
    name, port = host, ""
    if host.startswith("["):
        end = host.find("]")
        if end < 0 or (host[end + 1:] and host[end + 1] != ":") or _NOT_A_NAME(host[1:end]):
            return None
        name, port = host[: end + 1], host[end + 2:] if host[end + 1:] else ""
        if not port and host[end + 1:]:
            return None
    elif ":" in host:
        name, _, port = host.partition(":")
        if not port:
            return None
    if port and not (port.isdigit() and port.isascii() and len(port) <= 5
                     and int(port) <= 65535):
        return None
    if not name.startswith("["):
        name = name[:-1] if name.endswith(".") else name
        if not name or _NOT_A_NAME(name):
            return None
    return name.lower()


def match(table: RouteTable, host: str | None) -> tuple[Backend, ...]:
    """Backends for a request's Host header; empty when nothing matches (exact match only)
    or the value is not a valid host (:func:`request_host`)."""
    key = request_host(host)
    return () if key is None else table.routes.get(key, ())


def build_table(entries: list[tuple[str, Backend]], version: int,
                receivers: Mapping[str, PathRoute] | None = None,
                verify: Mapping[str, Verification] | None = None,
                policies: Mapping[str, DeliveryPolicy] | None = None) -> RouteTable:
    """A table from (host, backend) pairs: hosts normalised, duplicate backends dropped;
    ``receivers`` (webhook path -> Receiver) as given. ``verify`` (keyed by host as written)
    is kept for the hosts that have a backend; ``policies`` (backend URL -> policy) for the
    backends in the table, empty ones left out."""
    grouped: dict[str, set[Backend]] = {}
    for host, backend in entries:
        grouped.setdefault(normalize_host(host), set()).add(backend)
    checks = {normalize_host(h): v for h, v in (verify or {}).items()}
    return RouteTable(version, {h: tuple(sorted(bs)) for h, bs in sorted(grouped.items())},
                      receivers=dict(sorted((receivers or {}).items())),
                      verify={h: checks[h] for h in sorted(grouped) if h in checks},
                      policies=_policies(grouped, receivers, policies))


def _policies(grouped: Mapping[str, set[Backend]], receivers: Mapping[str, PathRoute] | None,
              policies: Mapping[str, DeliveryPolicy] | None) -> dict[str, DeliveryPolicy]:
    if not policies:
        return {}
    urls = {b.url for bs in grouped.values() for b in bs}
    urls |= {b.url for r in (receivers or {}).values() for b in r.backends}
    return {u: p for u, p in sorted(policies.items()) if u in urls and not p.empty}


def target_url(base: str, path: str) -> str:
    """A Receiver target's backend URL: ``base`` (``http://host:port``) and the target's path,
    which always starts with ``/`` (``""`` and ``"x"`` become ``/`` and ``/x``)."""
    return base + (path if path.startswith("/") else "/" + path)
