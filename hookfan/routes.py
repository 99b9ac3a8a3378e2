"""The route table and the pure host match. No I/O here."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from hookfan.signatures import Verification


@dataclass(frozen=True, order=True)
class Backend:
    route: str
    """The RequestClone that asked for this copy, as ``namespace/name``."""
    url: str
    """Base URL of the backend, ``http://host:port``; the request's path is appended."""


@dataclass(frozen=True)
class RouteTable:
    version: int = 0
    routes: Mapping[str, tuple[Backend, ...]] = field(default_factory=dict)
    """Normalised host -> backends, each backend once, in a stable order."""
    verify: Mapping[str, Verification] = field(default_factory=dict)
    """Normalised host -> how its requests are verified (``spec.verify``), for routed hosts
    only. Never part of :meth:`to_json`: it holds secrets, and is kept in a Redis key of its
    own (:data:`hookfan.keys.VERIFY`)."""

    def to_json(self) -> str:
        return json.dumps({
            "version": self.version,
            "routes": {h: [[b.route, b.url] for b in bs] for h, bs in sorted(self.routes.items())},
        })

    @classmethod
    def from_json(cls, text: str | bytes) -> RouteTable:
        data = json.loads(text)
        return cls(version=int(data["version"]), routes={
            host: tuple(Backend(route, url) for route, url in pairs)
            for host, pairs in data["routes"].items()
        })


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
                verify: Mapping[str, Verification] | None = None) -> RouteTable:
    """A table from (host, backend) pairs: hosts normalised, duplicate backends dropped.
    ``verify`` (keyed by host as written) is kept for the hosts that have a backend."""
    grouped: dict[str, set[Backend]] = {}
    for host, backend in entries:
        grouped.setdefault(normalize_host(host), set()).add(backend)
    checks = {normalize_host(h): v for h, v in (verify or {}).items()}
    return RouteTable(version, {h: tuple(sorted(bs)) for h, bs in sorted(grouped.items())},
                      {h: checks[h] for h in sorted(grouped) if h in checks})
