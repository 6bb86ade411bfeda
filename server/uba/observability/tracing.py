"""OpenTelemetry traces, exported over OTLP/HTTP (protobuf) to
--otlp-endpoint; off by default, and the packages are the optional extra
`tracing` (`pip install 'uba[tracing]'`).

Spans: each RPC (opentelemetry-instrumentation-grpc's grpc.aio server
interceptor, first in the chain so that it covers authentication and the
error mapping), each ingest group and its commit on the writer thread
(uba.observability.writer), each attempt to deliver a notification.

`trace_id()` gives the active span's trace id (32 hex digits) or "", for
the JSON log lines and INTERNAL errors: one id leads from a log line or an
error message to its trace. It works without the packages installed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

try:
    from opentelemetry import trace as _trace
except ImportError:  # the `tracing` extra is not installed
    _trace = None  # type: ignore[assignment]

INSTALL_HINT = "tracing needs the optional packages: pip install 'uba[tracing]'"

_tracer: Any = None
_provider: Any = None


def trace_id() -> str:
    """The active span's trace id as 32 hex digits, or ""."""
    if _trace is None or _tracer is None:
        return ""
    context = _trace.get_current_span().get_span_context()
    return _trace.format_trace_id(context.trace_id) if context.is_valid else ""


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL: a bare collector address (http://host:4318)
    gets the standard path /v1/traces; a URL with a path is used as given."""
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) URL: {endpoint!r}")
    if parts.path in ("", "/"):
        return endpoint.rstrip("/") + "/v1/traces"
    return endpoint


def start(endpoint: str, version: str) -> Any:
    """Installs the tracer provider exporting to `endpoint`; returns the
    tracer. Raises SystemExit when the packages are missing."""
    global _tracer, _provider
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        raise SystemExit(f"uba: --otlp-endpoint: {INSTALL_HINT}") from None
    try:
        url = traces_url(endpoint)
    except ValueError as exc:
        raise SystemExit(f"uba: --otlp-endpoint: {exc}") from None
    provider = TracerProvider(
        resource=Resource.create({"service.name": "uba", "service.version": version})
    )
    # Batched on the SDK's own thread: a slow or absent collector costs
    # dropped spans, never a slower call.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=url)))
    _provider = provider
    _tracer = provider.get_tracer("uba")
    return _tracer


def server_interceptor() -> Any:
    """The grpc.aio server interceptor that makes a span of each RPC."""
    from opentelemetry.instrumentation.grpc import aio_server_interceptor

    return aio_server_interceptor(tracer_provider=_provider)


def tracer() -> Any:
    return _tracer


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """A span around a block when tracing is on (else nothing)."""
    if _tracer is None:
        yield None
        return
    with _tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current


def mark_failed(current: Any, description: str) -> None:
    """Marks a span from `span` as failed (nothing when tracing is off)."""
    if current is None or _trace is None:
        return
    current.set_status(_trace.Status(_trace.StatusCode.ERROR, description[:200]))


def stop() -> None:
    """Sends what is buffered and stops exporting."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None
