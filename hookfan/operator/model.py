"""RequestClone documents: parsed and validated against the CRD's own schema. Pure."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jsonschema
import yaml

from hookfan.deliverypolicy import DeliveryPolicy, parse_delivery

from .verifyspec import VerifyRef, parse_verify

GROUP = "proxy.infra.doodle.com"
VERSION = "v1beta1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "RequestClone"


@dataclass(frozen=True)
class RequestClone:
    namespace: str
    name: str
    host: str
    service_name: str
    service_port: int | str
    """A port number, or a port name (IntOrString, as in Kubernetes)."""
    generation: int = 0
    created: str = ""
    """creationTimestamp (RFC 3339), for ordering claims on a host."""
    verify: VerifyRef | None = None
    """``spec.verify``: requests for the host must carry a valid signature."""
    delivery: DeliveryPolicy = DeliveryPolicy()
    """``spec.delivery``: the backend's delivery policy (empty: the worker's flags)."""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


class InvalidSpec(ValueError):
    """The document does not match the CRD schema; the message says which field and why."""


@functools.cache
def schema() -> dict[str, Any]:
    """The openAPIV3Schema of the shipped CRD (hookfan/crd.yaml)."""
    crd = yaml.safe_load(resources.files("hookfan").joinpath("crd.yaml").read_text())
    return dict(crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def is_request_clone(doc: Any) -> bool:
    return (isinstance(doc, dict) and doc.get("kind") == KIND
            and doc.get("apiVersion") == API_VERSION)


def parse(doc: dict[str, Any], default_namespace: str = "default") -> RequestClone:
    """A RequestClone from a manifest or API object; raises InvalidSpec naming what to fix."""
    spec = doc.get("spec")
    verify = None
    if isinstance(spec, dict) and spec.get("verify") is not None:
        # Before the schema: its anyOf/oneOf errors would not say which rule was broken.
        try:
            verify = parse_verify(spec["verify"])
        except ValueError as exc:
            raise InvalidSpec(str(exc)) from None
    delivery = DeliveryPolicy()
    if isinstance(spec, dict):
        try:
            delivery = parse_delivery(spec.get("delivery"))
        except ValueError as exc:
            raise InvalidSpec(str(exc)) from None
    errors = sorted(jsonschema.Draft7Validator(schema()).iter_errors(doc), key=lambda e: e.path)
    if errors:
        err = errors[0]
        where = ".".join(str(p) for p in err.absolute_path) or "(document)"
        raise InvalidSpec(f"{where}: {err.message}")
    meta = metadata(doc.get("metadata"))
    spec = doc["spec"]
    port = spec["backend"]["servicePort"]
    if isinstance(port, str) and port.strip().isdigit():
        port = int(port)
    if isinstance(port, bool) or (isinstance(port, int) and not 0 < port < 65536):
        raise InvalidSpec(f"spec.backend.servicePort: {port!r} is not a port (1-65535)")
    return RequestClone(
        namespace=meta.get("namespace") or default_namespace,
        name=meta["name"],
        host=spec["host"],
        service_name=spec["backend"]["serviceName"],
        service_port=port,
        generation=meta.get("generation") or 0,
        created=str(meta.get("creationTimestamp") or ""),
        verify=verify,
        delivery=delivery,
    )


def metadata(meta: Any) -> dict[str, Any]:
    """The metadata fields parse relies on, type-checked (the CRD schema covers only spec:
    Kubernetes owns metadata's schema, but a file can hold anything)."""
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        raise InvalidSpec("metadata: must be a mapping")
    if not isinstance(meta.get("name"), str) or not meta["name"]:
        raise InvalidSpec("metadata.name: required, a non-empty string")
    if meta.get("namespace") is not None and not isinstance(meta["namespace"], str):
        raise InvalidSpec("metadata.namespace: must be a string")
    generation = meta.get("generation")
    if generation is not None and (isinstance(generation, bool)
                                   or not isinstance(generation, int)):
        raise InvalidSpec("metadata.generation: must be an integer")
    return meta
