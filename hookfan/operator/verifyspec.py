"""``spec.verify`` of a RequestClone (and later of a Receiver): parsed, and its secret read.

Pure apart from :func:`read_secret_file`. The CRD schema already refuses an unknown provider
and hmac-sha256 without ``header``; :func:`parse_verify` states every rule again so a file
that skipped the schema cannot slip by, and raises ``ValueError`` naming the field to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hookfan.config import parse_duration
from hookfan.signatures import (
    DEFAULT_TOLERANCE,
    PROVIDERS,
    TIMESTAMPED,
    BadSecret,
    Verification,
    secrets_from,
)

MAX_TOLERANCE = 86400.0
_HEADER_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"
                          "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True)
class VerifyRef:
    """What ``spec.verify`` says, without the secret's value. Two RequestClones of one host
    must carry equal ones (else ``VerifyConflict``)."""

    provider: str
    secret_name: str = ""
    secret_key: str = ""
    secret_file: str = ""
    header: str = ""
    tolerance: float = DEFAULT_TOLERANCE

    def describe(self) -> str:
        where = (f"secretFile {self.secret_file}" if self.secret_file
                 else f"secretRef {self.secret_name}/{self.secret_key}")
        extra = f", header {self.header}" if self.header else ""
        return f"provider {self.provider}, {where}{extra}, tolerance {self.tolerance:g}s"


def parse_verify(data: Any, where: str = "spec.verify") -> VerifyRef:
    """A :class:`VerifyRef` from the ``verify`` mapping; raises ValueError naming the field."""
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: must be a mapping")
    provider = data.get("provider")
    if provider not in PROVIDERS:
        raise ValueError(f"{where}.provider: {provider!r} is not one of {', '.join(PROVIDERS)}")
    ref, path = data.get("secretRef"), data.get("secretFile")
    if (ref is None) == (path is None):
        raise ValueError(f"{where}: give exactly one of secretRef (Kubernetes) or secretFile "
                         "(the file source)")
    name = key = ""
    if ref is not None:
        if not (isinstance(ref, Mapping) and _text(ref.get("name")) and _text(ref.get("key"))):
            raise ValueError(f"{where}.secretRef: needs name and key (non-empty strings)")
        name, key = ref["name"], ref["key"]
    elif not _text(path):
        raise ValueError(f"{where}.secretFile: must be a non-empty path")
    header = data.get("header")
    if provider == "hmac-sha256":
        if not (isinstance(header, str) and header and set(header) <= _HEADER_CHARS):
            raise ValueError(f"{where}.header: hmac-sha256 needs the name of the header that "
                             "holds the hex digest")
    elif header is not None:
        raise ValueError(f"{where}.header: only hmac-sha256 takes a header ({provider} "
                         "has its own)")
    return VerifyRef(provider, name, key, str(path or ""), str(header or ""),
                     _tolerance(data.get("tolerance"), provider, where))


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _tolerance(value: Any, provider: str, where: str) -> float:
    if value is None:
        return DEFAULT_TOLERANCE
    if provider not in TIMESTAMPED:
        raise ValueError(f"{where}.tolerance: {provider} signs no timestamp; remove tolerance")
    try:
        seconds = parse_duration(str(value))
    except ValueError as exc:
        raise ValueError(f"{where}.tolerance: {exc}") from None
    if not 0 < seconds <= MAX_TOLERANCE:
        raise ValueError(f"{where}.tolerance: must be more than 0 and at most 24h")
    return seconds


def verification(ref: VerifyRef, raw_secret: bytes) -> Verification:
    """The verification for ``ref`` with its secret's value; raises ValueError (never
    quoting the value) when the value cannot be used."""
    try:
        secrets = secrets_from(ref.provider, raw_secret)
    except BadSecret as exc:
        raise ValueError(f"{_source(ref)}: {exc}") from None
    return Verification(ref.provider, secrets, ref.header, ref.tolerance)


def _source(ref: VerifyRef) -> str:
    return (f"secret file {ref.secret_file}" if ref.secret_file
            else f"Secret {ref.secret_name} key {ref.secret_key}")


def read_secret_file(ref: VerifyRef, base: Path) -> Verification:
    """The verification with the secret read from ``secretFile`` (relative to ``base``, the
    directory of the YAML file naming it). Raises ValueError naming the file and the fix."""
    path = secret_file_path(ref, base)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"spec.verify.secretFile {path}: cannot be read "
                         f"({exc.strerror or type(exc).__name__})") from None
    return verification(ref, raw)


def secret_file_path(ref: VerifyRef, base: Path) -> Path:
    path = Path(ref.secret_file)
    return path if path.is_absolute() else base / path
