import random

import pytest

from hookfan.policy import classify, next_step, parse_retry_after, retry_delay


@pytest.mark.parametrize("status", [200, 201, 202, 204, 299])
def test_2xx_is_delivered(status):
    assert classify(status).kind == "delivered"


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504, 599])
def test_throttling_and_server_errors_are_retried(status):
    assert classify(status).kind == "retry"


@pytest.mark.parametrize("status", [301, 302, 400, 401, 403, 404, 410, 413, 422])
def test_other_statuses_are_dead_at_once_with_reason(status):
    out = classify(status)
    assert out.kind == "dead" and str(status) in out.reason


@pytest.mark.parametrize("error", ["ConnectionRefused", "DNSFailure", "Timeout"])
def test_transport_errors_are_retried_and_named(error):
    out = classify(None, error)
    assert (out.kind, out.reason, out.status) == ("retry", error, None)


def test_a_transport_error_without_a_name_is_still_retried():
    assert classify(None).kind == "retry" and classify(None).reason == "TransportError"


def test_backoff_grows_exponentially_with_jitter_and_cap():
    rng = random.Random(1)
    delays = [retry_delay(n, 0.75, 900, rng=rng) for n in range(1, 16)]
    assert 0.75 <= delays[0] <= 1.125
    assert 1.5 <= delays[2] <= 4.5  # base 3 s
    assert all(0.75 <= d <= 900 for d in delays)
    assert max(delays) > 450


def _spread(attempt: int, low: float, high: float) -> list[float]:
    rng = random.Random(7)
    return [retry_delay(attempt, low, high, rng=rng) for _ in range(2000)]


def test_first_retries_spread_above_the_minimum_not_at_one_point():
    delays = _spread(1, 0.75, 900)
    assert min(delays) >= 0.75 and max(delays) <= 1.125
    # spread over most of [0.75, 1.125]: a backlog that failed together retries apart
    assert max(delays) - min(delays) > 0.3
    assert sum(d < 0.75 + 0.00375 for d in delays) < 100  # ~1 % in its lowest 1 %: no pile-up


def test_capped_retries_spread_below_the_cap_not_at_one_point():
    delays = _spread(30, 0.75, 900)
    assert min(delays) >= 450 and max(delays) <= 900
    assert max(delays) - min(delays) > 400
    assert sum(d > 900 - 4.5 for d in delays) < 100  # ~1 % in its highest 1 %: no pile-up


def test_equal_min_and_max_is_the_only_fixed_delay():
    assert set(_spread(1, 5, 5)) == {5} and set(_spread(20, 5, 5)) == {5}


def test_retry_after_is_honoured_up_to_the_cap():
    assert retry_delay(1, 0.75, 900, retry_after=120) == 120
    assert retry_delay(1, 0.75, 900, retry_after=10_000) == 900


def test_retry_after_parses_seconds_and_dates():
    assert parse_retry_after("30", now=0) == 30
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:00 GMT", now=0) == 60
    assert parse_retry_after("soon", now=0) is None


def test_retry_past_max_age_becomes_dead_letter():
    out = classify(503)
    kind, _ = next_step(out, attempt=30, started=0, now=86_000, min_delay=0.75,
                        max_delay=900, max_age=86_400)
    assert kind == "dead"
    kind, due = next_step(out, attempt=1, started=0, now=10, min_delay=1, max_delay=900,
                          max_age=86_400)
    assert kind == "retry" and 10.5 < due < 12
