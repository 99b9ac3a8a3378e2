"""The stored request and the copy sent to a backend. Pure: no I/O.

Headers are kept as an ordered list of (name, value) pairs, duplicates included, exactly as they
arrived (values decoded as latin-1, the way HTTP carries bytes, so they round-trip unchanged).
"""

from __future__ import annotations

import bisect
import json
from dataclasses import dataclass

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade", "proxy-connection",
})
"""Headers that describe one connection, not the message (RFC 9110 7.6.1), so never forwarded.
Content-Length is recomputed by the HTTP client for the identical body."""

END_TO_END = frozenset({
    "host", "content-type", "content-length", "content-encoding", "content-language",
    "content-digest", "repr-digest", "digest", "date", "authorization", "signature",
    "signature-input", "cache-control", "user-agent",
})
"""Headers meant for every recipient of the message: a sender's ``Connection`` header listing
one is not obeyed (RFC 9110 7.6.1: such a connection option is never appropriate)."""
SIGNED = ("signature", "hmac", "token", "timestamp", "webhook-", "svix-")
"""Parts of a name that mark a header a provider's signature check needs
(``X-Hub-Signature-256``, ``X-Shopify-Hmac-Sha256``, ``X-Slack-Request-Timestamp``,
``webhook-id``): a ``Connection`` header listing one is not obeyed either."""

DELIVERY_HEADER = "X-Hookfan-Delivery"
"""Stable across attempts and replays of one copy: backends de-duplicate on it."""
ATTEMPT_HEADER = "X-Hookfan-Attempt"
REQUEST_HEADER = "X-Hookfan-Request"
"""The id the sender got back in the 202; the same for every backend's copy."""


@dataclass(frozen=True)
class StoredRequest:
    method: str
    uri: str
    """The raw request target as received: path and query, not normalised or decoded."""
    headers: tuple[tuple[str, str], ...]
    body: bytes
    client: str
    accepted: float
    """Unix time of acceptance."""
    host: str
    trace: str = ""
    """W3C traceparent of the span that stored it, when tracing is on (field ``tp``)."""
    trusted: bool = False
    """It came from a peer in ``--trusted-proxies``: its ``X-Forwarded-Proto`` and
    ``X-Forwarded-Host`` go to backends as sent. False for requests stored before the flag."""
    await_ms: int = 0
    """A sender waits for the first answers (a Receiver's AwaitAll ``responseType``): the
    worker records them in :func:`hookfan.keys.answer`, kept this many ms. 0 (every other
    request, and the stored layout then has no such item): nothing recorded."""

    def to_fields(self) -> dict[str, str | bytes]:
        """The request hash's fields: ``r``, everything but the body as one JSON list
        (:func:`_meta`), and the body in the pieces :func:`body_pieces` cuts (``b``, ``b1``,
        ``b2`` ...). Fewer, fuller fields cost Redis less memory than a field per value."""
        fields: dict[str, str | bytes] = {"r": json.dumps(
            [self.method, self.uri, self.headers, self.client, self.accepted, self.host,
             self.trace, len(self.body), int(self.trusted)]
            + ([self.await_ms] if self.await_ms else []), separators=(",", ":"))}
        start = 0
        for i, size in enumerate(body_pieces(len(self.body))):
            fields[f"b{i}" if i else "b"] = self.body[start:start + size]
            start += size
        return fields

    @classmethod
    def from_fields(cls, f: dict[bytes, bytes]) -> StoredRequest:
        """The request from its hash, in either layout: :meth:`to_fields`' or the one before
        it (a field per value: ``m``, ``u``, ``h``, ``b``, ``ip``, ``t``, ``host``, ``tp``),
        which requests stored before an upgrade still have."""
        body = b"".join(f[name] for name in _piece_names(f))
        if b"r" not in f:
            return cls(method=f[b"m"].decode(), uri=f[b"u"].decode("latin-1"),
                       headers=tuple((n, v) for n, v in json.loads(f[b"h"])),
                       body=body, client=f[b"ip"].decode(), accepted=float(f[b"t"]),
                       host=f[b"host"].decode("latin-1"),
                       trace=f.get(b"tp", b"").decode("latin-1"))
        method, uri, headers, client, accepted, host, trace, _size, *more = json.loads(f[b"r"])
        return cls(method=method, uri=uri, headers=tuple((n, v) for n, v in headers), body=body,
                   client=client, accepted=float(accepted), host=host, trace=trace,
                   trusted=bool(more and more[0]),
                   await_ms=int(more[1]) if len(more) > 1 else 0)


def request_meta(r: bytes | None) -> RequestMeta | None:
    """What listings read from a request hash's ``r`` field without its body: None when the
    field is absent (the request is gone, or was stored in the layout before ``r``)."""
    if r is None:
        return None
    method, uri, _headers, _client, accepted, _host, trace, size, *_ = json.loads(r)
    return RequestMeta(method, uri, float(accepted), int(size), trace)


@dataclass(frozen=True)
class RequestMeta:
    method: str
    uri: str
    accepted: float
    size: int
    """Body bytes."""
    trace: str


