"""Operational telemetry: Prometheus metrics (uba.observability.metrics) and
OpenTelemetry traces (uba.observability.tracing), both off by default.

The adapters (api, detectors, delivery) report what they see to `recorder`,
a do-nothing Recorder until the composition root installs the Prometheus
one for --metrics-listen; so a server without metrics pays one method call
that returns at once, and nothing here imports prometheus_client. The
domain reports through its own port (uba.domain.ingest.WriterTelemetry),
which uba.observability.writer implements.
"""

from __future__ import annotations

from collections.abc import Iterable


class Recorder:
    """What the adapters report. This base records nothing."""

    def received(self, rpc: str, sources: Iterable[str]) -> None:
        """Events a call carried, by their `source`, as it arrives."""

    def ingest(self, rpc: str, outcomes: Iterable[tuple[str, str]]) -> None:
        """Events a call carried, as (source, outcome) pairs; outcome is
        accepted, duplicate, invalid or failed."""

    def refused(self, method: str, reason: str) -> None:
        """A call the auth interceptor refused: unauthenticated,
        permission_denied, rate_limited, too_many_streams or unavailable."""

    def stream_opened(self, rpc: str) -> None: ...

    def stream_closed(self, rpc: str) -> None: ...

    def delivered(self, destination: str, ok: bool, seconds: float) -> None:
        """One send of a notification to a destination, and how it went."""

    def dead_letter(self, destination: str) -> None: ...

    def trained(self, seconds: float, ok: bool) -> None:
        """One Isolation Forest training run."""


recorder: Recorder = Recorder()


def install(new: Recorder) -> None:
    """Makes `new` the process's recorder (the composition root calls it
    once, before serving)."""
    global recorder
    recorder = new
