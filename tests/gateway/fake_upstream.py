"""A scripted BehaviorAnalyticsService for gateway tests.

The real server cannot be made to answer every status code on demand, nor to
fail a stream before its first message; this one can. It checks what only
the gateway decides: status mapping, SSE framing, Last-Event-ID, the
download headers, path normalisation. The contract of the real server is
tested against the real server (test_rest_contract.py).

Scripts, chosen by request fields:
  * ListAlerts with user_id = a gRPC code name (e.g. "RESOURCE_EXHAUSTED")
    aborts with that code; "BAD_REQUEST" aborts INVALID_ARGUMENT with
    google.rpc.BadRequest field violations.
  * ListLogs echoes its filters into the one event it returns.
  * ExportLogs streams `chunks` pieces in the asked format; format "fail"
    fails before the first message, "fail-late" after one.
  * StreamAlerts yields alerts after `after_seq` (up to seq 3) then
    heartbeats; user_id "fail" fails before the first message.
  * GetDashboard, ListAlerts (no user_id), AcknowledgeAlert, ResolveAlert and
    GetUserBaseline answer plausible data, so that the dashboard page can be
    exercised before the detection engine exists.
"""

from __future__ import annotations

import threading
import time
from concurrent import futures

import grpc
from google.api import httpbody_pb2
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from uba.v1 import (
    alerts_pb2,
    anomalies_pb2,
    baselines_pb2,
    events_pb2,
    service_pb2,
    service_pb2_grpc,
)

EXPORT_TYPES = {"csv": "text/csv", "json": "application/json", "ndjson": "application/x-ndjson"}
LAST_ALERT_SEQ = 3


def _bad_request(context: grpc.ServicerContext, field: str, description: str) -> None:
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(field=field, description=description)
            ]
        )
    )
    status = status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT, message=f"{field}: {description}", details=[detail]
    )
    context.abort_with_status(rpc_status.to_status(status))


def _alert(seq: int, status: int = alerts_pb2.ALERT_STATUS_OPEN) -> alerts_pb2.Alert:
    alert = alerts_pb2.Alert(
        alert_id=f"a{seq}",
        seq=seq,
        user_id="alice",
        detector="login_time",
        severity=anomalies_pb2.SEVERITY_HIGH,
        status=status,
        title=f"alert {seq}",
        reason="login at 03:00, usually 08:00-18:00",
        anomaly_count=1,
        user_risk=70,
    )
    for field in ("first_seen_at", "last_seen_at", "created_at", "updated_at"):
        getattr(alert, field).GetCurrentTime()
    return alert


