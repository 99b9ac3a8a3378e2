"""The Receiver answer modes (``spec.responseType``), pure: what the worker records of a first
attempt for a waiting request, and what the intake answers from those records. No I/O here.

The worker pushes one record per target to the request's answer list (:func:`hookfan.keys.
answer`) after the first attempt of an awaited copy; the intake reads them in arrival order
and answers as the Go controller did (``internal/proxy/http.go``), with two differences: a
backend's hop-by-hop headers are not passed on, and an answer body over :data:`BODY_CAP` is
not relayed (the target counts as 502).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hookfan.envelope import HOP_BY_HOP

ASYNC = "Async"
PREFER_SUCCESSFUL = "AwaitAllPreferSuccessful"
PREFER_FAILED = "AwaitAllPreferFailed"
REPORT = "AwaitAllReport"
BODY_CAP = 1 << 20
"""Largest backend answer body relayed to the sender (1 MiB)."""
NO_ANSWER = 504
"""A target whose first attempt got no HTTP answer (timeout, refused, reset), or none within
the Receiver's ``timeout``, counts as this, as in the Go controller."""
TOO_LARGE = 502
"""A target whose answer body is over :data:`BODY_CAP` counts as this (nothing relayed)."""
DROPPED = HOP_BY_HOP | {"content-length", "date", "server"}
"""Answer headers never passed on: hop-by-hop ones, and those the intake's server writes."""


@dataclass(frozen=True)
class Answer:
    """One target's answer to the first attempt of its copy."""

    status: int
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""


def awaited(mode: str) -> bool:
    """Whether requests of a Receiver with this ``responseType`` wait for the answers."""
    return mode in (PREFER_SUCCESSFUL, PREFER_FAILED, REPORT)


def recorded(status: int | None, headers: list[tuple[str, str]] | None,
             body: bytes | None) -> Answer:
    """What is kept of an answer: no status (a transport error) -> 504; a body that was over
    the cap (None with a status) -> 502; else the status, the headers the sender may see (in
    order, minus :data:`DROPPED` and names a ``Connection`` header lists) and the body."""
    if status is None:
        return Answer(NO_ANSWER)
    if body is None:
        return Answer(TOO_LARGE)
    given = headers or []
    listed = {t.strip().lower() for n, v in given if n.lower() == "connection"
              for t in v.split(",")}
    kept = tuple((n, v) for n, v in given if n.lower() not in DROPPED and n.lower() not in listed)
    return Answer(status, kept, body)


def encode(delivery_id: str, answer: Answer) -> bytes:
    """One record of the answer list: a JSON line ``[delivery id, status, headers]``, then the
    body bytes as they came."""
    head = json.dumps([delivery_id, answer.status, answer.headers], separators=(",", ":"))
    return head.encode() + b"\n" + answer.body


def decode(record: bytes) -> tuple[str, Answer]:
    """(delivery id, answer) of a record :func:`encode` made. Raises ValueError if malformed."""
    head, _, body = record.partition(b"\n")
    did, status, headers = json.loads(head)
    return str(did), Answer(int(status), tuple((str(n), str(v)) for n, v in headers), body)


def choose(mode: str, answers: list[Answer], missing: int) -> Answer:
    """The answer to the sender, from the targets' answers in arrival order and the number of
    targets that gave none in time (each counted as a 504 arriving last, as the Go version's
    timed-out requests did).

    * ``AwaitAllPreferSuccessful``: the first 2xx; failing that, the last to arrive.
    * ``AwaitAllPreferFailed``: the first of 400 or above; failing that, the last to arrive.
    * ``AwaitAllReport``: 200 with ``{"targets": [{"statusCode", "body", "headers"}]}`` in
      arrival order, ``body`` and ``headers`` left out when empty (the Go version's shape;
      a body that is not UTF-8 has its bad bytes replaced by U+FFFD, as Go's encoder does).
    """
    every = answers + [Answer(NO_ANSWER)] * missing
    if mode == REPORT:
        return Answer(200, (("Content-Type", "application/json"),), report(every))
    if not every:
        return Answer(NO_ANSWER)
    if mode == PREFER_FAILED:
        wanted = [a for a in every if a.status >= 400]
    else:
        wanted = [a for a in every if 200 <= a.status < 300]
    return wanted[0] if wanted else every[-1]


def report(answers: list[Answer]) -> bytes:
    targets = []
    for a in answers:
        item: dict[str, object] = {"statusCode": a.status}
        if a.body:
            item["body"] = a.body.decode("utf-8", "replace")
        if a.headers:
            grouped: dict[str, list[str]] = {}
            for name, value in a.headers:
                grouped.setdefault(name, []).append(value)
            item["headers"] = grouped
        targets.append(item)
    return json.dumps({"targets": targets}, separators=(",", ":")).encode()
