"""``spec.delivery``: one backend's delivery policy, parsed, merged and applied. Pure.

Shared by the operator (a RequestClone's spec, and later a Receiver's), the store (published
with the route table under :data:`hookfan.keys.POLICY`) and the worker (which lays the
policy over its own flags for each batch it claims). Every field is optional: an absent one
means the worker's flag.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from hookfan.config import DeliverySettings, format_duration, parse_duration

MAX_AGE = 30 * 86400.0
"""Longest ``maxRetryAge`` accepted (30 days)."""


@dataclass(frozen=True)
class DeliveryPolicy:
    """What ``spec.delivery`` says; None: the worker's flag (or no limit)."""

    max_retry_age: float | None = None
    min_retry_delay: float | None = None
    max_retry_delay: float | None = None
    concurrency: int | None = None
    """Attempts in flight to the backend, across all workers (``--backend-concurrency``)."""
    rate: float | None = None
    """``rateLimit.perSecond``: attempts started per second, across all workers."""
    burst: int | None = None
    """``rateLimit.burst``: attempts that may start at once after a quiet spell; default
    :attr:`rate` rounded up."""
    ordered: bool = False
    """One attempt at a time, in accept order; a failing copy holds back those behind it."""

    @property
    def empty(self) -> bool:
        return self == DeliveryPolicy()

    @property
    def bucket(self) -> int:
        """The token bucket's size (0: no rate limit)."""
        if self.rate is None:
            return 0
        return self.burst if self.burst is not None else max(1, math.ceil(self.rate))

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)
                if getattr(self, f.name) not in (None, False)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeliveryPolicy:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def describe(self) -> str:
        """``maxRetryAge 6h, rateLimit 5/s burst 10, ordered`` (``""`` when empty)."""
        out = []
        for name, value in (("maxRetryAge", self.max_retry_age),
                            ("minRetryDelay", self.min_retry_delay),
                            ("maxRetryDelay", self.max_retry_delay)):
            if value is not None:
                out.append(f"{name} {format_duration(value)}")
        if self.concurrency is not None:
            out.append(f"concurrency {self.concurrency}")
        if self.rate is not None:
            out.append(f"rateLimit {self.rate:g}/s burst {self.bucket}")
        if self.ordered:
            out.append("ordered")
        return ", ".join(out)


def parse_delivery(data: Any, where: str = "spec.delivery") -> DeliveryPolicy:
    """A :class:`DeliveryPolicy` from the ``delivery`` mapping (None: an empty policy);
    raises ValueError naming the field to fix. States the CRD schema's rules again, so a
    file that skipped the schema cannot slip by."""
    if data is None:
        return DeliveryPolicy()
    if not isinstance(data, Mapping):
        raise ValueError(f"{where}: must be a mapping")
    known = {"maxRetryAge", "minRetryDelay", "maxRetryDelay", "concurrency", "rateLimit",
             "ordered"}
    for name in data:
        if name not in known:
            raise ValueError(f"{where}.{name}: unknown field (known: {', '.join(sorted(known))})")
    age = _duration(data, "maxRetryAge", where, MAX_AGE)
    lo = _duration(data, "minRetryDelay", where, MAX_AGE)
    hi = _duration(data, "maxRetryDelay", where, MAX_AGE)
    if lo is not None and hi is not None and lo > hi:
        raise ValueError(f"{where}.minRetryDelay: longer than maxRetryDelay; swap or fix them")
    concurrency = _count(data.get("concurrency"), f"{where}.concurrency")
    rate, burst = _rate(data.get("rateLimit"), f"{where}.rateLimit")
    ordered = data.get("ordered", False)
    if not isinstance(ordered, bool):
        raise ValueError(f"{where}.ordered: must be true or false")
    return DeliveryPolicy(age, lo, hi, concurrency, rate, burst, ordered)


def _duration(data: Mapping[str, Any], name: str, where: str, most: float) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    try:
        seconds = parse_duration(str(value))
    except ValueError as exc:
        raise ValueError(f"{where}.{name}: {exc}") from None
    if not 0 < seconds <= most:
        raise ValueError(f"{where}.{name}: must be more than 0 and at most "
                         f"{format_duration(most)}")
    return seconds


def _count(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where}: must be a whole number, 1 or more")
    return value


def _rate(data: Any, where: str) -> tuple[float | None, int | None]:
    if data is None:
        return None, None
    if not isinstance(data, Mapping) or "perSecond" not in data:
        raise ValueError(f"{where}: needs perSecond (attempts started per second)")
    extra = set(data) - {"perSecond", "burst"}
    if extra:
        raise ValueError(f"{where}.{sorted(extra)[0]}: unknown field (known: burst, perSecond)")
    rate = data["perSecond"]
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0:
        raise ValueError(f"{where}.perSecond: must be a number more than 0")
    return float(rate), _count(data.get("burst"), f"{where}.burst")


def _least(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else min(a, b)


def _most(a: Any, b: Any) -> Any:
    return b if a is None else a if b is None else max(a, b)


def stricter(a: DeliveryPolicy, b: DeliveryPolicy) -> DeliveryPolicy:
    """Both policies at once, field by field: the one that asks less of the backend wins
    (the shorter retry age, the longer retry delays, the lower concurrency, rate and burst,
    ordered over unordered); a field only one of them sets applies as set."""
    burst = _least(a.bucket or None, b.bucket or None)
    rate = _least(a.rate, b.rate)
    return DeliveryPolicy(
        _least(a.max_retry_age, b.max_retry_age), _most(a.min_retry_delay, b.min_retry_delay),
        _most(a.max_retry_delay, b.max_retry_delay), _least(a.concurrency, b.concurrency),
        rate, burst if rate is not None else None, a.ordered or b.ordered)


def dump(policies: Mapping[str, DeliveryPolicy]) -> str:
    """JSON of backend url -> policy (empty policies left out), as :data:`keys.POLICY`."""
    return json.dumps({u: p.to_dict() for u, p in sorted(policies.items()) if not p.empty})


def load(text: str | bytes | None) -> dict[str, DeliveryPolicy]:
    """What :func:`dump` wrote; an absent key: no policies."""
    if not text:
        return {}
    return {u: DeliveryPolicy.from_dict(p) for u, p in json.loads(text).items()}


def effective(s: DeliverySettings, p: DeliveryPolicy) -> DeliverySettings:
    """The worker's settings for one backend: ``p`` laid over the flags. A max retry delay
    below the min retry delay is raised to it."""
    lo = p.min_retry_delay if p.min_retry_delay is not None else s.min_retry_delay
    hi = p.max_retry_delay if p.max_retry_delay is not None else s.max_retry_delay
    return replace(
        s, min_retry_delay=lo, max_retry_delay=max(lo, hi),
        max_retry_age=p.max_retry_age if p.max_retry_age is not None else s.max_retry_age,
        backend_concurrency=1 if p.ordered else (
            p.concurrency if p.concurrency is not None else s.backend_concurrency))
