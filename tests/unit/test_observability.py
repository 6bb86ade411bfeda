"""In-process parts of metrics and tracing: the trace id that leads from a
log line or an INTERNAL error to its trace, and the detectors' histogram."""

from __future__ import annotations

import json
import logging

from support.otlp import OtlpReceiver

from uba.api.errors import _internal
from uba.logging_setup import JsonFormatter
from uba.observability import tracing
from uba.observability.histogram import FastHistogram


def _record(msg: str) -> logging.LogRecord:
    return logging.LogRecord("uba.test", logging.ERROR, __file__, 1, msg, None, None)


def test_log_lines_and_internal_errors_carry_the_active_trace_id():
    receiver = OtlpReceiver()
    try:
        tracer = tracing.start(receiver.url, "test")
        with tracer.start_as_current_span("call") as span:
            expected = format(span.get_span_context().trace_id, "032x")
            line = json.loads(JsonFormatter().format(_record("something happened")))
            internal = _internal("/uba.v1.X/Y", RuntimeError("boom"))
        assert line["trace_id"] == expected
        assert internal.details == f"internal error; trace id {expected}"
        tracing.stop()
        # The span reached the collector under that id.
        (exported,) = receiver.wait_for(lambda spans: [s for s in spans if s.name == "call"])
        assert exported.trace_id.hex() == expected
    finally:
        tracing.stop()
        receiver.close()
    # Outside a span (or with tracing off): no trace id, a random one for errors.
    assert "trace_id" not in json.loads(JsonFormatter().format(_record("quiet")))
    assert _internal("/x", RuntimeError()).details.startswith("internal error; trace id ")


def test_detector_histogram_counts_like_a_prometheus_histogram():
    hist = FastHistogram((0.001, 0.01))
    for seconds in (0.0005, 0.001, 0.002, 0.5):
        hist.observe(seconds)
    buckets, total = hist.snapshot()
    # `le` is inclusive, counts are cumulative, +Inf counts everything.
    assert buckets == [("0.001", 2), ("0.01", 3), ("+Inf", 4)]
    assert total == 0.5035
