"""Signature verification at the intake: each provider's documented scheme. Pure, no I/O.

A host whose RequestClones carry ``spec.verify`` has a :class:`Verification` in the route
table's verify map (its secrets travel in a Redis key of their own, never in the route table:
:mod:`hookfan.store`). :func:`check` runs on the raw body bytes the intake read, before
anything is written; a :class:`Failed` names the check that failed, never a value the sender
sent or a digest hookfan computed. Digests are compared with :func:`hmac.compare_digest`.

Schemes (each provider's own documentation):

- ``github``: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>``.
- ``stripe``: ``Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]``, HMAC-SHA256 of
  ``<t>.<body>`` with the endpoint secret (``whsec_...``, used as written).
- ``slack``: ``X-Slack-Signature: v0=<hex>`` of ``v0:<X-Slack-Request-Timestamp>:<body>``.
- ``standard-webhooks``: ``webhook-signature: v1,<base64> [v1,<base64> ...]`` of
  ``<webhook-id>.<webhook-timestamp>.<body>``, keyed by the base64 after ``whsec_``. Svix
  sends the same scheme under its own names (``svix-id``, ``svix-timestamp``,
  ``svix-signature``); those are read when ``webhook-id`` is absent, as Svix's library does.
- ``hmac-sha256``: the hex HMAC-SHA256 of the body in the header the route names.

Every scheme accepts any of several secrets (rotation: one secret per line of the Secret).
The providers with a signed timestamp reject a timestamp more than ``tolerance`` away from
now, either way, and report a replay key (:class:`Passed`): the intake stores a request only
if that key is new, and remembers it for as long as the signature stays acceptable.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PROVIDERS = ("github", "stripe", "slack", "standard-webhooks", "hmac-sha256")
TIMESTAMPED = frozenset({"stripe", "slack", "standard-webhooks"})
"""Providers whose signature covers a timestamp: tolerance and replay memory apply."""
DEFAULT_TOLERANCE = 300.0
"""Seconds: Stripe's, Slack's and Standard Webhooks' own default (5 minutes)."""
MISMATCH = "signature mismatch"


@dataclass(frozen=True)
class Verification:
    """How one host's requests are verified. ``secrets`` are HMAC keys as used (for
    standard-webhooks the bytes the ``whsec_`` base64 decodes to)."""

    provider: str
    secrets: tuple[bytes, ...]
    header: str = ""
    """hmac-sha256 only: the header holding the hex digest."""
    tolerance: float = DEFAULT_TOLERANCE
    unreadable: str = ""
    """Why the secrets could not be read from Redis (this process has no key, or another
    one, than the operator that wrote them); the host is then not served (503)."""

    def __repr__(self) -> str:  # never print a secret, in a log or a test failure
        return (f"Verification({self.provider!r}, secrets=<{len(self.secrets)}>, "
                f"header={self.header!r}, tolerance={self.tolerance!r})")

    def to_wire(self, host: str, key: bytes | None = None) -> dict[str, Any]:
        """The JSON form kept in Redis; with ``key``, the secrets sealed (:func:`seal`)."""
        plain = [base64.b64encode(s).decode() for s in self.secrets]
        return {"provider": self.provider, "header": self.header, "tolerance": self.tolerance,
                "secrets": plain if key is None else seal(key, host, json.dumps(plain))}

    @classmethod
    def from_wire(cls, data: Mapping[str, Any], host: str,
                  key: bytes | None = None) -> Verification:
        raw, unreadable = data["secrets"], ""
        if isinstance(raw, str):  # sealed
            try:
                raw = json.loads(unseal(key, host, raw))
            except Unreadable as exc:
                raw, unreadable = [], str(exc)
        return cls(str(data["provider"]), tuple(base64.b64decode(s) for s in raw),
                   str(data.get("header") or ""), float(data["tolerance"]), unreadable)


SEALED = "aes256gcm:"
"""Prefix of sealed secrets: AES-256-GCM, 12-byte nonce, the host as associated data."""


class Unreadable(Exception):
    """Sealed secrets this process cannot open; the message names the flag to fix."""


def derive_key(material: bytes) -> bytes:
    """The AES-256 key for ``--verify-key-file``'s content (surrounding whitespace dropped:
    a file written with a newline and a Secret without one give the same key)."""
    return hashlib.sha256(b"hookfan verify-key v1\0" + material.strip()).digest()


