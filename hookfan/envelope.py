"""The stored request and the copy sent to a backend. Pure: no I/O.

Headers are kept as an ordered list of (name, value) pairs, duplicates included, exactly as they
arrived (values decoded as latin-1, the way HTTP carries bytes, so they round-trip unchanged).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
    "trailer", "trailers", "transfer-encoding", "upgrade", "proxy-connection",
})
"""Headers that describe one connection, not the message (RFC 9110 7.6.1), so never forwarded.
Content-Length is recomputed by the HTTP client for the identical body."""

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

    def to_fields(self) -> dict[str, str | bytes]:
        fields: dict[str, str | bytes] = {
            "m": self.method, "u": self.uri, "h": json.dumps(self.headers), "b": self.body,
            "ip": self.client, "t": repr(self.accepted), "host": self.host}
        if self.trace:
            fields["tp"] = self.trace
        return fields

    @classmethod
    def from_fields(cls, f: dict[bytes, bytes]) -> StoredRequest:
        return cls(method=f[b"m"].decode(), uri=f[b"u"].decode("latin-1"),
                   headers=tuple((n, v) for n, v in json.loads(f[b"h"])),
                   body=f[b"b"], client=f[b"ip"].decode(), accepted=float(f[b"t"]),
                   host=f[b"host"].decode("latin-1"),
                   trace=f.get(b"tp", b"").decode("latin-1"))


def forward_headers(req: StoredRequest, request_id: str, delivery_id: str,
                    attempt: int) -> list[tuple[str, str]]:
    """The copy's headers: the original ones minus hop-by-hop, plus the documented additions."""
    named_in_connection = {
        token.strip().lower()
        for name, value in req.headers if name.lower() == "connection"
        for token in value.split(",")
    }
    drop = HOP_BY_HOP | named_in_connection | {"content-length"}
    out = [(n, v) for n, v in req.headers if n.lower() not in drop]
    present = {n.lower() for n, _ in out}
    forwarded_for = [v for n, v in out if n.lower() == "x-forwarded-for"]
    out = [(n, v) for n, v in out if n.lower() != "x-forwarded-for"]
    out.append(("X-Forwarded-For", ", ".join([*forwarded_for, req.client])))
    if "x-forwarded-host" not in present:
        out.append(("X-Forwarded-Host", req.host))
    if "x-forwarded-proto" not in present:
        out.append(("X-Forwarded-Proto", "http"))
    out += [(REQUEST_HEADER, request_id), (DELIVERY_HEADER, delivery_id),
            (ATTEMPT_HEADER, str(attempt))]
    return out
