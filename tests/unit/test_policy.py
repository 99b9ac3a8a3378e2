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
def test_transport_errors_are_retried(error):
    assert classify(None, error) == classify(None, error)
    assert classify(None, error).kind == "retry"


def test_backoff_grows_exponentially_with_jitter_and_cap():
    rng = random.Random(1)
    delays = [retry_delay(n, 0.75, 900, rng=rng) for n in range(1, 16)]
    assert 0.75 <= delays[0] <= 0.9
    assert 2.4 <= delays[2] <= 3.6
    assert max(delays) == 900
    assert all(d >= 0.75 for d in delays)


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