class FakeService(service_pb2_grpc.BehaviorAnalyticsServiceServicer):
    def __init__(self, heartbeat_interval: float = 0.2) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.requests: list[tuple[str, object, dict]] = []
        self._lock = threading.Lock()

    def _record(self, name, request, context) -> None:
        with self._lock:
            self.requests.append((name, request, dict(context.invocation_metadata())))

    def RecordActivity(self, request, context):
        self._record("RecordActivity", request, context)
        if not request.event.user_id:
            _bad_request(context, "event.user_id", "required")
        response = service_pb2.RecordActivityResponse(
            event_id=request.event.event_id or "generated"
        )
        response.received_at.GetCurrentTime()
        return response

    def ListLogs(self, request, context):
        self._record("ListLogs", request, context)
        event = events_pb2.ActivityEvent(
            event_id="e1",
            user_id=request.user_id,
            type=request.type,
            source_ip=request.source_ip,
            occurred_at=request.start_time if request.HasField("start_time") else None,
            bytes_transferred=2**40,
        )
        return service_pb2.ListLogsResponse(
            events=[event], next_page_token=f"size={request.page_size}"
        )

    def ExportLogs(self, request, context):
        self._record("ExportLogs", request, context)
        fmt = request.format or "csv"
        if fmt == "fail":
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "format: unsupported")
        if fmt == "fail-late":
            yield httpbody_pb2.HttpBody(content_type="text/csv", data=b"a,b\n")
            context.abort(grpc.StatusCode.UNAVAILABLE, "database went away")
        content_type = EXPORT_TYPES.get(fmt)
        if content_type is None:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"format: unknown {fmt!r}")
        rows = [f"row-{i}" for i in range(5)]
        if fmt == "csv":
            parts = ["event_id\n"] + [f"{r}\n" for r in rows]
        elif fmt == "json":
            parts = (
                ["["]
                + [("," if i else "") + f'{{"event_id":"{r}"}}' for i, r in enumerate(rows)]
                + ["]"]
            )
        else:
            parts = [f'{{"event_id":"{r}"}}\n' for r in rows]
        for part in parts:
            yield httpbody_pb2.HttpBody(content_type=content_type, data=part.encode())

    def ListAlerts(self, request, context):
        self._record("ListAlerts", request, context)
        if request.user_id == "BAD_REQUEST":
            _bad_request(context, "user_id", "malformed")
        if request.user_id:
            code = grpc.StatusCode[request.user_id]
            context.abort(code, f"scripted {request.user_id}")
        return service_pb2.ListAlertsResponse(
            alerts=[_alert(seq) for seq in range(LAST_ALERT_SEQ, 0, -1)]
        )

    def AcknowledgeAlert(self, request, context):
        self._record("AcknowledgeAlert", request, context)
        if request.alert_id != "a1":
            context.abort(grpc.StatusCode.NOT_FOUND, f"alert {request.alert_id} not found")
        alert = _alert(1, alerts_pb2.ALERT_STATUS_ACKNOWLEDGED)
        alert.seq = 10
        alert.acknowledged_by = "tester"
        return service_pb2.AcknowledgeAlertResponse(alert=alert)

    def ResolveAlert(self, request, context):
        self._record("ResolveAlert", request, context)
        if request.resolution == alerts_pb2.RESOLUTION_UNSPECIFIED:
            _bad_request(context, "resolution", "required")
        alert = _alert(int(request.alert_id.lstrip("a") or 0), alerts_pb2.ALERT_STATUS_RESOLVED)
        alert.seq = 11
        alert.resolution = request.resolution
        alert.resolved_at.GetCurrentTime()
        return service_pb2.ResolveAlertResponse(alert=alert)

    def GetUserBaseline(self, request, context):
        self._record("GetUserBaseline", request, context)
        if request.user_id != "alice":
            context.abort(grpc.StatusCode.NOT_FOUND, f"no baseline for {request.user_id}")
        hours = [0] * 168
        for day in range(5):
            for hour in range(8, 18):
                hours[day * 24 + hour] = 3 + hour % 4
        baseline = baselines_pb2.UserBaseline(
            user_id="alice",
            timezone="Europe/Berlin",
            observation_count=412,
            days_covered=30,
            mature=True,
            login_hour_of_week=hours,
            logins_per_day=baselines_pb2.RunningStats(count=30, mean=4.2, stddev=1.1, min=1, max=8),
            countries=[baselines_pb2.KnownValue(value="DE", count=400)],
        )
        return service_pb2.GetUserBaselineResponse(baseline=baseline)

    def GetDashboard(self, request, context):
        self._record("GetDashboard", request, context)
        response = service_pb2.GetDashboardResponse(
            totals=service_pb2.DashboardTotals(
                event_count=120, user_count=3, anomaly_count=2, open_alert_count=3
            ),
            open_alerts_by_severity=[
                service_pb2.SeverityCount(severity=anomalies_pb2.SEVERITY_HIGH, count=3)
            ],
            anomalies_by_detector=[service_pb2.DetectorCount(detector="login_time", count=2)],
            top_risky_users=[
                service_pb2.UserRisk(user_id="alice", risk=70, top_reasons=["login at 03:00"])
            ],
            analytics_mode=service_pb2.ANALYTICS_MODE_BASIC,
        )
        response.window_end.GetCurrentTime()
        hours = max(1, (request.window.seconds or 86400) // 3600)
        response.window_start.FromSeconds(response.window_end.seconds - hours * 3600)
        start = response.window_start.seconds // 3600 * 3600
        for i in range(hours + 1):
            bucket = response.hourly.add(
                event_count=5 + i % 7,
                login_failure_count=i % 3,
                anomaly_count=1 if i % 11 == 0 else 0,
            )
            bucket.start_time.FromSeconds(start + i * 3600)
        return response

    def StreamAlerts(self, request, context):
        self._record("StreamAlerts", request, context)
        if request.user_id == "fail":
            context.abort(grpc.StatusCode.UNAVAILABLE, "broker unavailable")
        seq = request.after_seq
        while seq < LAST_ALERT_SEQ and context.is_active():
            seq += 1
            yield service_pb2.StreamAlertsResponse(seq=seq, alert=_alert(seq))
        while context.is_active():
            time.sleep(self.heartbeat_interval)
            heartbeat = service_pb2.Heartbeat()
            heartbeat.sent_at.GetCurrentTime()
            yield service_pb2.StreamAlertsResponse(seq=seq, heartbeat=heartbeat)

    def GetCapabilities(self, request, context):
        self._record("GetCapabilities", request, context)
        return service_pb2.GetCapabilitiesResponse(
            version="fake", export_formats=list(EXPORT_TYPES)
        )


class FakeUpstream:
    """A gRPC server on 127.0.0.1 with FakeService."""

    def __init__(self) -> None:
        self.service = FakeService()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
        service_pb2_grpc.add_BehaviorAnalyticsServiceServicer_to_server(self.service, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"

    def __enter__(self) -> FakeUpstream:
        self.server.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.server.stop(grace=0).wait()
