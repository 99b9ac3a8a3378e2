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
    """Delay before attempt ``attempt + 1``, drawn uniformly from ``[base / 2, 1.5 * base]``
    ("equal jitter" around ``base = min(min_delay * 2**(attempt - 1), max_delay)``) cut to
    ``[min_delay, max_delay]``: the first retry lands in ``[min_delay, 1.5 * min_delay]`` and
    a capped one in ``[max_delay / 2, max_delay]``, so a backlog that failed together does
    not retry in lockstep. The draw is a single point only when
    ``min_delay == max_delay``. A backend's Retry-After is honoured within the same bounds.
    ``settle.lua`` draws a lease that ran out the same way."""
    if retry_after is not None:
        return min(max(retry_after, min_delay), max_delay)
    base = min(min_delay * 2.0 ** min(max(attempt - 1, 0), 62), max_delay)
    return (rng or random).uniform(max(min_delay, base / 2), min(max_delay, base * 1.5))


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