def seal(key: bytes, host: str, text: str) -> str:
    """``text`` encrypted and authenticated under ``key``, bound to ``host``."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, text.encode(), host.encode())
    return SEALED + base64.b64encode(nonce + sealed).decode()


def unseal(key: bytes | None, host: str, value: str) -> str:
    """What :func:`seal` sealed; raises :class:`Unreadable`."""
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if key is None:
        raise Unreadable("the signing secrets in Redis are encrypted and this process has no "
                         "--verify-key-file: give it the operator's")
    try:
        blob = base64.b64decode(value.removeprefix(SEALED), validate=True)
        return AESGCM(key).decrypt(blob[:12], blob[12:], host.encode()).decode()
    except (InvalidTag, binascii.Error, ValueError):
        raise Unreadable("the signing secrets in Redis do not open with this process's "
                         "--verify-key-file: give it the same key file as the operator's"
                         ) from None


def dump(verify: Mapping[str, Verification], key: bytes | None = None) -> str:
    """host -> verification as JSON (for :data:`hookfan.keys.VERIFY`): with ``key`` (from
    ``--verify-key-file``) each host's secrets sealed, else in clear."""
    return json.dumps({h: v.to_wire(h, key) for h, v in sorted(verify.items())})


def load(text: str | bytes, key: bytes | None = None) -> dict[str, Verification]:
    """What :func:`dump` wrote. A host whose secrets do not open comes back
    :attr:`~Verification.unreadable` (never raises for that)."""
    return {h: Verification.from_wire(v, h, key) for h, v in json.loads(text).items()}


class BadSecret(ValueError):
    """A secret's value cannot be used; the message names the fix, never the value."""


def secrets_from(provider: str, raw: bytes) -> tuple[bytes, ...]:
    """The HMAC keys in a Secret's (or a file's) value: one per non-empty line, surrounding
    whitespace dropped (several: rotation, any one verifies). Raises :class:`BadSecret`."""
    lines = [ln.strip() for ln in raw.splitlines()]
    found = [ln for ln in lines if ln]
    if not found:
        raise BadSecret("the secret is empty")
    if provider != "standard-webhooks":
        return tuple(found)
    keys = []
    for line in found:
        text = line[len(b"whsec_"):] if line.startswith(b"whsec_") else line
        try:
            key = base64.b64decode(text + b"==", validate=False)
        except (binascii.Error, ValueError):
            key = b""
        if not key:
            raise BadSecret("a standard-webhooks secret must be whsec_ followed by base64")
        keys.append(key)
    return tuple(keys)


@dataclass(frozen=True)
class Failed:
    reason: str
    """Names the check: ``missing X-Hub-Signature-256``, ``signature mismatch``,
    ``timestamp outside tolerance``, ... Never a value."""


@dataclass(frozen=True)
class Passed:
    replay_key: str | None = None
    """A digest of the host, the provider and the signed content (timestamp included): the
    same request sent again has the same key. None for providers without a timestamp."""
    ttl: float = 0.0
    """Seconds the signature stays acceptable: how long to remember the key."""


Headers = Callable[[str], list[str]]


def header_getter(headers: Iterable[tuple[str, str]]) -> Headers:
    """Every value of a header, by case-insensitive name, in arrival order."""
    index: dict[str, list[str]] = {}
    for name, value in headers:
        index.setdefault(name.lower(), []).append(value)
    return lambda name: index.get(name.lower(), [])


def check(v: Verification, headers: Iterable[tuple[str, str]], body: bytes, now: float,
          host: str) -> Passed | Failed:
    """Whether ``body`` with ``headers`` carries a valid signature for ``v`` at Unix time
    ``now``. Never raises for anything a sender can send."""
    return _SCHEMES[v.provider](v, header_getter(headers), body, now, host)


def _one(get: Headers, name: str) -> str | Failed:
    values = get(name)
    if not values or not values[0].strip():
        return Failed(f"missing {name}")
    if len(values) > 1:
        return Failed(f"{name} given more than once")
    return values[0].strip()


def _macs(secrets: tuple[bytes, ...], prefix: bytes, body: bytes) -> list[bytes]:
    """HMAC-SHA256 of ``prefix + body`` under each secret (the body is not copied)."""
    out = []
    for secret in secrets:
        mac = hmac.new(secret, prefix, hashlib.sha256)
        mac.update(body)
        out.append(mac.digest())
    return out


def _hex_matches(expected: list[bytes], given: Iterable[str]) -> bool:
    wanted = [e.hex().encode() for e in expected]
    found = False
    for sig in given:
        sent = sig.strip().lower().encode("latin-1", "replace")
        for w in wanted:
            found |= hmac.compare_digest(w, sent)
    return found


def _timestamp(text: str, now: float, tolerance: float) -> int | Failed:
    if not (text.isascii() and text.isdigit()):
        return Failed("malformed timestamp")
    stamp = int(text)
    if abs(now - stamp) > tolerance:
        return Failed("timestamp outside tolerance")
    return stamp


