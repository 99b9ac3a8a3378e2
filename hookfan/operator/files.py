"""The file source: RequestClones and Receivers read from a directory of YAML files.

``DIR/*.yaml`` documents take their namespace from ``metadata.namespace`` (default ``default``);
``DIR/<namespace>/*.yaml`` documents take it from the sub-directory unless they name one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from hookfan.config import SettingsError
from hookfan.routes import Backend, PathRoute, target_url

from . import receivermodel
from .model import InvalidSpec, RequestClone, is_request_clone, parse
from .receivermodel import Receiver
from .resolve import INVALID_SPEC, SECRET_NOT_FOUND, Unverifiable
from .verifyspec import secret_file_path

log = logging.getLogger(__name__)

NAMED_PORTS = {"http": 80}


@dataclass(frozen=True)
class Rejected:
    file: str
    name: str
    reason: str


def check_dir(root: Path) -> None:
    """Return if this process can list ``root``; otherwise raise SettingsError naming
    ``--routes-dir``, the path and what is wrong (a typo must not publish an empty table)."""
    try:
        with os.scandir(root) as entries:
            next(entries, None)
    except FileNotFoundError:
        problem = "no such directory"
    except NotADirectoryError:
        problem = "not a directory"
    except OSError as exc:
        problem = f"cannot be read ({exc.strerror or type(exc).__name__})"
    else:
        return
    raise SettingsError(f"--routes-dir {str(root)!r}: {problem}; give the directory that holds "
                        "the RequestClone YAML files")


def _files(root: Path) -> list[Path]:
    """The YAML files in ``root`` and its sub-directories. Raises OSError when ``root`` or a
    sub-directory cannot be listed: glob would answer "no files", which reads as "no routes"."""
    found = []
    for entry in _visible(root):
        inner = _visible(entry) if entry.is_dir() else [entry]
        found += [p for p in inner if p.suffix in (".yaml", ".yml") and p.is_file()]
    return sorted(found)


def _visible(directory: Path) -> list[Path]:
    # Dot names are skipped as glob("*") did: a mounted ConfigMap holds each file again
    # under ..data/ and ..<timestamp>/, which would duplicate every RequestClone.
    return [p for p in directory.iterdir() if not p.name.startswith(".")]


def fingerprint(root: Path) -> str:
    """Changes whenever a file is added, removed or edited (content hash, not mtime). Raises
    OSError when the directory cannot be listed."""
    h = hashlib.sha256()
    for path in _files(root):
        try:
            h.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
        except OSError:
            continue
    return h.hexdigest()


def _documents(root: Path, rejected: list[Rejected]) -> Iterator[tuple[Path, str, Any]]:
    """(file, namespace, document) of every YAML document under ``root``; a file that cannot
    be read or parsed is added to ``rejected``. Raises OSError when ``root`` cannot be listed."""
    for path in _files(root):
        namespace = path.parent.name if path.parent != root else "default"
        try:
            docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except Exception as exc:  # noqa: BLE001 - PyYAML's constructors raise ValueError,
            # KeyError, AttributeError... for bad dates or tags; no file may stop the source.
            rejected.append(Rejected(str(path), "", f"unreadable YAML: {type(exc).__name__}"))
            continue
        for doc in docs:
            yield path, namespace, doc


def _name(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata")
    return str(meta.get("name", "")) if isinstance(meta, dict) else ""


def load(root: Path) -> tuple[list[RequestClone], list[Rejected]]:
    """Every valid RequestClone under ``root``, and what was skipped and why. Never raises
    for bad content: an unreadable file or bad YAML is a :class:`Rejected` entry. Raises
    OSError when the directory cannot be listed."""
    clones: list[RequestClone] = []
    rejected: list[Rejected] = []
    for path, namespace, doc in _documents(root, rejected):
        if not is_request_clone(doc):
            continue
        try:
            clones.append(_anchored(parse(doc, namespace), path.parent))
        except InvalidSpec as exc:
            rejected.append(Rejected(str(path), _name(doc), str(exc)))
    return clones, rejected


def load_receivers(root: Path) -> tuple[list[Receiver], list[Rejected]]:
    """Every valid Receiver under ``root`` (as :func:`load` for RequestClones; unreadable
    files are reported by :func:`load`, not again here). Raises OSError as :func:`load`."""
    receivers: list[Receiver] = []
    rejected: list[Rejected] = []
    for path, namespace, doc in _documents(root, []):
        if not receivermodel.is_receiver(doc):
            continue
        try:
            receivers.append(receivermodel.parse(doc, namespace))
        except InvalidSpec as exc:
            rejected.append(Rejected(str(path), _name(doc), str(exc)))
    return receivers, rejected


def _base(service: str, port: int | str, where: str, aliases: dict[str, str]) -> str:
    """``http://<service>:<port>``, or the alias given for ``service`` (dev stack); raises
    InvalidSpec for a port name other than http."""
    if service in aliases:
        return f"http://{aliases[service]}"
    if isinstance(port, str):
        if port not in NAMED_PORTS:
            raise InvalidSpec(f"{where}: port name {port!r} cannot be resolved without "
                              "Kubernetes; use a number or 'http'")
        port = NAMED_PORTS[port]
    return f"http://{service}:{port}"


def receiver_route(rcv: Receiver, aliases: dict[str, str]) -> PathRoute:
    """What the intake serves for a file's Receiver: each target at
    ``http://<service.name>:<port><path>``; a port given by neither name nor number is 80.
    Raises InvalidSpec for a namespaceSelector (it needs Kubernetes) or a port name other
    than http."""
    backends = []
    for i, t in enumerate(rcv.targets):
        if t.selector is not None:
            raise InvalidSpec(f"spec.targets.{i}.namespaceSelector: needs the Kubernetes API; "
                              "the file source sends to the Service in the file's namespace")
        base = _base(t.service_name, t.port or "http", f"spec.targets.{i}.service.port",
                     aliases)
        backends.append(Backend(rcv.route, target_url(base, t.path)))
    return PathRoute(rcv.route, tuple(sorted(set(backends))), rcv.mode, rcv.timeout,
                     rcv.body_limit, rcv.suspended)


def _anchored(clone: RequestClone, base: Path) -> RequestClone:
    """A relative ``spec.verify.secretFile`` made absolute: relative to the YAML file."""
    ref = clone.verify
    if ref is None or not ref.secret_file:
        return clone
    path = str(secret_file_path(ref, base))
    return dataclasses.replace(clone, verify=dataclasses.replace(ref, secret_file=path))


def secret_files(clones: list[RequestClone]) -> list[str]:
    """The secret files the clones name (sorted, each once)."""
    return sorted({c.verify.secret_file for c in clones if c.verify and c.verify.secret_file})


def secrets_fingerprint(paths: list[str]) -> str:
    """Changes whenever one of ``paths`` changes, appears or goes away."""
    h = hashlib.sha256()
    for path in paths:
        try:
            h.update(path.encode() + b"\0" + Path(path).read_bytes() + b"\0")
        except OSError as exc:
            h.update(path.encode() + b"\1" + str(exc.errno).encode())
    return h.hexdigest()


def read_secret(clone: RequestClone) -> bytes:
    """The raw value of a file-sourced RequestClone's verify secret (``secretFile``); raises
    :class:`Unverifiable` naming the file and the fix."""
    ref = clone.verify
    assert ref is not None
    if not ref.secret_file:
        raise Unverifiable(INVALID_SPEC, "spec.verify.secretRef needs Kubernetes: the file "
                           "source takes secretFile")
    try:
        return Path(ref.secret_file).read_bytes()
    except OSError as exc:
        raise Unverifiable(SECRET_NOT_FOUND, f"spec.verify.secretFile {ref.secret_file} "
                           f"cannot be read ({exc.strerror or type(exc).__name__})") from None


def backend_for(clone: RequestClone, aliases: dict[str, str]) -> Backend:
    """``http://<serviceName>:<port>``; raises InvalidSpec for a port name other than http.
    An alias (dev stack) replaces ``serviceName:port`` with a reachable ``host:port``."""
    return Backend(clone.key, _base(clone.service_name, clone.service_port,
                                    "spec.backend.servicePort", aliases))
