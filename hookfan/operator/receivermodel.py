"""Receiver documents (the Go controller 1.x's kind): parsed and validated against the CRD's
own schema, label selectors, and webhook paths. Pure, except :func:`new_path` (random)."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jsonschema
import yaml

from hookfan.config import parse_duration
from hookfan.routes import RECEIVER_ROUTE, RESPONSE_TYPES

from .model import InvalidSpec, metadata

GROUP = "webhook.infra.doodle.com"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Receiver"
PLURAL = "receivers"

PATH_PREFIX = "/hooks/"
PATH_ALPHABET = string.ascii_letters + string.digits
PATH_LENGTH = 32
DEFAULT_TIMEOUT = 10.0


@dataclass(frozen=True)
class Selector:
    """A Kubernetes LabelSelector: ``matchLabels`` and ``matchExpressions``, ANDed."""

    labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    """(key, operator, values); operator In, NotIn, Exists or DoesNotExist."""

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.labels):
            return False
        for key, op, values in self.expressions:
            have = key in labels
            if op == "In" and not (have and labels[key] in values):
                return False
            if op == "NotIn" and have and labels[key] in values:
                return False
            if op == "Exists" and not have:
                return False
            if op == "DoesNotExist" and have:
                return False
        return True


@dataclass(frozen=True)
class Target:
    path: str
    service_name: str
    port: int | str
    """A port number or name; ``""`` when the manifest gives neither (the Service's only one)."""
    selector: Selector | None = None


@dataclass(frozen=True)
class Receiver:
    namespace: str
    name: str
    targets: tuple[Target, ...]
    mode: str = "Async"
    timeout: float = DEFAULT_TIMEOUT
    body_limit: int = 0
    suspended: bool = False
    webhook_path: str = ""
    """``status.webhookPath`` as the object (or file) carries it; ``""`` if none yet."""
    generation: int = 0
    uid: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def route(self) -> str:
        return RECEIVER_ROUTE + self.key


@functools.cache
def schema() -> dict[str, Any]:
    """The openAPIV3Schema of the shipped Receiver CRD (hookfan/receiver_crd.yaml)."""
    text = resources.files("hookfan").joinpath("receiver_crd.yaml").read_text()
    return dict(yaml.safe_load(text)["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def is_receiver(doc: Any) -> bool:
    return (isinstance(doc, dict) and doc.get("kind") == KIND
            and doc.get("apiVersion") == API_VERSION)


def parse(doc: dict[str, Any], default_namespace: str = "default") -> Receiver:
    """A Receiver from a manifest or API object, with the CRD's defaults applied; raises
    InvalidSpec naming the field to fix. Fields the CRD does not know are ignored, as the
    API server prunes them (the Go controller's README examples carry ``spec.type``)."""
    errors = sorted(jsonschema.Draft7Validator(schema()).iter_errors(doc), key=lambda e: e.path)
    if errors:
        where = ".".join(str(p) for p in errors[0].absolute_path) or "(document)"
        raise InvalidSpec(f"{where}: {errors[0].message}")
    meta = metadata(doc.get("metadata"))
    spec = doc["spec"]
    mode = spec.get("responseType") or "Async"
    if mode not in RESPONSE_TYPES:
        raise InvalidSpec(f"spec.responseType: {mode!r} is not one of {', '.join(RESPONSE_TYPES)}")
    try:
        timeout = parse_duration(str(spec.get("timeout") or "10s"))
    except ValueError as exc:
        raise InvalidSpec(f"spec.timeout: {exc}") from None
    limit = spec.get("bodySizeLimit") or 0
    if limit < 0:
        raise InvalidSpec("spec.bodySizeLimit: must be 0 or more bytes")
    status = doc.get("status") if isinstance(doc.get("status"), dict) else {}
    path = str((status or {}).get("webhookPath") or "")
    if path and not is_webhook_path(path):
        raise InvalidSpec(f"status.webhookPath: {path!r} is not /hooks/ and 32 letters or digits")
    return Receiver(
        namespace=meta.get("namespace") or default_namespace, name=meta["name"],
        targets=tuple(_target(i, t) for i, t in enumerate(spec["targets"])), mode=mode,
        timeout=timeout, body_limit=int(limit), suspended=bool(spec.get("suspend")),
        webhook_path=path, generation=meta.get("generation") or 0,
        uid=str(meta.get("uid") or ""))


def _target(i: int, t: dict[str, Any]) -> Target:
    port_doc = t["service"].get("port") or {}
    name, number = port_doc.get("name"), port_doc.get("number")
    if name and number is not None:
        raise InvalidSpec(f"spec.targets.{i}.service.port: give name or number, not both")
    if number is not None and not 0 < number < 65536:
        raise InvalidSpec(f"spec.targets.{i}.service.port.number: {number} is not 1-65535")
    port: int | str = number if number is not None else (name or "")
    sel = t.get("namespaceSelector")
    selector = None if sel is None else _selector(i, sel)
    return Target(str(t.get("path") or "/"), t["service"]["name"], port, selector)


def _selector(i: int, sel: dict[str, Any]) -> Selector:
    exprs = []
    for e in sel.get("matchExpressions") or []:
        op, values = e["operator"], tuple(e.get("values") or ())
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise InvalidSpec(f"spec.targets.{i}.namespaceSelector: operator {op!r} is not "
                              "In, NotIn, Exists or DoesNotExist")
        if (op in ("In", "NotIn")) != bool(values):
            raise InvalidSpec(f"spec.targets.{i}.namespaceSelector: {op} needs values "
                              "(In, NotIn) or none (Exists, DoesNotExist)")
        exprs.append((e["key"], op, values))
    return Selector(tuple(sorted((sel.get("matchLabels") or {}).items())), tuple(exprs))


def is_webhook_path(path: str) -> bool:
    tail = path[len(PATH_PREFIX):]
    return (path.startswith(PATH_PREFIX) and len(tail) == PATH_LENGTH
            and all(c in PATH_ALPHABET for c in tail))


def new_path() -> str:
    """A fresh webhook path: ``/hooks/`` and 32 letters and digits from ``secrets``
    (190 bits; the Go controller drew them from math/rand)."""
    return PATH_PREFIX + "".join(secrets.choice(PATH_ALPHABET) for _ in range(PATH_LENGTH))


def derived_path(namespace: str, name: str, key: str) -> str:
    """The file source's path for a Receiver whose file sets no ``status.webhookPath``:
    HMAC-SHA256 of ``namespace/name`` under ``key`` (``--receiver-path-key``), as 32 letters
    and digits. Stable across restarts and replicas; secret only as long as the key is."""
    digest = hmac.new(key.encode(), f"{namespace}/{name}".encode(), hashlib.sha256).digest()
    number = int.from_bytes(digest, "big")
    chars = []
    for _ in range(PATH_LENGTH):
        number, i = divmod(number, len(PATH_ALPHABET))
        chars.append(PATH_ALPHABET[i])
    return PATH_PREFIX + "".join(chars)
