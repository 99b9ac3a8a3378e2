"""The operator's pure core: (RequestClones, Services) -> (route table, Ready conditions).

No I/O here. The Kubernetes watch loops feed :func:`resolve` a snapshot of their caches and
publish what it returns: the whole table in one write, and one condition per RequestClone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from hookfan.deliverypolicy import DeliveryPolicy, stricter
from hookfan.routes import Backend, RouteTable, build_table, normalize_host
from hookfan.signatures import Verification

from .model import InvalidSpec, RequestClone
from .verifyspec import verification

T = TypeVar("T")

READY = "ServiceBackendReady"
SERVICE_NOT_FOUND = "ServiceNotFound"
PORT_NOT_FOUND = "ServicePortNotFound"
INVALID_SPEC = "InvalidSpec"
HOST_CLAIMED = "HostClaimedByOtherNamespace"
VERIFY_CONFLICT = "VerifyConflict"
SECRET_NOT_FOUND = "SecretNotFound"
INVALID_SECRET = "InvalidSecret"
POLICY_MERGED = "DeliveryPolicyMerged"

HOST_POLICIES = ("namespace", "shared")


@dataclass(frozen=True)
class ServicePort:
    name: str
    port: int
    target_port: int | str | None = None


@dataclass(frozen=True)
class Service:
    namespace: str
    name: str
    cluster_ip: str
    """``""`` or ``"None"`` for a headless Service."""
    ports: tuple[ServicePort, ...] = ()

    @property
    def headless(self) -> bool:
        return self.cluster_ip in ("", "None")


@dataclass(frozen=True)
class Invalid:
    """A RequestClone object that does not match the CRD schema."""

    namespace: str
    name: str
    generation: int
    message: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


def checked(obj: Mapping[str, Any], parse: Callable[[dict[str, Any]], T]) -> T | Invalid:
    """``parse(obj)``, or an :class:`Invalid` carrying its InvalidSpec message."""
    meta = obj.get("metadata") or {}
    try:
        return parse(dict(obj))
    except InvalidSpec as exc:
        return Invalid(str(meta.get("namespace") or ""), str(meta.get("name") or ""),
                       int(meta.get("generation") or 0), str(exc))


@dataclass(frozen=True)
class Condition:
    """The ``Ready`` condition one RequestClone should carry."""

    ready: bool
    reason: str
    message: str
    generation: int
    extra: str = ""
    """Further status fields to write with it, as sorted JSON (a Receiver's webhookPath and
    subResourceCatalog); ``""``: none."""


@dataclass(frozen=True)
class Resolution:
    table: RouteTable
    """Version 0: the store assigns the published version."""
    conditions: Mapping[str, Condition]
    """``namespace/name`` -> condition, one per RequestClone given (valid or not)."""


def _age(clone: RequestClone) -> tuple[str, str, str]:
    # RFC 3339 timestamps in UTC sort as text; an empty one (a file) sorts first, then by name.
    return (clone.created, clone.name, clone.namespace)


def host_owners(clones: Iterable[RequestClone]) -> dict[str, str]:
    """Normalised host -> the namespace of its oldest RequestClone (creationTimestamp, then
    name). Readiness does not matter: a claim holds while the oldest RequestClone exists."""
    oldest: dict[str, RequestClone] = {}
    for clone in clones:
        host = normalize_host(clone.host)
        if host not in oldest or _age(clone) < _age(oldest[host]):
            oldest[host] = clone
    return {host: clone.namespace for host, clone in oldest.items()}


def claimed_elsewhere(clones: Iterable[RequestClone], policy: str) -> dict[str, str]:
    """``namespace/name`` -> owning namespace, for each RequestClone whose host another
    namespace owns. Always empty under the ``shared`` policy."""
    if policy == "shared":
        return {}
    clones = list(clones)
    owners = host_owners(clones)
    return {c.key: owners[normalize_host(c.host)] for c in clones
            if owners[normalize_host(c.host)] != c.namespace}


class Unverifiable(Exception):
    """A host's ``spec.verify`` cannot be applied: its RequestClones must not serve (a host
    that asked for verification is never served unverified)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


