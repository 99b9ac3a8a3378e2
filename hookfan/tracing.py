"""OpenTelemetry tracing (the optional ``otel`` extra): one trace per webhook, from the intake
request through the stored request and the Celery task to each backend request.

The intake's ``hookfan.store`` span writes its W3C ``traceparent`` into the stored request
(field ``tp``); the worker's ``hookfan.deliver`` span continues from it, and the outbound span's
``traceparent`` replaces any the sender sent in the copy, so the backend's own traces join.

Without ``--otel-endpoint`` every call here is a no-op and nothing of OpenTelemetry is imported.
Spans carry ids, route, backend, status and attempt; never a body, header value or query.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator, Mapping
from typing import Any

from hookfan.config import OtelSettings, SettingsError

EXTRA = "otel"
PACKAGES = ("opentelemetry.sdk", "opentelemetry.exporter.otlp.proto.grpc")
TRACE_HEADERS = frozenset({"traceparent", "tracestate"})


def require(settings: OtelSettings) -> None:
    """Raise SettingsError naming the extra if any ``--otel-*`` flag is set but the packages
    are not installed."""
    if settings == OtelSettings():
        return
    if any(importlib.util.find_spec(p.split(".")[0]) is None or _missing(p) for p in PACKAGES):
        raise SettingsError("--otel-* flags need the optional 'otel' extra: "
                            "pip install 'hookfan[otel]'")


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except ModuleNotFoundError:
        return True


class Tracing:
    """Tracing switched off: spans are no-ops, no trace context is stored or forwarded."""

    enabled = False

    @contextlib.contextmanager
    def span(self, name: str, kind: str = "internal", parent: str | None = None,
             start_ns: int | None = None, attrs: Mapping[str, Any] | None = None
             ) -> Iterator[Any]:
        """A span named ``name`` (kind ``server``, ``client``, ``consumer`` or ``internal``)
        under ``parent`` (a traceparent) or the current span; yields the span (or None)."""
        yield None

    def traceparent(self) -> str:
        """The current span's W3C traceparent; empty when there is none."""
        return ""

    def outbound(self, lines: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """``lines`` with the current trace context in place of any the sender sent."""
        return lines

    def flush(self) -> None:
        """Export what is buffered (before a process exits)."""


class OtelTracing(Tracing):
    enabled = True

    def __init__(self, settings: OtelSettings, process: str) -> None:
        from opentelemetry.propagators.textmap import DefaultGetter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
        self.provider = TracerProvider(resource=Resource.create(
            {"service.name": settings.service_name, "hookfan.process": process}))
        self.provider.add_span_processor(BatchSpanProcessor(exporter(settings)))
        self.tracer = self.provider.get_tracer("hookfan")
        self.propagator = TraceContextTextMapPropagator()
        self.getter = DefaultGetter()

    @contextlib.contextmanager
    def span(self, name: str, kind: str = "internal", parent: str | None = None,
             start_ns: int | None = None, attrs: Mapping[str, Any] | None = None
             ) -> Iterator[Any]:
        from opentelemetry.trace import SpanKind
        ctx = self.propagator.extract({"traceparent": parent}) if parent else None
        with self.tracer.start_as_current_span(
                name, context=ctx, kind=SpanKind[kind.upper()], start_time=start_ns,
                attributes={k: v for k, v in (attrs or {}).items() if v is not None}) as span:
            yield span

    def traceparent(self) -> str:
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier)
        return carrier.get("traceparent", "")

    def outbound(self, lines: list[tuple[str, str]]) -> list[tuple[str, str]]:
        carrier: dict[str, str] = {}
        self.propagator.inject(carrier)
        if not carrier:
            return lines
        kept = [(n, v) for n, v in lines if n.lower() not in TRACE_HEADERS]
        return kept + sorted(carrier.items())

    def flush(self) -> None:
        self.provider.force_flush(timeout_millis=5000)


def exporter(settings: OtelSettings) -> Any:
    """The OTLP/gRPC span exporter for ``--otel-endpoint``: plaintext with ``--otel-insecure``,
    else TLS, with the root CA and client certificate files when given."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    if settings.insecure:
        return OTLPSpanExporter(endpoint=settings.endpoint, insecure=True)
    import grpc  # type: ignore[import-untyped]

    def read(path: str | None) -> bytes | None:
        if not path:
            return None
        with open(path, "rb") as fh:
            return fh.read()

    creds = grpc.ssl_channel_credentials(read(settings.tls_root_ca_path),
                                         read(settings.tls_client_key_path),
                                         read(settings.tls_client_cert_path))
    return OTLPSpanExporter(endpoint=settings.endpoint, insecure=False, credentials=creds)


def setup(settings: OtelSettings, process: str) -> Tracing:
    """Tracing for this process: :class:`OtelTracing` when ``--otel-endpoint`` is set, else
    the no-op :class:`Tracing`. Call it in the process that makes the spans (after a fork:
    the exporter's connection and thread do not survive one)."""
    if not settings.endpoint:
        return Tracing()
    require(settings)
    return OtelTracing(settings, process)
