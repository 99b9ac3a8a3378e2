"""Delivery decisions: classify an attempt's outcome and compute the next due time. Pure."""

from __future__ import annotations

import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal

RETRY_STATUSES = frozenset({408, 425, 429})

Kind = Literal["delivered", "retry", "dead"]


@dataclass(frozen=True)
class Outcome:
    kind: Kind
    reason: str
    """``HTTP 503``, ``ConnectionRefused``, ``Timeout``...; never body or header content."""
    status: int | None = None


def classify(status: int | None, error: str | None = None) -> Outcome:
    """2xx delivered; 408/425/429/5xx and transport errors retried; any other status dead."""
    if status is None:
        return Outcome("retry", error or "TransportError")
    if 200 <= status < 300:
        return Outcome("delivered", f"HTTP {status}", status)
    if status in RETRY_STATUSES or 500 <= status < 600:
        return Outcome("retry", f"HTTP {status}", status)
    return Outcome("dead", f"HTTP {status} is not retryable", status)


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent or bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def retry_delay(attempt: int, min_delay: float, max_delay: float,
                retry_after: float | None = None, rng: random.Random | None = None) -> float:
    """Delay before attempt ``attempt + 1``: exponential from ``min_delay`` with ±20 % jitter,
    capped at ``max_delay``; a backend's Retry-After is honoured up to the same cap."""
    if retry_after is not None:
        return min(max(retry_after, min_delay), max_delay)
    base = min_delay * 2.0 ** min(max(attempt - 1, 0), 62)
    jitter = (rng or random).uniform(0.8, 1.2)
    return min(max(base * jitter, min_delay), max_delay)


def next_step(outcome: Outcome, attempt: int, started: float, now: float, min_delay: float,
              max_delay: float, max_age: float, retry_after: float | None = None,
              rng: random.Random | None = None) -> tuple[Kind, float]:
    """(what to do, when): a retry past ``max_age`` since ``started`` becomes a dead letter."""
    if outcome.kind != "retry":
        return outcome.kind, now
    due = now + retry_delay(attempt, min_delay, max_delay, retry_after, rng)
    if due - started > max_age:
        return "dead", now
    return "retry", due