SecretOf = Callable[[RequestClone], bytes]
"""The raw value of a RequestClone's verify secret; raises :class:`Unverifiable`."""


def no_secrets(clone: RequestClone) -> bytes:
    raise Unverifiable(SECRET_NOT_FOUND, "no source of secrets is configured")


def host_verifications(clones: Iterable[RequestClone], secret_of: SecretOf
                       ) -> tuple[dict[str, Verification], dict[str, tuple[str, str]]]:
    """(host -> its verification, ``namespace/name`` -> (reason, message) of each clone that
    must not serve). The oldest RequestClone of a host (creationTimestamp, then name) says
    what the host's verify is; a newer one saying otherwise gets ``VerifyConflict``. When the
    oldest's secret cannot be had, every clone of the host is refused."""
    by_host: dict[str, list[RequestClone]] = {}
    for clone in clones:
        by_host.setdefault(normalize_host(clone.host), []).append(clone)
    verify: dict[str, Verification] = {}
    refused: dict[str, tuple[str, str]] = {}
    for host, group in by_host.items():
        first, *rest = sorted(group, key=_age)
        said = first.verify.describe() if first.verify else "no verify"
        for clone in rest:
            if clone.verify != first.verify:
                refused[clone.key] = (VERIFY_CONFLICT, (
                    f"spec.verify differs from that of {first.key}, the oldest RequestClone of "
                    f"host {host} ({said}): make them equal"))
        if first.verify is None:
            continue
        try:
            try:
                verify[host] = verification(first.verify, secret_of(first))
            except ValueError as exc:
                raise Unverifiable(INVALID_SECRET, str(exc)) from None
        except Unverifiable as exc:
            for clone in group:
                refused.setdefault(clone.key, (exc.reason, (
                    f"{exc.message}; requests for host {host} get 503 until it is fixed")))
    return verify, refused


def backend_policies(clones: Iterable[RequestClone], entries: Iterable[tuple[str, Backend]]
                     ) -> tuple[dict[str, DeliveryPolicy], dict[str, str]]:
    """(backend URL -> its delivery policy, ``namespace/name`` -> why its policy is not the
    one applied). The RequestClones routing to one URL (``entries``, by their route) share it:
    where their ``spec.delivery`` differ, :func:`~hookfan.deliverypolicy.stricter` of all of
    them applies, and each of them is told so."""
    by_key = {c.key: c for c in clones}
    by_url: dict[str, list[RequestClone]] = {}
    for _, backend in entries:
        clone = by_key.get(backend.route)
        if clone is not None and clone not in by_url.setdefault(backend.url, []):
            by_url[backend.url].append(clone)
    policies: dict[str, DeliveryPolicy] = {}
    merged: dict[str, str] = {}
    for url, group in by_url.items():
        policy = group[0].delivery
        for clone in group[1:]:
            policy = stricter(policy, clone.delivery)
        if not policy.empty:
            policies[url] = policy
        if len({c.delivery for c in group}) > 1:
            others = ", ".join(sorted(c.key for c in group))
            for clone in group:
                merged[clone.key] = (
                    f"backend {url} is shared by {others}, whose spec.delivery differ: the "
                    f"stricter value of each field applies ({policy.describe() or 'none'}); "
                    "make them equal to silence this")
    return policies, merged


def service_port(service: Service, wanted: int | str) -> int | None:
    """The port to dial for ``wanted`` (a port name or number; ``""``: the Service's only
    port), or None if the Service has none. A headless Service is dialled on the Pods
    directly, so its numeric targetPort wins."""
    if isinstance(wanted, int) and not service.ports:
        return wanted
    if wanted == "" and len(service.ports) == 1:
        wanted = service.ports[0].name or service.ports[0].port
    for p in service.ports:
        if p.name == wanted or p.port == wanted:
            if service.headless and isinstance(p.target_port, int):
                return p.target_port
            return p.port
    return None


