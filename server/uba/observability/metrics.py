"""Prometheus metrics, served on --metrics-listen (docs/operations.md lists
them). Names follow Prometheus conventions: units in the name, `_total` for
counters, label sets bounded by the code (RPC and detector names, fixed
statuses, configured destinations); never a user id, an address or any
other value a caller chooses.

Three kinds of source:
- counters and histograms the adapters update as things happen (this
  module's Recorder methods, the writer's WriterTelemetry);
- state read at scrape time, cheaply: the writer queue depth, the
  database pool, detector timings and anomaly counts the engine keeps in
  plain Python, unresolved alerts and incidents and the outbox backlog
  (index range counts in storage), the model's age;
- garbage collector pauses, from gc.callbacks.

The metrics live in a registry of their own, served by prometheus_client's
HTTP server on its own thread, so a scrape never runs on the event loop or
the writer thread.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.registry import Collector

from uba.domain.anomalies import Severity
from uba.domain.backlog import EventLogStatus
from uba.observability import Recorder

log = logging.getLogger(__name__)

# Sources the importers write; any other value of an event's free-text
# `source` is counted as "other", so the label set stays bounded.
KNOWN_SOURCES = frozenset(
    {"sshd", "cloudtrail", "ecs", "entra", "ocsf", "okta", "windows", "jsonl", "csv"}
)
NO_SOURCE = "none"
OTHER_SOURCE = "other"

GROUP_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
TRAINING_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 3600)
GC_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


def source_label(source: str) -> str:
    if not source:
        return NO_SOURCE
    return source if source in KNOWN_SOURCES else OTHER_SOURCE


def severity_label(value: int) -> str:
    try:
        return Severity(value).name.lower()
    except ValueError:
        return "unknown"


class Metrics(Recorder):
    """Every metric of one server process, in its own registry."""

    def __init__(self) -> None:
        # No `_created` series beside each counter: they double the page
        # and no dashboard here reads them.
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_received = Counter(
            "uba_ingest_events_received",
            "Events received by ingest RPCs, before validation.",
            ["rpc", "source"],
            registry=r,
        )
        self.events = Counter(
            "uba_ingest_events",
            "Events handled by ingest RPCs, by outcome: accepted (stored now), duplicate "
            "(stored before: same event_id), invalid (refused by validation), failed (the "
            "call failed: queue full or storage unavailable).",
            ["rpc", "source", "outcome"],
            registry=r,
        )
        self.group_events = Histogram(
            "uba_ingest_group_events",
            "Events per ingest group (one transaction of the writer thread).",
            buckets=GROUP_SIZE_BUCKETS,
            registry=r,
        )
        self.group_seconds = Histogram(
            "uba_ingest_group_seconds",
            "Time to write one ingest group: store, detect, commit.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.commit_seconds = Histogram(
            "uba_ingest_commit_seconds",
            "Time of an ingest group's COMMIT.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.group_failures = Counter(
            "uba_ingest_group_failures",
            "Ingest groups whose transaction failed (their callers got UNAVAILABLE).",
            registry=r,
        )
        self.refusals = Counter(
            "uba_calls_refused",
            "Calls refused before their handler ran, by method and reason: unauthenticated, "
            "permission_denied, rate_limited, too_many_streams, unavailable.",
            ["method", "reason"],
            registry=r,
        )
        self.streams = Gauge(
            "uba_open_streams",
            "Server streams open now (StreamAlerts, which also carries the SSE feed; ExportLogs).",
            ["rpc"],
            registry=r,
        )
        self.deliveries = Counter(
            "uba_notification_deliveries",
            "Attempts to send a notification, by destination and outcome (delivered, failed).",
            ["destination", "outcome"],
            registry=r,
        )
        self.delivery_seconds = Histogram(
            "uba_notification_delivery_seconds",
            "Time of one attempt to send a notification.",
            ["destination"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.dead_letters = Counter(
            "uba_notification_dead_letters",
            "Notifications given up on (dead letters), by destination.",
            ["destination"],
            registry=r,
        )
        self.training_seconds = Histogram(
            "uba_model_training_seconds",
            "Duration of Isolation Forest trainings, by outcome (ok, failed).",
            ["outcome"],
            buckets=TRAINING_BUCKETS,
            registry=r,
        )
        self.gc_seconds = Histogram(
            "uba_gc_pause_seconds",
            "Pauses of Python's cyclic garbage collector, by generation.",
            ["generation"],
            buckets=GC_BUCKETS,
            registry=r,
        )
        # Label children cached: `labels()` costs a lock and a dict lookup.
        self._event_children: dict[tuple[str, str, str], Any] = {}
        self._received_children: dict[tuple[str, str], Any] = {}
        self._gc_started = 0.0
        self._server: Any = None

    # -- Recorder ------------------------------------------------------------------

    def received(self, rpc: str, sources: Iterable[str]) -> None:
        tally: dict[str, int] = {}
        for source in sources:
            tally[source] = tally.get(source, 0) + 1
        for source, n in tally.items():
            label = source_label(source)
            child = self._received_children.get((rpc, label))
            if child is None:
                child = self._received_children.setdefault(
                    (rpc, label), self.events_received.labels(rpc, label)
                )
            child.inc(n)

    def ingest(self, rpc: str, outcomes: Iterable[tuple[str, str]]) -> None:
        # Counted per distinct (source, outcome), not per event: a batch of
        # a thousand events costs a few increments.
        tally: dict[tuple[str, str], int] = {}
        for key in outcomes:
            tally[key] = tally.get(key, 0) + 1
        for (source, outcome), n in tally.items():
            label = source_label(source)
            child = self._event_children.get((rpc, label, outcome))
            if child is None:
                child = self._event_children.setdefault(
                    (rpc, label, outcome), self.events.labels(rpc, label, outcome)
                )
            child.inc(n)

    def refused(self, method: str, reason: str) -> None:
        self.refusals.labels(method, reason).inc()

    def stream_opened(self, rpc: str) -> None:
        self.streams.labels(rpc).inc()

    def stream_closed(self, rpc: str) -> None:
        self.streams.labels(rpc).dec()

    def delivered(self, destination: str, ok: bool, seconds: float) -> None:
        self.deliveries.labels(destination, "delivered" if ok else "failed").inc()
        self.delivery_seconds.labels(destination).observe(seconds)

    def dead_letter(self, destination: str) -> None:
        self.dead_letters.labels(destination).inc()

    def trained(self, seconds: float, ok: bool) -> None:
        self.training_seconds.labels("ok" if ok else "failed").observe(seconds)

    # -- wiring ---------------------------------------------------------------------

    def declare(self, rpcs: Sequence[str], destinations: Sequence[str]) -> None:
        """Creates the label sets known in advance, so that they read 0
        before the first event (a rate over a series that appears late
        misses its first increase)."""
        for rpc in rpcs:
            for outcome in ("accepted", "duplicate", "invalid", "failed"):
                self.events.labels(rpc, NO_SOURCE, outcome)
            self.events_received.labels(rpc, NO_SOURCE)
        for rpc in ("StreamAlerts", "ExportLogs"):
            self.streams.labels(rpc)
        for d in destinations:
            self.deliveries.labels(d, "delivered")
            self.deliveries.labels(d, "failed")
            self.dead_letters.labels(d)

    def watch_gc(self) -> None:
        """Times every collection (gc.callbacks run on the collecting thread,
        around the collection, with the GIL held)."""

        def callback(phase: str, info: dict) -> None:
            if phase == "start":
                self._gc_started = time.perf_counter()
            else:
                self.gc_seconds.labels(str(info.get("generation", ""))).observe(
                    time.perf_counter() - self._gc_started
                )

        gc.callbacks.append(callback)
        self._gc_callback = callback

    def add_collector(self, collector: Collector) -> None:
        self.registry.register(collector)

    def serve(self, listen: str) -> tuple[str, int]:
        """Starts the HTTP server (GET /metrics) on HOST:PORT; returns the
        address it listens on."""
        # The process's own series after uba's, which a reader looks for first.
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        host, _, port = listen.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        try:
            server, _thread = start_http_server(int(port), addr=host, registry=self.registry)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"uba: cannot serve metrics on {listen}: {exc}") from None
        self._server = server
        return host, server.server_address[1]

    def close(self) -> None:
        if getattr(self, "_gc_callback", None) in gc.callbacks:
            gc.callbacks.remove(self._gc_callback)
        if self._server is not None:
            threading.Thread(target=self._server.shutdown, daemon=True).start()
            self._server.server_close()
            self._server = None


class StateCollector(Collector):
    """What a scrape reads from the running server, each part guarded: a
    part that fails (the database is down) is left out, not the scrape."""

    def __init__(
        self,
        *,
        pending: Callable[[], int],
        max_pending: int,
        engine: Any,
        pool: Any,
        counts: Callable[[], Any] | None,
        model_created_at: Callable[[], str | None],
        build: dict[str, str],
        event_log: Callable[[], EventLogStatus] | None = None,
    ):
        self._event_log = event_log
        self._pending = pending
        self._max_pending = max_pending
        self._engine = engine
        self._pool = pool
        self._counts = counts
        self._model_created_at = model_created_at
        self._build = build

    def describe(self) -> list:
        return []  # collected on demand only (no database read at registration)

    def collect(self) -> Iterable[Any]:
        info = GaugeMetricFamily(
            "uba_build_info", "The server's version and modes.", labels=list(self._build)
        )
        info.add_metric(list(self._build.values()), 1)
        yield info
        yield GaugeMetricFamily(
            "uba_ingest_pending_events",
            "Events queued for the writer thread and not yet written (its queue depth).",
            value=self._pending(),
        )
        yield GaugeMetricFamily(
            "uba_ingest_max_pending_events",
            "Queue depth past which ingest answers RESOURCE_EXHAUSTED (--max-pending-events).",
            value=self._max_pending,
        )
        yield from self._detectors()
        yield from self._pool_state()
        yield from self._storage()
        yield from self._model()
        yield from self._event_log_lag()

    def _detectors(self) -> Iterable[Any]:
        seconds = HistogramMetricFamily(
            "uba_detector_seconds",
            "Time a detector spent on one event (scoring and learning it).",
            labels=["detector"],
        )
        for name, hist in list(self._engine.timings.items()):
            buckets, total = hist.snapshot()
            seconds.add_metric([name], buckets, total)
        yield seconds
        anomalies = CounterMetricFamily(
            "uba_anomalies",
            "Anomalies found, by detector and severity.",
            labels=["detector", "severity"],
        )
        for (detector, severity), n in dict.copy(self._engine.found).items():
            anomalies.add_metric([detector, severity], n)
        yield anomalies
        failures = CounterMetricFamily(
            "uba_detector_failures",
            "Exceptions raised by a detector (the event was still stored).",
            labels=["detector"],
        )
        for detector, n in dict.copy(self._engine.failures).items():
            failures.add_metric([detector], n)
        yield failures

    def _pool_state(self) -> Iterable[Any]:
        pool = self._pool
        if not hasattr(pool, "checkedout"):
            return  # SQLite's pool keeps no such counts
        connections = GaugeMetricFamily(
            "uba_db_pool_connections",
            "Database connections of the pool, by state (in_use, idle, overflow).",
            labels=["state"],
        )
        connections.add_metric(["in_use"], pool.checkedout())
        connections.add_metric(["idle"], pool.checkedin())
        connections.add_metric(["overflow"], max(pool.overflow(), 0))
        yield connections
        yield GaugeMetricFamily(
            "uba_db_pool_size", "Connections the pool keeps (--max-workers).", value=pool.size()
        )

    def _storage(self) -> Iterable[Any]:
        if self._counts is None:
            return
        started = time.perf_counter()
        try:
            counts = self._counts()
        except Exception:  # noqa: BLE001 - the database is down: the rest still helps
            log.warning("metrics: cannot read counts from storage", exc_info=True)
            return
        alerts = GaugeMetricFamily(
            "uba_alerts",
            "Unresolved alerts, by status (open, acknowledged) and severity.",
            labels=["status", "severity"],
        )
        for status in ("open", "acknowledged"):
            for severity in Severity:
                alerts.add_metric(
                    [status, severity.name.lower()], counts.alerts.get((status, severity.value), 0)
                )
        yield alerts
        incidents = GaugeMetricFamily(
            "uba_incidents",
            "Unresolved incidents, by status (open, acknowledged) and severity.",
            labels=["status", "severity"],
        )
        for status in ("open", "acknowledged"):
            for severity in Severity:
                incidents.add_metric(
                    [status, severity.name.lower()],
                    counts.incidents.get((status, severity.value), 0),
                )
        yield incidents
        backlog = GaugeMetricFamily(
            "uba_notifications",
            "Notifications in the outbox waiting to be sent (pending) or given up on (dead), "
            "by destination.",
            labels=["destination", "status"],
        )
        for (destination, status), n in sorted(counts.notifications.items()):
            backlog.add_metric([destination, status], n)
        yield backlog
        oldest = GaugeMetricFamily(
            "uba_notification_oldest_pending_age_seconds",
            "Age of the oldest pending notification, by destination (0: none pending).",
            labels=["destination"],
        )
        now_us = time.time() * 1e6
        for destination, created_us in sorted(counts.oldest_pending_us.items()):
            oldest.add_metric(
                [destination], max(0.0, (now_us - created_us) / 1e6) if created_us else 0.0
            )
        yield oldest
        yield GaugeMetricFamily(
            "uba_metrics_storage_read_seconds",
            "Time this scrape spent reading the counts above from storage.",
            value=time.perf_counter() - started,
        )

    def _event_log_lag(self) -> Iterable[Any]:
        """A front end of the event log: the workers' backlog (a cached
        reading, uba.eventlog.status); left out when NATS cannot tell."""
        if self._event_log is None:
            return
        try:
            status = self._event_log()
        except Exception:  # noqa: BLE001 - the rest of the scrape still helps
            log.warning("metrics: cannot read the event log's lag", exc_info=True)
            return
        if status.unavailable_reason:
            return
        lag = GaugeMetricFamily(
            "uba_event_log_lag_events",
            "Events the event log acknowledged that no worker has stored yet, by partition.",
            labels=["partition"],
        )
        for partition, n in enumerate(status.lag):
            lag.add_metric([str(partition)], n)
        yield lag
        yield GaugeMetricFamily(
            "uba_event_log_live_workers",
            "Workers whose membership in the lease bucket is current.",
            value=status.live_workers,
        )
        age = 0.0
        if status.oldest_at is not None and status.total_lag:
            age = max(0.0, (status.observed_at - status.oldest_at).total_seconds())
        yield GaugeMetricFamily(
            "uba_event_log_oldest_lag_age_seconds",
            "How long the oldest event no worker has stored yet has waited (0: none).",
            value=age,
        )

    def _model(self) -> Iterable[Any]:
        created = self._model_created_at()
        if not created:
            return
        try:
            at = datetime.fromisoformat(created)
        except ValueError:
            return
        if at.tzinfo is None:
            at = at.replace(tzinfo=UTC)
        yield GaugeMetricFamily(
            "uba_model_age_seconds",
            "Age of the Isolation Forest model in use (absent: no model).",
            value=(datetime.now(UTC) - at).total_seconds(),
        )
