"""What the intake answers in each Receiver answer mode, from the targets' first answers
(pure: hookfan.answers)."""

from __future__ import annotations

import json

from hookfan.answers import (
    PREFER_FAILED,
    PREFER_SUCCESSFUL,
    REPORT,
    Answer,
    awaited,
    choose,
    decode,
    encode,
    recorded,
)

OK = Answer(200, (("Content-Type", "application/json"),), b'{"ok":true}')
OK2 = Answer(201, (), b"second")
BAD = Answer(500, (), b"broke")
BAD2 = Answer(404, (), b"gone")


def test_only_the_await_all_modes_wait() -> None:
    assert [awaited(m) for m in ("Async", PREFER_SUCCESSFUL, PREFER_FAILED, REPORT, "x")] == \
        [False, True, True, True, False]


def test_prefer_successful_takes_the_first_2xx_else_the_last_answer() -> None:
    assert choose(PREFER_SUCCESSFUL, [BAD, OK, OK2], 0) == OK
    assert choose(PREFER_SUCCESSFUL, [BAD, BAD2], 0) == BAD2
    assert choose(PREFER_SUCCESSFUL, [BAD], 1) == Answer(504)  # the missing one came last
    assert choose(PREFER_SUCCESSFUL, [], 2) == Answer(504)


def test_prefer_failed_takes_the_first_of_400_or_above_else_the_last_answer() -> None:
    assert choose(PREFER_FAILED, [OK, BAD2, BAD], 0) == BAD2
    assert choose(PREFER_FAILED, [OK, OK2], 0) == OK2
    assert choose(PREFER_FAILED, [OK], 1) == Answer(504)


def test_report_lists_every_target_in_arrival_order_as_the_go_version() -> None:
    got = choose(REPORT, [OK, Answer(500, (("X-A", "1"), ("X-A", "2")), b"\xffx")], 1)
    assert (got.status, got.headers) == (200, (("Content-Type", "application/json"),))
    assert json.loads(got.body) == {"targets": [
        {"statusCode": 200, "body": '{"ok":true}',
         "headers": {"Content-Type": ["application/json"]}},
        {"statusCode": 500, "body": "\ufffdx", "headers": {"X-A": ["1", "2"]}},
        {"statusCode": 504}]}


def test_hop_by_hop_and_server_written_headers_are_not_passed_on() -> None:
    given = [("Content-Type", "text/plain"), ("Connection", "keep-alive, X-Private"),
             ("Keep-Alive", "timeout=5"), ("X-Private", "p"), ("Content-Length", "2"),
             ("Transfer-Encoding", "chunked"), ("Date", "d"), ("Server", "s"),
             ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")]
    assert recorded(200, given, b"ok") == Answer(200, (
        ("Content-Type", "text/plain"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")), b"ok")


def test_no_answer_counts_as_504_and_a_body_over_the_cap_as_502() -> None:
    assert recorded(None, None, None) == Answer(504)
    assert recorded(200, [("X-A", "1")], None) == Answer(502)


def test_a_record_round_trips_with_its_bytes() -> None:
    answer = Answer(200, (("X-A", "é"),), b"\x00\n\xff{}")
    assert decode(encode("req-1", answer)) == ("req-1", answer)
