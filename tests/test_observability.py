"""Metrics and traces of a real server: Prometheus counters that move by
exactly what ingest did, read from /metrics with Prometheus's own parser;
spans received by a real OTLP/HTTP receiver with one trace from the RPC to
the ingest group that stored its event."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.events import FAILURE, LOGIN, event, unique
from support.otlp import OtlpReceiver
from support.server import ServerProcess, keyed_channel

from uba.v1 import service_pb2, service_pb2_grpc

DASHBOARD = Path(__file__).resolve().parents[1] / "docs" / "grafana" / "uba.json"
# Series that exist only with a model, on PostgreSQL's pool, or once a
# training ran.
CONDITIONAL = {"uba_model_age_seconds", "uba_db_pool_connections", "uba_db_pool_size"}
_METRICS = re.compile(r"uba: metrics on (\S+)")


def metrics_url(server: ServerProcess) -> str:
    for line in server.output:
        if match := _METRICS.search(line):
            return match.group(1)
    raise AssertionError("the server did not say where its metrics are:\n" + server.log())


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the page: (name, sorted labels) -> value."""
    with urllib.request.urlopen(url, timeout=10) as reply:
        assert reply.status == 200
        text = reply.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples, name: str, **labels) -> float:
    """Sum of the samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= set(ls))


def burst(user: str, ip: str) -> list:
    """Eleven failed logins in half a minute: an alert on the spot."""
    start = datetime.now(UTC) - timedelta(minutes=5)
    return [
        event(user, FAILURE, at=start + timedelta(seconds=3 * i), source_ip=ip, source="okta")
        for i in range(11)
    ]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_metrics_count_exactly_what_ingest_did(backend, tmp_path, make_database_url):
    server = ServerProcess(
        tmp_path / "data",
        make_database_url(backend),
        extra_args=["--metrics-listen", "127.0.0.1:0"],
    ).start()
    try:
        url = metrics_url(server)
        stub = server.stub
        before = scrape(url)
        user, other = unique("victim"), unique("someone")
        batch = burst(user, "203.0.113.7")
        batch.append(event(other, LOGIN, event_id=unique("e"), source="my-own-collector"))
        batch.append(event("", LOGIN, source="okta"))  # no user: invalid
        ids = [e.event_id or unique("e") for e in batch]
        for e, event_id in zip(batch, ids, strict=True):
            e.event_id = event_id
        reply = stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=batch))
        assert [r.status for r in reply.results] == [service_pb2.RECORD_STATUS_ACCEPTED] * 12 + [
            service_pb2.RECORD_STATUS_INVALID
        ]
        # The same batch again: every valid item is now a duplicate.
        reply = stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=batch))
        assert reply.results[0].status == service_pb2.RECORD_STATUS_DUPLICATE
        # Unary: one accepted, one refused by validation.
        stub.RecordActivity(
            service_pb2.RecordActivityRequest(event=event(other, LOGIN, event_id=unique("e")))
        )
        with pytest.raises(grpc.RpcError) as refused:
            stub.RecordActivity(service_pb2.RecordActivityRequest(event=event("", LOGIN)))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        # A wrong key: refused before any handler.
        stranger = service_pb2_grpc.BehaviorAnalyticsServiceStub(
            keyed_channel(server.address, "not-a-key")
        )
        with pytest.raises(grpc.RpcError):
            stranger.ListLogs(service_pb2.ListLogsRequest(page_size=1))

        # The alert is counted from storage at scrape time.
        deadline = time.monotonic() + 30
        while True:
            after = scrape(url)
            if total(after, "uba_alerts", status="open") >= 1:
                break
            assert time.monotonic() < deadline, "no open alert in the metrics"
            time.sleep(0.2)

        def moved(name, **labels):
            return value(after, name, **labels) - value(before, name, **labels)

        batch_rpc = dict(rpc="RecordActivities")
        assert (
            moved("uba_ingest_events_total", **batch_rpc, source="okta", outcome="accepted") == 11
        )
        assert (
            moved("uba_ingest_events_total", **batch_rpc, source="other", outcome="accepted") == 1
        )
        assert (
            moved("uba_ingest_events_total", **batch_rpc, source="okta", outcome="duplicate") == 11
        )
        assert (
            moved("uba_ingest_events_total", **batch_rpc, source="other", outcome="duplicate") == 1
        )
        assert moved("uba_ingest_events_total", **batch_rpc, source="okta", outcome="invalid") == 2
        assert moved("uba_ingest_events_received_total", **batch_rpc, source="okta") == 24
        assert moved("uba_ingest_events_received_total", **batch_rpc, source="other") == 2
        unary = dict(rpc="RecordActivity", source="none")
        assert moved("uba_ingest_events_total", **unary, outcome="accepted") == 1
        assert moved("uba_ingest_events_total", **unary, outcome="invalid") == 1
        assert moved("uba_ingest_events_received_total", **unary) == 2
        assert total(after, "uba_ingest_events_total", outcome="failed") == 0
        assert moved("uba_calls_refused_total", method="ListLogs", reason="unauthenticated") == 1

        # The writer's groups and the detectors' time per event.
        # Every valid event passed a writer group: 12 new, 12 duplicates, 1 unary.
        assert moved("uba_ingest_group_events_sum") == 25
        assert total(after, "uba_ingest_commit_seconds_count") >= 3
        assert value(after, "uba_ingest_pending_events") == 0
        # It sees logins, failed or not: the 13 new events, once each.
        assert value(after, "uba_detector_seconds_count", detector="failed_login_burst") == 13
        assert (
            value(after, "uba_detector_seconds_bucket", detector="failed_login_burst", le="+Inf")
            == 13
        )
        assert value(after, "uba_detector_seconds_sum", detector="failed_login_burst") > 0
        assert total(after, "uba_anomalies_total", detector="failed_login_burst") >= 1

        # Bounded labels: no user id, address or free-text source anywhere.
        with urllib.request.urlopen(url, timeout=10) as page:
            text = page.read().decode()
        for secret in (user, other, "203.0.113.7", "my-own-collector"):
            assert secret not in text
        labels = {k: v for (_n, ls) in after for k, v in ls}
        assert "user_id" not in labels

        # Every series the Grafana dashboard queries is on the page.
        families = {f.name for f in text_string_to_metric_families(text)}
        names = families | {n for (n, _ls) in after}
        queried = set(re.findall(r"uba_[a-z_]+", json.dumps(json.loads(DASHBOARD.read_text()))))
        queried -= CONDITIONAL if backend == "sqlite" else {"uba_model_age_seconds"}
        # (A family with no series yet, such as deliveries without
        # destinations, is still described on the page.)
        missing = {
            q
            for q in queried
            if q not in names and re.sub(r"_(total|bucket|sum|count)$", "", q) not in families
        }
        assert missing == set()

        # A stream is counted while it is open.
        stream = stub.StreamAlerts(service_pb2.StreamAlertsRequest())
        next(stream)  # the first heartbeat: the stream is up
        assert value(scrape(url), "uba_open_streams", rpc="StreamAlerts") == 1
        stream.cancel()
        deadline = time.monotonic() + 10
        while value(scrape(url), "uba_open_streams", rpc="StreamAlerts") != 0:
            assert time.monotonic() < deadline, "the closed stream is still counted"
            time.sleep(0.1)
        if backend == "postgresql":
            assert value(after, "uba_db_pool_size") >= 1
    finally:
        server.stop()


def test_one_trace_leads_from_the_rpc_to_the_ingest_group_and_its_commit(tmp_path):
    receiver = OtlpReceiver()
    server = ServerProcess(
        tmp_path / "data",
        extra_args=["--otlp-endpoint", receiver.url, "--log-json"],
        env={"OTEL_BSP_SCHEDULE_DELAY": "100"},
    ).start()
    try:
        stub = server.stub
        event_id = unique("e")
        stub.RecordActivity(
            service_pb2.RecordActivityRequest(event=event(unique("u"), LOGIN, event_id=event_id))
        )
        rpc_name = "/uba.v1.BehaviorAnalyticsService/RecordActivity"

        def complete(spans):
            rpcs = [s for s in spans if s.name == rpc_name]
            groups = [s for s in spans if s.name == "uba.ingest.group"]
            commits = [s for s in spans if s.name == "uba.ingest.commit"]
            return (rpcs, groups, commits) if rpcs and groups and commits else None

        rpcs, groups, commits = receiver.wait_for(complete)
        (rpc,) = rpcs
        (group,) = [g for g in groups if g.trace_id == rpc.trace_id]
        assert group.parent_span_id == rpc.span_id  # the group continues the call's trace
        (commit,) = [c for c in commits if c.parent_span_id == group.span_id]
        assert commit.trace_id == rpc.trace_id
        attributes = {a.key: a.value.int_value for a in group.attributes}
        assert attributes["uba.ingest.events"] == 1
        assert set(receiver.paths) == {"/v1/traces"}
        # Metrics stay off unless asked for.
        assert "metrics on" not in server.log()
    finally:
        server.stop()
        receiver.close()
