"""The Kubernetes API as the operator uses it: configuration, a rate limit, and the few calls.

Thin on purpose: no decisions here beyond refusing unsafe kubeconfigs.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import yaml
from kubernetes import client
from kubernetes import config as _config
from kubernetes import watch as _watch

from . import receivermodel
from .model import GROUP, KIND, VERSION

# Parts of the client are untyped; its generated stubs insist on model objects where plain
# dicts serialise the same. Both are reached through Any.
config: Any = _config
watch: Any = _watch

PLURAL = "requestclones"
CUSTOM = {PLURAL: GROUP, receivermodel.PLURAL: receivermodel.GROUP}
"""The custom resources the operator reads: plural -> API group."""
SA_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


SECRET_FIELDS = "type!=helm.sh/release.v1"
"""The Secrets the operator lists and watches (for ``spec.verify``)."""


class KubeConfigError(ValueError):
    """The kubeconfig cannot or must not be used; the message says what to fix."""


def check_kubeconfig(path: str, allow_exec: bool, allow_insecure_tls: bool) -> None:
    """Refuse a kubeconfig whose current context runs an exec credential plugin, or turns TLS
    verification off, unless the matching ``--insecure-kubeconfig-*`` flag allows it."""
    try:
        with open(path, encoding="utf-8") as fh:
            doc = yaml.safe_load(fh) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise KubeConfigError(f"cannot read kubeconfig {path}: {exc}") from None
    ctx_name = doc.get("current-context")
    ctx = _named(doc, "contexts", ctx_name).get("context", {})
    user = _named(doc, "users", ctx.get("user")).get("user", {}) or {}
    cluster = _named(doc, "clusters", ctx.get("cluster")).get("cluster", {}) or {}
    if user.get("exec") and not allow_exec:
        raise KubeConfigError(f"kubeconfig {path} runs an exec credential plugin "
                              f"({user['exec'].get('command')!r}); pass "
                              "--insecure-kubeconfig-exec=true if you trust it")
    if cluster.get("insecure-skip-tls-verify") and not allow_insecure_tls:
        raise KubeConfigError(f"kubeconfig {path} turns TLS verification off; pass "
                              "--insecure-kubeconfig-tls=true to accept that")


def _named(doc: dict[str, Any], section: str, name: Any) -> dict[str, Any]:
    for item in doc.get(section) or []:
        if isinstance(item, dict) and item.get("name") == name:
            return item
    return {}


def api_client(kubeconfig: str | None, allow_exec: bool = False,
               allow_insecure_tls: bool = False) -> client.ApiClient:
    """A client of its own (the library's default configuration is left alone): from
    ``kubeconfig`` if given, else the in-cluster service account."""
    cfg = client.Configuration()
    if kubeconfig:
        check_kubeconfig(kubeconfig, allow_exec, allow_insecure_tls)
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg,
                                persist_config=False)
    else:
        try:
            config.load_incluster_config(client_configuration=cfg)
        except config.ConfigException as exc:
            raise KubeConfigError(f"not running in a cluster ({exc}); pass --kubeconfig, set "
                                  "KUBECONFIG, or use --routes-dir") from None
    return client.ApiClient(cfg)


class RateLimit:
    """A token bucket: ``qps`` calls per second sustained, ``burst`` at once. Thread-safe."""

    def __init__(self, qps: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.qps, self.burst, self.clock = qps, burst, clock
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def delay(self) -> float:
        """Take a token; return how long the caller must wait before using it."""
        with self._lock:
            now = self.clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
            self._last = now
            self._tokens -= 1
            return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    def acquire(self) -> None:
        wait = self.delay()
        if wait > 0:
            time.sleep(wait)


@dataclass(frozen=True)
class Scope:
    namespace: str | None
    """None: every namespace."""
    label_selector: str = ""


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Kube:
    """The operator's API calls, each behind the rate limit. Raises ``ApiException`` and
    urllib3 errors unchanged; callers decide about retries."""

    def __init__(self, api: client.ApiClient, limit: RateLimit, scope: Scope) -> None:
        self.api, self.limit, self.scope = api, limit, scope
        self.custom: Any = client.CustomObjectsApi(api)
        self.core: Any = client.CoreV1Api(api)
        self.coordination: Any = client.CoordinationV1Api(api)
        self._api: Any = api

    def _list_custom(self, group: str, plural: str, **kw: Any) -> Any:
        if self.scope.label_selector:
            kw["label_selector"] = self.scope.label_selector
        if self.scope.namespace is None:
            return self.custom.list_cluster_custom_object(group, VERSION, plural, **kw)
        return self.custom.list_namespaced_custom_object(group, VERSION, self.scope.namespace,
                                                         plural, **kw)

    def _list_clones(self, **kw: Any) -> Any:
        return self._list_custom(GROUP, PLURAL, **kw)

    def _list_receivers(self, **kw: Any) -> Any:
        return self._list_custom(receivermodel.GROUP, receivermodel.PLURAL, **kw)

    def _list_namespaces(self, **kw: Any) -> Any:
        return self.core.list_namespace(**kw)

    def _list_services(self, **kw: Any) -> Any:
        if self.scope.namespace is None:
            return self.core.list_service_for_all_namespaces(**kw)
        return self.core.list_namespaced_service(self.scope.namespace, **kw)

    def _list_secrets(self, **kw: Any) -> Any:
        # Helm keeps each release in a Secret (often hundreds of KiB): never a signing secret,
        # and in a big cluster the bulk of all Secrets' bytes.
        kw.setdefault("field_selector", SECRET_FIELDS)
        if self.scope.namespace is None:
            return self.core.list_secret_for_all_namespaces(**kw)
        return self.core.list_namespaced_secret(self.scope.namespace, **kw)

    def lister(self, kind: str) -> Callable[..., Any]:
        """``requestclones``, ``receivers``, ``secrets``, ``services`` or ``namespaces``
        (every one: a Namespace has no namespace to scope it)."""
        return {"requestclones": self._list_clones, "receivers": self._list_receivers,
                "secrets": self._list_secrets,
                "namespaces": self._list_namespaces}.get(kind, self._list_services)

    def list(self, kind: str, timeout: float) -> tuple[list[dict[str, Any]], str]:
        """Every object of ``kind`` in scope as plain dicts, and the list's resourceVersion."""
        self.limit.acquire()
        raw = self.lister(kind)(_request_timeout=timeout)
        if kind in CUSTOM:
            return list(raw.get("items") or []), str(raw["metadata"]["resourceVersion"])
        items = [self._api.sanitize_for_serialization(s) for s in raw.items]
        return items, str(raw.metadata.resource_version)

    def watch(self, kind: str, resource_version: str, timeout: int) -> Iterator[dict[str, Any]]:
        """Events (``{"type", "object"}`` with a plain-dict object) from ``resource_version``
        for at most ``timeout`` seconds. A 410 raises ``ApiException(status=410)``."""
        self.limit.acquire()
        stream = watch.Watch().stream(self.lister(kind), resource_version=resource_version,
                                      timeout_seconds=timeout, allow_watch_bookmarks=True,
                                      _request_timeout=(10, timeout + 10), deserialize=False)
        yield from stream

    def patch_status(self, namespace: str, name: str, status: dict[str, Any],
                     plural: str = PLURAL) -> None:
        self.limit.acquire()
        self.custom.patch_namespaced_custom_object_status(
            CUSTOM[plural], VERSION, namespace, plural, name, {"status": status},
            _request_timeout=10)

    def event(self, obj: dict[str, Any], kind: str, reason: str, message: str) -> None:
        """A core/v1 Event on a RequestClone or Receiver (``kind`` is Normal or Warning)."""
        meta = obj["metadata"]
        stamp = now_rfc3339()
        body = {
            "metadata": {"name": f"{meta['name']}.{time.time_ns():x}",
                         "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": obj.get("apiVersion") or f"{GROUP}/{VERSION}",
                               "kind": obj.get("kind") or KIND,
                               "name": meta["name"], "namespace": meta["namespace"],
                               "uid": meta.get("uid"),
                               "resourceVersion": meta.get("resourceVersion")},
            "reason": reason, "message": message, "type": kind,
            "source": {"component": "hookfan-operator"},
            "firstTimestamp": stamp, "lastTimestamp": stamp, "count": 1,
        }
        self.limit.acquire()
        self.core.create_namespaced_event(meta["namespace"], body, _request_timeout=10)