def _piece_names(f: dict[bytes, bytes]) -> list[bytes]:
    names = [b"b"]
    while b"b%d" % len(names) in f:
        names.append(b"b%d" % len(names))
    return names


def _size_classes() -> list[int]:
    """jemalloc's size classes (Redis's allocator): 8, 16, then 16-byte steps to 128, then
    four steps per doubling (160, 192, 224, 256, 320 ...)."""
    out = [8, 16, 32, 48, 64, 80, 96, 112, 128]
    base = 128
    while base < 1 << 40:
        out += [base + base // 4 * i for i in range(1, 5)]
        base *= 2
    return out


_CLASSES = _size_classes()


def _need(n: int) -> int:
    """Bytes Redis asks for to hold an ``n``-byte string in a hash: its sds header (1, 3, 5 or
    9 bytes by length), the bytes and a NUL."""
    return n + 2 + (0 if n < 32 else 2 if n < 256 else 4 if n < 1 << 16 else 8)


def _allocation(n: int) -> int:
    """What the allocator gives for an ``n``-byte string: :func:`_need` rounded up to a class."""
    return _CLASSES[bisect.bisect_left(_CLASSES, _need(n))]


_FILLS = sorted({n for c in _CLASSES[:-8] if c >= 64
                 for n in (c - 10, c - 6, c - 4, c - 2) if _allocation(n) == c})
"""String lengths that fill a size class exactly."""

PIECE_COST = 64
"""Redis bytes one more hash field costs (its entry, name and header), give or take."""


def body_pieces(size: int) -> list[int]:
    """Lengths to store a ``size``-byte body in. Redis rounds each allocation up to a size
    class, and the classes are a quarter apart: a 100 KiB body alone takes 112 KiB; as
    98,294 + 4,090 + 16 bytes, 100 KiB and 32 bytes. A piece that fills a class exactly is cut
    off while that wastes less than storing the rest whole, counting :data:`PIECE_COST` per
    extra field."""
    return _plan(size)[1]


def _plan(size: int) -> tuple[int, list[int]]:
    whole = (_allocation(size) - _need(size), [size])
    if whole[0] <= 0 or size < 64:
        return whole
    fill = _FILLS[bisect.bisect_right(_FILLS, size) - 1]
    waste, rest = _plan(size - fill)
    return min(whole, (waste + PIECE_COST, [fill, *rest]))


def removable(name: str) -> bool:
    """Whether a name a sender's ``Connection`` header lists may be removed from the copy: not
    an end-to-end header (:data:`END_TO_END`) and not one a signature check needs
    (:data:`SIGNED`). ``name`` is lower-case."""
    return name not in END_TO_END and not any(part in name for part in SIGNED)


def forward_headers(req: StoredRequest, request_id: str, delivery_id: str,
                    attempt: int) -> list[tuple[str, str]]:
    """The copy's headers: the original ones in order, minus hop-by-hop ones and the removable
    names ``Connection`` lists, minus any the sender wrote in hookfan's own names, plus the
    documented additions. Names are compared case-insensitively, ``_`` read as ``-`` for
    the hop-by-hop ones, ``Content-Length`` and hookfan's own (a backend's server may merge
    the two spellings: ``Transfer_Encoding: chunked`` must not reach it beside a length).

    * ``X-Hookfan-*``: the sender's are dropped; hookfan's request, delivery and attempt go last.
    * ``X-Forwarded-For``: the sender's values, then the peer hookfan saw.
    * ``X-Forwarded-Proto`` / ``-Host``: the sender's from a trusted proxy (``req.trusted``),
      else hookfan's (``http``, the Host it received) in their place.
    * ``Host`` always goes out, first if the request had none."""
    listed = {token.strip().lower()
              for name, value in req.headers if name.lower() == "connection"
              for token in value.split(",")}
    drop = HOP_BY_HOP | {n for n in listed if removable(n)} | {"content-length"}
    out: list[tuple[str, str]] = []
    forwarded_for: list[str] = []
    forwarded: dict[str, str] = {}
    for name, value in req.headers:
        low = name.lower()
        own = low.replace("_", "-")
        if own in drop or own.startswith("x-hookfan-"):
            continue
        if own == "x-forwarded-for":
            if low == own:
                forwarded_for.append(value)
            continue
        if own in ("x-forwarded-proto", "x-forwarded-host") and not (req.trusted and low == own):
            continue
        forwarded.setdefault(low, name)
        out.append((name, value))
    if "host" not in forwarded:
        out.insert(0, ("Host", req.host))
    out.append(("X-Forwarded-For", ", ".join([*forwarded_for, req.client])))
    if "x-forwarded-host" not in forwarded:
        out.append(("X-Forwarded-Host", req.host))
    if "x-forwarded-proto" not in forwarded:
        out.append(("X-Forwarded-Proto", "http"))
    out += [(REQUEST_HEADER, request_id), (DELIVERY_HEADER, delivery_id),
            (ATTEMPT_HEADER, str(attempt))]
    return out
