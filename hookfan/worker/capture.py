"""Reading a whole answer (status, header lines, body up to a cap), for the first attempt of a
copy whose sender awaits the answer (a Receiver's AwaitAll ``responseType``). Every other
attempt reads only what :func:`hookfan.worker.http1.read_answer` reads."""

from __future__ import annotations

import http.client
from dataclasses import dataclass

from .http1 import _NO_BODY, Link, final_head


@dataclass(frozen=True)
class Whole:
    """An answer as the sender may get it back."""

    headers: list[tuple[str, str]]
    """Every header line in order (latin-1), names as sent."""
    body: bytes | None
    """The body; None when it was over the cap (the connection is then closed)."""


def read_whole(link: Link, end: float, head_only: bool,
               cap: int) -> tuple[int, str | None, bool, Whole]:
    """Read an answer whole: what :func:`~hookfan.worker.http1.read_answer` returns (status,
    Retry-After, reusable) and the :class:`Whole` answer. A body framed by neither length
    nor chunks is read until the peer closes. Raises as ``read_answer`` does."""
    head, nl, status, http10 = final_head(link, end)
    headers: list[tuple[str, str]] = []
    if nl >= 0:
        for line in head[nl + 1:].split(b"\n"):
            name, sep, value = line.rstrip(b"\r").partition(b":")
            if sep and line[:1] not in (b" ", b"\t"):
                headers.append((name.strip().decode("latin-1"), value.strip().decode("latin-1")))
    fields: dict[str, list[str]] = {}
    for field, text in headers:
        fields.setdefault(field.lower(), []).append(text)
    tokens = {t.strip().lower() for v in fields.get("connection", []) for t in v.split(",")}
    keep = not ("close" in tokens or (http10 and "keep-alive" not in tokens) or status == 101)
    after = ", ".join(fields["retry-after"]) if "retry-after" in fields else None
    codings = [c.strip().lower() for v in fields.get("transfer-encoding", [])
               for c in v.split(",") if c.strip()]
    lengths = {v.strip() for v in fields.get("content-length", [])}
    if head_only or status in _NO_BODY or status == 101:
        return status, after, keep and not link.buf, Whole(headers, b"")
    if codings and codings[-1] == "chunked":
        body = _chunks(link, end, cap)
    elif not codings and len(lengths) == 1 and next(iter(lengths)).isdigit():
        n = int(next(iter(lengths)))
        body = _exactly(link, n, end) if n <= cap else None
    else:
        return status, after, False, Whole(headers, _until_close(link, end, cap))
    return status, after, keep and body is not None and not link.buf, Whole(headers, body)


def _exactly(link: Link, n: int, end: float) -> bytes:
    parts = bytearray()
    link.take(n, end, parts)
    return bytes(parts)


def _chunks(link: Link, end: float, cap: int) -> bytes | None:
    parts = bytearray()
    return bytes(parts) if link.chunked(end, cap, parts) else None


def _until_close(link: Link, end: float, cap: int) -> bytes | None:
    try:
        while len(link.buf) <= cap:
            link.fill(end)
    except http.client.IncompleteRead:  # the peer closed: here, the end of the body
        return bytes(link.buf)
    return None
