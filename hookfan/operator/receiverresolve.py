"""The operator's pure core for Receivers: (Receivers, Services, Namespaces, paths) -> (the
route table's webhook paths, each Receiver's Ready condition and status). No I/O here."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hookfan.routes import Backend, PathRoute, target_url

from .receivermodel import Receiver, Target
from .resolve import (
    INVALID_SPEC,
    PORT_NOT_FOUND,
    READY,
    SERVICE_NOT_FOUND,
    Condition,
    Invalid,
    Service,
    service_port,
    service_url,
)

CROSS_NAMESPACE_REFUSED = "CrossNamespaceRefused"
NAMESPACES_NOT_WATCHED = "NamespacesNotWatched"
PATH_CONFLICT = "WebhookPathConflict"

Labels = Mapping[str, str]


@dataclass(frozen=True)
class ReceiverResolution:
    paths: Mapping[str, PathRoute]
    """Webhook path -> what the intake serves there (suspended Receivers included)."""
    conditions: Mapping[str, Condition]
    """``namespace/name`` -> condition and status fields; none for a suspended Receiver
    (its status is kept as it is) or one without a path yet."""


@dataclass(frozen=True)
class _Found:
    backends: tuple[tuple[Backend, Service], ...]
    failure: tuple[str, str] | None
    """(reason, message) of the first thing wrong, or None."""


def _namespaces(target: Target, own: str, namespaces: Mapping[str, Labels] | None,
                cross: bool) -> tuple[list[str], tuple[str, str] | None]:
    """The namespaces a target reaches, and why some it selects are not reached."""
    if target.selector is None:
        return [own], None
    if namespaces is None:
        return [], (NAMESPACES_NOT_WATCHED, (
            "a namespaceSelector needs the operator to watch every namespace: run it with "
            "--watch-all-namespaces=true, or drop the selector"))
    chosen = sorted(ns for ns, labels in namespaces.items() if target.selector.matches(labels))
    others = [ns for ns in chosen if ns != own]
    if others and not cross:
        return [ns for ns in chosen if ns == own], (CROSS_NAMESPACE_REFUSED, (
            f"namespaceSelector selects namespaces other than {own} ({', '.join(others)}): "
            "the operator runs with --receiver-cross-namespace=false; select only this "
            "namespace, or create a Receiver in each"))
    return chosen, None


def _target(rcv: Receiver, i: int, target: Target, services: Mapping[tuple[str, str], Service],
            namespaces: Mapping[str, Labels] | None, cross: bool) -> _Found:
    reached, failure = _namespaces(target, rcv.namespace, namespaces, cross)
    found: list[tuple[Backend, Service]] = []
    for ns in reached:
        svc = services.get((ns, target.service_name))
        if svc is None:
            continue  # a selected namespace without that Service has nothing to send to
        port = service_port(svc, target.port)
        if port is None:
            have = ", ".join(p.name or str(p.port) for p in svc.ports) or "none"
            failure = failure or (PORT_NOT_FOUND, (
                f"target {i}: Service {ns}/{svc.name} has no port {target.port or '(unnamed)'!r} "
                f"(it has: {have}): fix spec.targets[{i}].service.port"))
            continue
        found.append((Backend(rcv.route, target_url(service_url(svc, port), target.path)), svc))
    if not found and failure is None:
        where = rcv.namespace if target.selector is None else "any selected namespace"
        failure = (SERVICE_NOT_FOUND, (
            f"target {i}: Service {target.service_name} not found in {where}: create it, or "
            f"fix spec.targets[{i}].service.name"))
    return _Found(tuple(found), failure)


def condition(rcv: Receiver, path: str, services: Mapping[tuple[str, str], Service],
              namespaces: Mapping[str, Labels] | None, cross: bool
              ) -> tuple[tuple[Backend, ...], Condition]:
    """The backends of one Receiver and its condition. Targets that resolve are served even
    while another does not (the condition then says which and why)."""
    backends: dict[Backend, Service] = {}
    failure = None
    for i, target in enumerate(rcv.targets):
        found = _target(rcv, i, target, services, namespaces, cross)
        backends.update(found.backends)
        failure = failure or found.failure
    catalog = sorted({(s.namespace, s.name) for s in backends.values()})
    extra = json.dumps({"webhookPath": path, "subResourceCatalog": [
        {"apiVersion": "v1", "kind": "Service", "name": name, "namespace": ns}
        for ns, name in catalog]}, sort_keys=True)
    if failure is not None:
        return tuple(sorted(backends)), Condition(False, failure[0], failure[1],
                                                  rcv.generation, extra)
    return tuple(sorted(backends)), Condition(True, READY, (
        f"receiving at {path} for {len(backends)} backend(s)"), rcv.generation, extra)


def resolve_receivers(receivers: Iterable[Receiver | Invalid],
                      services: Mapping[tuple[str, str], Service],
                      namespaces: Mapping[str, Labels] | None, paths: Mapping[str, str],
                      cross_namespace: bool = True) -> ReceiverResolution:
    """Every Receiver's route and condition. ``paths`` gives each Receiver's webhook path
    (``namespace/name`` -> path; one without is not served yet and gets no condition);
    ``namespaces`` (name -> labels) is None when they are not watched. Of two Receivers
    with one path the first by namespace/name keeps it, the other gets ``WebhookPathConflict``.
    """
    routes: dict[str, PathRoute] = {}
    conditions: dict[str, Condition] = {}
    for item in sorted({r.key: r for r in receivers}.values(), key=lambda r: r.key):
        if isinstance(item, Invalid):
            conditions[item.key] = Condition(False, INVALID_SPEC, (
                f"{item.message}: fix the Receiver's spec"), item.generation)
            continue
        path = paths.get(item.key, "")
        if not path:
            continue
        if path in routes:
            conditions[item.key] = Condition(False, PATH_CONFLICT, (
                f"webhook path {path} belongs to {routes[path].route}: remove "
                "status.webhookPath so a new one is generated"), item.generation)
            continue
        if item.suspended:
            routes[path] = PathRoute(item.route, (), item.mode, item.timeout, item.body_limit,
                                     True)
            continue
        backends, cond = condition(item, path, services, namespaces, cross_namespace)
        routes[path] = PathRoute(item.route, backends, item.mode, item.timeout, item.body_limit)
        conditions[item.key] = cond
    return ReceiverResolution(routes, conditions)
