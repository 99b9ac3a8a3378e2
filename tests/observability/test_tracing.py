"""One trace from the intake request through the stored request and the Celery task to the
backend request, exported over OTLP/gRPC to a real receiver in the test; the backend gets a
``traceparent`` of that trace."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import pytest

grpc = pytest.importorskip("grpc")
pytest.importorskip("opentelemetry.sdk")
from opentelemetry.proto.collector.trace.v1 import (  # noqa: E402
    trace_service_pb2,
    trace_service_pb2_grpc,
)

from hookfan.devstack import free_port  # noqa: E402
from tests.conftest import route_file  # noqa: E402
from tests.stackfixtures import send  # noqa: E402
from tests.support.backends import RecordingBackend  # noqa: E402
from tests.support.procs import Stack, wait_until  # noqa: E402

HOST = "traced.example.com"


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    """An OTLP trace receiver keeping (trace id, span id, parent id, name, kind) per span."""

    def __init__(self) -> None:
        self.spans: list[tuple[str, str, str, str, int]] = []
        self.lock = threading.Lock()

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802 - gRPC's naming
        with self.lock:
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        self.spans.append((s.trace_id.hex(), s.span_id.hex(),
                                           s.parent_span_id.hex(), s.name, s.kind))
        return trace_service_pb2.ExportTraceServiceResponse()

    def named(self, name: str) -> list[tuple[str, str, str, str, int]]:
        with self.lock:
            return [s for s in self.spans if s[3] == name]


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    rec = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(rec, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    yield rec, port
    server.stop(0)


def test_intake_task_and_outbound_spans_share_one_trace_with_the_backend(
        redis_url: str, tmp_path: Path, receiver: tuple[Receiver, int],
        make_backend: Callable[..., RecordingBackend]) -> None:
    rec, port = receiver
    env = {"HOOKFAN_OTEL_ENDPOINT": f"127.0.0.1:{port}", "HOOKFAN_OTEL_INSECURE": "true",
           "OTEL_BSP_SCHEDULE_DELAY": "100"}
    stack = Stack(redis_url, tmp_path / "routes", tmp_path / "logs", env=env)
    stack.routes_dir.mkdir()
    backend = make_backend()
    route_file(stack.routes_dir, HOST, [backend])
    try:
        stack.start()
        resp = send(stack, HOST, b'{"traced": true}')
        assert resp.status_code == 202
        got = backend.wait_for(1)[0]
        wait_until(lambda: rec.named("hookfan.deliver") and rec.named("HTTP POST")
                   and any(s for s in rec.named("hookfan.intake")), timeout=15,
                   what="spans exported")
    finally:
        stack.stop()
    outbound = rec.named("HTTP POST")[0]
    trace_id = outbound[0]
    task = next(s for s in rec.named("hookfan.deliver") if s[0] == trace_id)
    store = next(s for s in rec.named("hookfan.store") if s[0] == trace_id)
    intake = next(s for s in rec.named("hookfan.intake") if s[0] == trace_id)
    assert outbound[2] == task[1] and task[2] == store[1] and store[2] == intake[1]
    assert (got.header("traceparent") or "").startswith(f"00-{trace_id}-{outbound[1]}-")


def test_otel_flags_without_the_extra_are_an_error_naming_it(tmp_path: Path) -> None:
    # The extra is installed here, so hide it from a fresh interpreter: a None entry in
    # sys.modules makes its import fail, as if it were not installed.
    code = ("import sys; sys.modules['opentelemetry'] = None; "
            "from hookfan.cli import main; "
            "sys.exit(main(['worker', '--otel-endpoint', 'collector:4317']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=30)
    assert out.returncode == 2
    assert "'otel' extra" in out.stderr and "hookfan[otel]" in out.stderr