def _replay(host: str, provider: str, prefix: bytes, body: bytes, stamp: int,
            v: Verification, now: float) -> Passed:
    digest = hashlib.sha256(f"{host}\n{provider}\n".encode() + prefix)
    digest.update(body)
    # Acceptable until stamp + tolerance; one second more for rounding.
    return Passed(digest.hexdigest(), max(1.0, stamp + v.tolerance - now + 1.0))


def _github(v: Verification, get: Headers, body: bytes, now: float, host: str
            ) -> Passed | Failed:
    return _plain(v, get, body, "X-Hub-Signature-256", "sha256=")


def _hmac_sha256(v: Verification, get: Headers, body: bytes, now: float, host: str
                 ) -> Passed | Failed:
    return _plain(v, get, body, v.header, "")


def _plain(v: Verification, get: Headers, body: bytes, name: str, scheme: str
           ) -> Passed | Failed:
    value = _one(get, name)
    if isinstance(value, Failed):
        return value
    if not value.lower().startswith(scheme):
        return Failed(f"{name} is not {scheme}<hex>")
    if not _hex_matches(_macs(v.secrets, b"", body), [value[len(scheme):]]):
        return Failed(MISMATCH)
    return Passed()


def _stripe(v: Verification, get: Headers, body: bytes, now: float, host: str
            ) -> Passed | Failed:
    value = _one(get, "Stripe-Signature")
    if isinstance(value, Failed):
        return value
    items = [part.strip().partition("=") for part in value.split(",")]
    stamps = [val for key, _, val in items if key == "t"]
    sigs = [val for key, _, val in items if key == "v1"]
    if len(stamps) != 1:
        return Failed("no timestamp (t=) in Stripe-Signature")
    if not sigs:
        return Failed("no v1 signature in Stripe-Signature")
    stamp = _timestamp(stamps[0], now, v.tolerance)
    if isinstance(stamp, Failed):
        return stamp
    prefix = f"{stamp}.".encode()
    if not _hex_matches(_macs(v.secrets, prefix, body), sigs):
        return Failed(MISMATCH)
    return _replay(host, v.provider, prefix, body, stamp, v, now)


def _slack(v: Verification, get: Headers, body: bytes, now: float, host: str
           ) -> Passed | Failed:
    value = _one(get, "X-Slack-Signature")
    if isinstance(value, Failed):
        return value
    raw_stamp = _one(get, "X-Slack-Request-Timestamp")
    if isinstance(raw_stamp, Failed):
        return raw_stamp
    if not value.startswith("v0="):
        return Failed("X-Slack-Signature is not v0=<hex>")
    stamp = _timestamp(raw_stamp, now, v.tolerance)
    if isinstance(stamp, Failed):
        return stamp
    prefix = f"v0:{stamp}:".encode()
    if not _hex_matches(_macs(v.secrets, prefix, body), [value[3:]]):
        return Failed(MISMATCH)
    return _replay(host, v.provider, prefix, body, stamp, v, now)


_STANDARD_NAMES = ("webhook-id", "webhook-timestamp", "webhook-signature")
_SVIX_NAMES = ("svix-id", "svix-timestamp", "svix-signature")


def _standard(v: Verification, get: Headers, body: bytes, now: float, host: str
              ) -> Passed | Failed:
    names = _STANDARD_NAMES if get(_STANDARD_NAMES[0]) or not get(_SVIX_NAMES[0]) \
        else _SVIX_NAMES
    found = [_one(get, n) for n in names]
    for f in found:
        if isinstance(f, Failed):
            return f
    msg_id, raw_stamp, value = (str(f) for f in found)
    stamp = _timestamp(raw_stamp, now, v.tolerance)
    if isinstance(stamp, Failed):
        return stamp
    sent = []
    for versioned in value.split(" "):
        version, _, sig = versioned.partition(",")
        if version == "v1":
            try:
                sent.append(base64.b64decode(sig, validate=True))
            except (binascii.Error, ValueError):
                continue
    if not sent:
        return Failed(f"no v1 signature in {names[2]}")
    # Header values arrive decoded as latin-1 (WSGI): that gives back the bytes sent.
    prefix = f"{msg_id}.{stamp}.".encode("latin-1", "replace")
    expected = _macs(v.secrets, prefix, body)
    ok = False
    for s in sent:
        for e in expected:
            ok |= hmac.compare_digest(e, s)
    if not ok:
        return Failed(MISMATCH)
    return _replay(host, v.provider, prefix, body, stamp, v, now)


_SCHEMES: dict[str, Callable[[Verification, Headers, bytes, float, str], Passed | Failed]] = {
    "github": _github, "stripe": _stripe, "slack": _slack,
    "standard-webhooks": _standard, "hmac-sha256": _hmac_sha256}
