"""With ``--log-encoding json`` every line of every process is JSON, and nothing a sender sent
(body, header values) reaches a log line."""

from __future__ import annotations

import json
from collections.abc import Callable

from tests.conftest import route_file
from tests.observability.conftest import ObservedStack
from tests.observability.test_metrics import until_accepted
from tests.stackfixtures import raw_send
from tests.support.backends import RecordingBackend, always, sequence

HOST = "logs.example.com"
BODY_MARKER = "BODY-MARKER-5f1c2a"
SECRET = "SECRET-HEADER-VALUE-91ab7e"


def test_every_line_is_json_and_carries_no_body_or_header_value(
        observed: ObservedStack, make_backend: Callable[..., RecordingBackend]) -> None:
    ok = make_backend()
    flaky = make_backend(respond=sequence(500, 200))
    broken = make_backend(respond=always(422))
    route_file(observed.routes_dir, HOST, [ok, flaky, broken])
    observed.start()
    until_accepted(observed, HOST)
    assert raw_send(observed.url, "nobody.example.com").status_code == 503
    headers = [("X-Hub-Signature-256", SECRET), ("Authorization", f"Bearer {SECRET}")]
    body = json.dumps({"marker": BODY_MARKER}).encode()
    assert raw_send(observed.url, HOST, body, headers=headers).status_code == 202
    assert raw_send(observed.url, HOST, body, path=f"/?{SECRET}=1",
                    headers=headers).status_code == 202
    ok.wait_for(3)
    flaky.wait_for(4)
    broken.wait_for(3)
    observed.stop()
    records: dict[str, list[dict[str, object]]] = {}
    for name, text in observed.logs().items():
        assert BODY_MARKER not in text, name
        assert SECRET not in text, name
        for line in text.splitlines():
            try:
                records.setdefault(name, []).append(json.loads(line))
            except ValueError:
                raise AssertionError(f"{name}: not JSON: {line!r}") from None
    assert_fields(records)


def assert_fields(records: dict[str, list[dict[str, object]]]) -> None:
    """The records say what happened, with the ids, route, backend, status and duration."""
    attempts = [r for r in records["worker"] if str(r["msg"]).startswith("attempt ")]
    assert {"delivered", "retry", "dead"} <= {str(r["msg"]).split()[1] for r in attempts}
    for r in attempts:
        assert {"delivery_id", "request_id", "route", "backend", "attempt", "duration",
                "status"} <= set(r), r
    loggers = {str(r["logger"]) for r in records["worker"]}
    assert any(lg.startswith("celery") for lg in loggers), loggers  # Celery's own lines
    answered = [r for r in records["app"] if r["msg"] == "request answered"]
    assert {r.get("status") for r in answered} >= {202, 503}
    assert all({"route", "duration", "status"} <= set(r) for r in answered)
    assert any(str(r["logger"]).startswith("gunicorn") for r in records["app"])
    assert records["operator"]
