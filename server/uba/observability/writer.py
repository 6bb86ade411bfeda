"""The ingest writer's telemetry (the domain's WriterTelemetry port): group
size and timing histograms, and a span per group with the commit as its
child. A group gathers the events of many calls: its span continues the
trace of the first call with a trace, and links to the others (at most
MAX_LINKS), so each call's trace leads to the group that stored it."""

from __future__ import annotations

import time
from typing import Any

MAX_LINKS = 32


class WriterTelemetry:
    def __init__(self, metrics: Any | None = None, tracer: Any | None = None):
        self._metrics = metrics  # uba.observability.metrics.Metrics
        self._tracer = tracer  # an OpenTelemetry Tracer
        if tracer is not None:
            from opentelemetry import trace

            self._trace = trace

    def capture(self) -> Any:
        if self._tracer is None:
            return None
        context = self._trace.get_current_span().get_span_context()
        return context if context.is_valid else None

    def group(self, captured: list[Any], events: int) -> _Group:
        return _Group(self, captured, events)


class _Group:
    __slots__ = (
        "_owner",
        "_captured",
        "_events",
        "_started",
        "_commit_started",
        "_span",
        "_commit",
    )

    def __init__(self, owner: WriterTelemetry, captured: list[Any], events: int):
        self._owner = owner
        self._captured = captured
        self._events = events
        self._started = 0.0
        self._commit_started = 0.0
        self._span: Any = None
        self._commit: Any = None

    def __enter__(self) -> _Group:
        self._started = time.perf_counter()
        tracer = self._owner._tracer
        if tracer is not None:
            trace = self._owner._trace
            contexts = [c for c in self._captured if c is not None]
            parent = (
                trace.set_span_in_context(trace.NonRecordingSpan(contexts[0])) if contexts else None
            )
            self._span = tracer.start_span(
                "uba.ingest.group",
                context=parent,
                links=[trace.Link(c) for c in contexts[1 : MAX_LINKS + 1]],
                attributes={
                    "uba.ingest.events": self._events,
                    "uba.ingest.calls": len(self._captured),
                },
            )
        return self

    def committing(self) -> None:
        self._commit_started = time.perf_counter()
        tracer = self._owner._tracer
        if self._span is not None and tracer is not None:
            trace = self._owner._trace
            self._commit = tracer.start_span(
                "uba.ingest.commit", context=trace.set_span_in_context(self._span)
            )

    def committed(self) -> None:
        ended = time.perf_counter()
        if self._commit is not None:
            self._commit.end()
            self._commit = None
        metrics = self._owner._metrics
        if metrics is not None:
            metrics.group_events.observe(self._events)
            metrics.group_seconds.observe(ended - self._started)
            metrics.commit_seconds.observe(ended - self._commit_started)

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:
        if self._commit is not None:  # the commit itself failed
            self._commit.end()
        if self._span is not None:
            if isinstance(exc, BaseException):
                from opentelemetry.trace import Status, StatusCode

                self._span.record_exception(exc)
                self._span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            self._span.end()
        if exc is not None and self._owner._metrics is not None:
            self._owner._metrics.group_failures.inc()
