"""What the operator's Secrets cache keeps: names and small values only (a signing secret is a
few dozen bytes; large values such as TLS bundles are dropped), and a RequestClone naming a
dropped value gets a reason that says so."""

from __future__ import annotations

import base64

import pytest

from hookfan.operator.kubesource import SECRET_VALUE_MAX, secret_data, secret_reader
from hookfan.operator.model import parse
from hookfan.operator.resolve import INVALID_SECRET, SECRET_NOT_FOUND, Unverifiable


def secret(**data: str) -> dict:
    return {"metadata": {"namespace": "ci", "name": "gh", "annotations": {"x": "copy"}},
            "type": "Opaque", "data": data}


def clone(key: str):  # type: ignore[no-untyped-def]
    return parse({"apiVersion": "proxy.infra.doodle.com/v1beta1", "kind": "RequestClone",
                  "metadata": {"name": "c", "namespace": "ci"},
                  "spec": {"host": "h.example.com",
                           "backend": {"serviceName": "s", "servicePort": "http"},
                           "verify": {"provider": "github",
                                      "secretRef": {"name": "gh", "key": key}}}}, "ci")


def test_cache_keeps_small_values_and_marks_large_ones():
    small = base64.b64encode(b"s3cret").decode()
    big = "A" * (SECRET_VALUE_MAX + 1)
    kept = secret_data(secret(secret=small, bundle=big))
    assert kept == {"metadata": {"namespace": "ci", "name": "gh"},
                    "data": {"secret": small, "bundle": None}}
    read = secret_reader({("ci", "gh"): kept})
    assert read(clone("secret")) == b"s3cret"
    with pytest.raises(Unverifiable) as exc:
        read(clone("bundle"))
    assert exc.value.reason == INVALID_SECRET and "over" in exc.value.message
    with pytest.raises(Unverifiable) as exc:
        read(clone("missing"))
    assert exc.value.reason == SECRET_NOT_FOUND
