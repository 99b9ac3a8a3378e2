"""The route table and the pure host match. No I/O here."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field


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


def match(table: RouteTable, host: str | None) -> tuple[Backend, ...]:
    """Backends for a request's Host header; empty when nothing matches (exact match only)."""
    if not host:
        return ()
    return table.routes.get(normalize_host(host), ())


def build_table(entries: list[tuple[str, Backend]], version: int) -> RouteTable:
    """A table from (host, backend) pairs: hosts normalised, duplicate backends dropped."""
    grouped: dict[str, set[Backend]] = {}
    for host, backend in entries:
        grouped.setdefault(normalize_host(host), set()).add(backend)
    return RouteTable(version, {h: tuple(sorted(bs)) for h, bs in sorted(grouped.items())})