def backend_condition(clone: RequestClone, services: Mapping[tuple[str, str], Service]
                      ) -> tuple[Backend | None, Condition]:
    """The backend for one RequestClone and its condition (not ready: no backend)."""
    gen, ns, svc_name = clone.generation, clone.namespace, clone.service_name
    svc = services.get((ns, svc_name))
    if svc is None:
        return None, Condition(False, SERVICE_NOT_FOUND, (
            f"Service {ns}/{svc_name} not found: create it, or fix spec.backend.serviceName"), gen)
    port = service_port(svc, clone.service_port)
    if port is None:
        have = ", ".join(p.name or str(p.port) for p in svc.ports) or "none"
        return None, Condition(False, PORT_NOT_FOUND, (
            f"Service {ns}/{svc_name} has no port {clone.service_port!r} (it has: {have}): "
            "fix spec.backend.servicePort or add the port to the Service"), gen)
    url = service_url(svc, port)
    return Backend(clone.key, url), Condition(True, READY, f"delivering to {url}", gen)


def service_url(svc: Service, port: int) -> str:
    """``http://<clusterIP>:<port>``; a headless Service by its DNS name."""
    host = f"{svc.name}.{svc.namespace}.svc" if svc.headless else svc.cluster_ip
    if ":" in host:  # an IPv6 clusterIP
        host = f"[{host}]"
    return f"http://{host}:{port}"


def resolve(clones: Iterable[RequestClone | Invalid],
            services: Mapping[tuple[str, str], Service],
            policy: str = "namespace", secret_of: SecretOf = no_secrets) -> Resolution:
    """The route table and every RequestClone's condition.

    ``services`` is keyed by (namespace, name). A malformed object gets ``InvalidSpec``; under
    the ``namespace`` policy a RequestClone whose host another namespace owns gets
    ``HostClaimedByOtherNamespace`` and no backend; otherwise the Service decides. Of several
    objects with one namespace/name (files can say it twice), the last one counts, for its
    condition and its route alike. ``spec.verify``: :func:`host_verifications`.
    """
    items = list({c.key: c for c in clones}.values())
    valid = [c for c in items if isinstance(c, RequestClone)]
    denied = claimed_elsewhere(valid, policy)
    verify, refused = host_verifications([c for c in valid if c.key not in denied], secret_of)
    conditions: dict[str, Condition] = {}
    entries: list[tuple[str, Backend]] = []
    for item in items:
        if isinstance(item, Invalid):
            conditions[item.key] = Condition(False, INVALID_SPEC, (
                f"{item.message}: fix the RequestClone's spec"), item.generation)
            continue
        if item.key in denied:
            conditions[item.key] = Condition(False, HOST_CLAIMED, (
                f"host {normalize_host(item.host)} belongs to namespace {denied[item.key]} "
                "(its RequestClone is older): use another host, or run the operator with "
                "--host-policy shared"), item.generation)
            continue
        if item.key in refused:
            reason, message = refused[item.key]
            conditions[item.key] = Condition(False, reason, message, item.generation)
            continue
        backend, cond = backend_condition(item, services)
        if backend is not None and item.verify is not None:
            cond = Condition(True, cond.reason, f"{cond.message}, verifying "
                             f"{item.verify.provider} signatures", cond.generation)
        conditions[item.key] = cond
        if backend is not None:
            entries.append((item.host, backend))
    policies, merged = backend_policies(valid, entries)
    for key, message in merged.items():
        cond = conditions[key]
        conditions[key] = Condition(True, POLICY_MERGED, f"{cond.message}; {message}",
                                    cond.generation)
    return Resolution(build_table(entries, 0, verify=verify, policies=policies), conditions)
