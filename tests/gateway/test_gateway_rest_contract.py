"""The REST contract through Envoy in front of the real server (SQLite and
PostgreSQL): every documented path in both spellings, bodies, query strings,
paging, downloads, errors, and native gRPC on the same listener.

Methods the detection engine has not built yet answer UNIMPLEMENTED; the
tests do not hard-code which: each REST answer must be exactly what the same
call answers over gRPC, mapped to HTTP (501 for UNIMPLEMENTED, never 200).
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import json_format

from gateway.gateway_support import API
from uba.v1 import alerts_pb2, events_pb2, service_pb2

# Its subject depends on the analytics mode: both passes of make test run it.
pytestmark = pytest.mark.both_modes

HTTP_OF = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
}

NOW = datetime.now(UTC).replace(microsecond=0)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def grpc_outcome(call, request) -> grpc.StatusCode:
    try:
        call(request, timeout=10)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def assert_mirrors(response, code: grpc.StatusCode) -> None:
    """The REST answer is the gRPC answer, mapped."""
    assert response.status == HTTP_OF[code], (code, response)
    assert response.content_type in ("application/json", "text/csv", "application/x-ndjson"), (
        response
    )
    if code != grpc.StatusCode.OK:
        assert response.content_type == "application/json"
        body = response.json()
        assert body["code"] == code.value[0] and body["message"], body


CONTRACT_EVENT = {
    "userId": "contract",
    "type": "ACTIVITY_TYPE_LOGIN_SUCCESS",
    "occurredAt": rfc3339(NOW - timedelta(minutes=5)),
}

# Every documented unary path: (method, path without the trailing slash,
# JSON body or None, query, gRPC method, equivalent request).
ENDPOINTS = [
    (
        "POST",
        "/events",
        CONTRACT_EVENT,
        {},
        "RecordActivity",
        json_format.ParseDict({"event": CONTRACT_EVENT}, service_pb2.RecordActivityRequest()),
    ),
    (
        "POST",
        "/events/batch",
        {"events": []},
        {},
        "RecordActivities",
        service_pb2.RecordActivitiesRequest(),
    ),
    (
        "GET",
        "/dashboard",
        None,
        {"window": "3600s"},
        "GetDashboard",
        service_pb2.GetDashboardRequest(window={"seconds": 3600}),
    ),
    (
        "GET",
        "/logs",
        None,
        {"page_size": "5"},
        "ListLogs",
        service_pb2.ListLogsRequest(page_size=5),
    ),
    (
        "GET",
        "/anomalies",
        None,
        {"min_severity": "SEVERITY_HIGH"},
        "ListAnomalies",
        service_pb2.ListAnomaliesRequest(min_severity=3),
    ),
    (
        "GET",
        "/alerts",
        None,
        {"status": "ALERT_STATUS_OPEN"},
        "ListAlerts",
        service_pb2.ListAlertsRequest(status=1),
    ),
    (
        "POST",
        "/alerts/no-such-alert/acknowledge",
        {"note": "looking"},
        {},
        "AcknowledgeAlert",
        service_pb2.AcknowledgeAlertRequest(alert_id="no-such-alert", note="looking"),
    ),
    (
        "POST",
        "/alerts/no-such-alert/resolve",
        {"resolution": "RESOLUTION_BENIGN", "suppressFor": "3600s"},
        {},
        "ResolveAlert",
        service_pb2.ResolveAlertRequest(
            alert_id="no-such-alert",
            resolution=alerts_pb2.RESOLUTION_BENIGN,
            suppress_for={"seconds": 3600},
        ),
    ),
    (
        "GET",
        "/users/no-such-user/baseline",
        None,
        {},
        "GetUserBaseline",
        service_pb2.GetUserBaselineRequest(user_id="no-such-user"),
    ),
    ("GET", "/capabilities", None, {}, "GetCapabilities", service_pb2.GetCapabilitiesRequest()),
    (
        "GET",
        "/incidents",
        None,
        {"status": "INCIDENT_STATUS_OPEN", "tactic": "credential-access"},
        "ListIncidents",
        service_pb2.ListIncidentsRequest(status=1, tactic="credential-access"),
    ),
    (
        "GET",
        "/incidents/no-such-incident",
        None,
        {},
        "GetIncident",
        service_pb2.GetIncidentRequest(incident_id="no-such-incident"),
    ),
    (
        "POST",
        "/incidents/no-such-incident/acknowledge",
        {"note": "looking"},
        {},
        "AcknowledgeIncident",
        service_pb2.AcknowledgeIncidentRequest(incident_id="no-such-incident", note="looking"),
    ),
    (
        "POST",
        "/incidents/no-such-incident/resolve",
        {"resolution": "RESOLUTION_BENIGN"},
        {},
        "ResolveIncident",
        service_pb2.ResolveIncidentRequest(
            incident_id="no-such-incident", resolution=alerts_pb2.RESOLUTION_BENIGN
        ),
    ),
]


@pytest.mark.parametrize("suffix", ["/", ""], ids=["slash", "no-slash"])
@pytest.mark.parametrize(
    "method,path,body,params,rpc,request_message", ENDPOINTS, ids=[e[4] for e in ENDPOINTS]
)
def test_every_documented_path_answers_what_grpc_answers(
    gateway, method, path, body, params, rpc, request_message, suffix
):
    expected = grpc_outcome(getattr(gateway.upstream.stub, rpc), request_message)
    response = gateway.client.request(method, API + path + suffix, body=body, params=params)
    assert_mirrors(response, expected)
    if expected == grpc.StatusCode.OK:
        assert response.content_type == "application/json"
        response.json()


@pytest.mark.parametrize("suffix", ["/", ""], ids=["slash", "no-slash"])
def test_alert_stream_failing_before_its_first_message_answers_its_error(gateway, suffix):
    # (the stream itself: test_gateway_alert_stream.py, with fast heartbeats)
    expected = grpc_outcome(
        lambda request, timeout: next(gateway.upstream.stub.StreamAlerts(request, timeout=timeout)),
        service_pb2.StreamAlertsRequest(after_seq=-1),
    )
    assert expected != grpc.StatusCode.OK
    with gateway.client.open_stream(
        API + "/alerts/stream" + suffix + "?after_seq=-1", timeout=20
    ) as stream:
        assert stream.status == HTTP_OF[expected]
        assert stream.headers["content-type"] == "application/json"
        body = json.loads(stream.response.read())
    assert body["code"] == expected.value[0] and body["message"]


# -- recording -------------------------------------------------------------------------


def test_record_activity_with_json_body(gateway):
    user = unique("rest")
    event = {
        "eventId": f"{user}-1",
        "userId": user,
        "type": "ACTIVITY_TYPE_API_CALL",
        "occurredAt": rfc3339(NOW - timedelta(minutes=3)),
        "sourceIp": "10.1.2.3",
        "apiMethod": "GET",
        "apiPath": "/v1/customers",
        "statusCode": 200,
        "bytesTransferred": "123456789012",
        "attributes": {"tenant": "acme"},
        "latitude": 52.5,
        "longitude": 13.25,
    }
    first = gateway.client.post(f"{API}/events/", event)
    assert first.status == 200, first
    reply = first.json()
    assert reply["eventId"] == f"{user}-1" and reply["duplicate"] is False
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", reply["receivedAt"])
    again = gateway.client.post(f"{API}/events", event).json()
    assert again["duplicate"] is True and again["receivedAt"] == reply["receivedAt"]
    (stored,) = gateway.client.get(f"{API}/logs/", params={"user_id": user}).json()["events"]
    assert stored["bytesTransferred"] == "123456789012"
    assert stored["attributes"] == {"tenant": "acme"}
    assert (stored["latitude"], stored["longitude"]) == (52.5, 13.25)


def test_invalid_event_is_400_with_field_violations(gateway):
    response = gateway.client.post(f"{API}/events/", {"type": "ACTIVITY_TYPE_LOGIN_SUCCESS"})
    assert response.status == 400, response
    body = response.json()
    assert body["code"] == 3
    violations = [
        v
        for d in body["details"]
        if d["@type"].endswith("google.rpc.BadRequest")
        for v in d["fieldViolations"]
    ]
    fields = {v["field"] for v in violations}
    assert "event.user_id" in fields, body
    assert all(v["description"] for v in violations)


def test_event_body_that_is_not_the_schema_is_400(gateway):
    for body in (
        b"[1, 2",
        {"userId": 5, "type": []},
        {"type": "ACTIVITY_TYPE_TELEPORT"},
        {"noSuchField": 1},
    ):
        response = gateway.client.post(f"{API}/events/", body)
        assert response.status == 400, (body, response)
        assert response.json()["code"] == 3


def test_batch_reports_each_item(gateway):
    user = unique("batch")
    at = rfc3339(NOW - timedelta(minutes=2))
    body = {
        "events": [
            {
                "eventId": f"{user}-a",
                "userId": user,
                "type": "ACTIVITY_TYPE_LOGIN_SUCCESS",
                "occurredAt": at,
            },
            {"eventId": f"{user}-b", "type": "ACTIVITY_TYPE_LOGIN_FAILURE", "occurredAt": at},
            {
                "eventId": f"{user}-a",
                "userId": user,
                "type": "ACTIVITY_TYPE_LOGIN_SUCCESS",
                "occurredAt": at,
            },
        ]
    }
    response = gateway.client.post(f"{API}/events/batch/", body)
    assert response.status == 200, response
    reply = response.json()
    assert [r["status"] for r in reply["results"]] == [
        "RECORD_STATUS_ACCEPTED",
        "RECORD_STATUS_INVALID",
        "RECORD_STATUS_DUPLICATE",
    ]
    assert [r["index"] for r in reply["results"]] == [0, 1, 2]
    assert any("user_id" in v["field"] for v in reply["results"][1]["violations"])
    assert (reply["acceptedCount"], reply["duplicateCount"], reply["invalidCount"]) == (1, 1, 1)


# -- reading ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seeded(gateway):
    """Seven events of one user, an hour apart, through REST."""
    user = unique("seed")
    base = NOW - timedelta(hours=10)
    types = ["ACTIVITY_TYPE_LOGIN_SUCCESS", "ACTIVITY_TYPE_LOGIN_FAILURE", "ACTIVITY_TYPE_API_CALL"]
    events = [
        {
            "eventId": f"{user}-{i}",
            "userId": user,
            "type": types[i % 3],
            "occurredAt": rfc3339(base + timedelta(hours=i)),
            "sourceIp": f"10.0.0.{i}",
            "city": 'Zürich, "Altstadt"',
        }
        for i in range(7)
    ]
    response = gateway.client.post(f"{API}/events/batch", {"events": events})
    assert response.status == 200 and response.json()["acceptedCount"] == 7, response
    return user, base, events


def test_logs_paging_with_next_page_token(gateway, seeded):
    user, _, _ = seeded
    ids, token, pages = [], "", 0
    while True:
        params = {"user_id": user, "page_size": "3"}
        if token:
            params["page_token"] = token
        response = gateway.client.get(f"{API}/logs/", params=params)
        assert response.status == 200, response
        page = response.json()
        ids += [e["eventId"] for e in page["events"]]
        pages += 1
        token = page["nextPageToken"]
        if not token:
            break
    assert pages == 3
    assert ids == [f"{user}-{i}" for i in reversed(range(7))]  # newest first, each once


def test_logs_filters_by_type_and_time_range(gateway, seeded):
    user, base, _ = seeded
    failures = gateway.client.get(
        f"{API}/logs", params={"user_id": user, "type": "ACTIVITY_TYPE_LOGIN_FAILURE"}
    ).json()
    assert [e["eventId"] for e in failures["events"]] == [f"{user}-4", f"{user}-1"]
    assert "latitude" not in failures["events"][0]  # optional fields only when set
    assert failures["events"][0]["deviceId"] == ""  # other fields always printed
    window = gateway.client.get(
        f"{API}/logs/",
        params={
            "user_id": user,
            "start_time": rfc3339(base + timedelta(hours=2)),
            "end_time": rfc3339(base + timedelta(hours=5)),
        },
    ).json()
    assert [e["eventId"] for e in window["events"]] == [
        f"{user}-4",
        f"{user}-3",
        f"{user}-2",
    ]  # [start, end)
    assert window["events"][0]["occurredAt"] == rfc3339(base + timedelta(hours=4))


def test_logs_bad_filter_values_are_400(gateway):
    for params in (
        {"page_size": "many"},
        {"start_time": "yesterday"},
        {"type": "ACTIVITY_TYPE_NOPE"},
        {"userid": "x"},
    ):
        response = gateway.client.get(f"{API}/logs/", params=params)
        assert response.status == 400, (params, response)
        assert response.json()["code"] == 3


def test_dashboard_json_conventions(gateway, seeded):
    response = gateway.client.get(f"{API}/dashboard/", params={"window": "86400s"})
    assert response.status == 200, response
    body = response.json()
    assert set(body) >= {"windowStart", "windowEnd", "totals", "hourly", "analyticsMode"}
    assert (
        isinstance(body["totals"]["eventCount"], str) and int(body["totals"]["eventCount"]) >= 7
    )  # int64 as string
    assert body["totals"]["anomalyCount"] == body["totals"]["anomalyCount"]  # printed even when "0"
    assert body["analyticsMode"].startswith("ANALYTICS_MODE_")
    assert 24 <= len(body["hourly"]) <= 25
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:00:00Z", b["startTime"]) for b in body["hourly"])


def test_capabilities(gateway):
    body = gateway.client.get(f"{API}/capabilities/").json()
    assert body["storageBackend"] in ("sqlite", "postgresql")
    assert body["storageBackend"] == gateway.upstream.backend
    assert set(body["exportFormats"]) == {"csv", "json", "ndjson"}
    assert body["maxBatchSize"] == 1000


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/",
        "/capabilities/",
        "/alerts/",
        "/anomalies/",
        "/logs/download/",
        "/users/someone/baseline/",
        "/alerts/stream/",
        "/incidents/",
        "/incidents/someone/",
    ],
)
def test_unknown_query_parameter_is_400_everywhere(gateway, path):
    response = gateway.client.get(API + path, params={"bogus": "1"})
    assert response.status == 400, response
    assert response.json()["code"] == 3 and "bogus" in response.json()["message"]


# -- incidents -------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["/", ""], ids=["slash", "no-slash"])
def test_incident_workflow_over_rest(gateway, suffix):
    user = unique("incident")
    at = NOW - timedelta(minutes=20)
    burst = [
        {
            "userId": user,
            "type": "ACTIVITY_TYPE_LOGIN_FAILURE",
            "occurredAt": rfc3339(at + timedelta(seconds=3 * i)),
            "sourceIp": "203.0.113.44",
        }
        for i in range(11)
    ]
    assert gateway.client.post(f"{API}/events/batch{suffix}", {"events": burst}).status == 200
    listed = gateway.client.get(
        f"{API}/incidents{suffix}", params={"user_id": user, "tactic": "TA0006"}
    )
    assert listed.status == 200, listed
    (incident,) = listed.json()["incidents"]
    assert incident["entityKind"] == "ENTITY_KIND_USER" and incident["entityId"] == user
    assert incident["status"] == "INCIDENT_STATUS_OPEN" and incident["seq"].isdigit()
    assert {"tacticId": "TA0006", "name": "Credential Access"} in incident["tactics"]
    assert incident["techniques"][0]["techniqueId"].startswith("T1110")
    assert (
        incident["signals"][0]["detector"] == "failed_login_burst"
        and incident["signals"][0]["counted"]
    )
    path = f"{API}/incidents/{incident['incidentId']}"
    detail = gateway.client.get(path + suffix)
    assert detail.status == 200, detail
    body = detail.json()
    assert body["incident"]["incidentId"] == incident["incidentId"] and body["alerts"]
    assert any("anomaly" in e for e in body["timeline"]) and any(
        "event" in e for e in body["timeline"]
    )
    acked = gateway.client.post(f"{path}/acknowledge{suffix}", {"note": "on it"})
    assert (
        acked.status == 200 and acked.json()["incident"]["status"] == "INCIDENT_STATUS_ACKNOWLEDGED"
    )
    resolved = gateway.client.post(
        f"{path}/resolve{suffix}", {"resolution": "RESOLUTION_TRUE_POSITIVE"}
    )
    assert (
        resolved.status == 200
        and resolved.json()["incident"]["status"] == "INCIDENT_STATUS_RESOLVED"
    )
    alerts = gateway.client.get(f"{API}/alerts{suffix}", params={"user_id": user}).json()["alerts"]
    assert alerts and all(
        a["status"] == "ALERT_STATUS_RESOLVED"
        and a["resolution"] == "RESOLUTION_TRUE_POSITIVE"
        and a["incidentId"] == incident["incidentId"]
        for a in alerts
    )
    again = gateway.client.post(f"{path}/resolve{suffix}", {"resolution": "RESOLUTION_BENIGN"})
    assert (
        again.status == 400 and again.json()["code"] == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    )
    missing = gateway.client.get(f"{API}/incidents/no-such-incident{suffix}")
    assert missing.status == 404 and "no-such-incident" in missing.json()["message"]
    bad = gateway.client.get(f"{API}/incidents{suffix}", params={"tactic": "lunch"})
    assert bad.status == 400 and "tactic" in bad.json()["message"]


# -- downloads -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt,content_type",
    [("csv", "text/csv"), ("json", "application/json"), ("ndjson", "application/x-ndjson")],
)
def test_download_in_each_format(gateway, seeded, fmt, content_type):
    user, _, events = seeded
    response = gateway.client.get(f"{API}/logs/download/", params={"format": fmt, "user_id": user})
    assert response.status == 200, response
    assert response.content_type == content_type
    assert re.fullmatch(
        rf'attachment; filename="uba-logs-\d{{8}}T\d{{6}}Z\.{fmt}"',
        response.headers["content-disposition"],
    )
    text = response.body.decode("utf-8")
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(text)))
    elif fmt == "json":
        rows = json.loads(text)
    else:
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert [r["event_id"] for r in rows] == [e["eventId"] for e in events]  # oldest first
    assert rows[0]["city"] == 'Zürich, "Altstadt"'


def test_download_without_format_is_csv(gateway, seeded):
    user, _, _ = seeded
    response = gateway.client.get(f"{API}/logs/download", params={"user_id": user})
    assert response.status == 200 and response.content_type == "text/csv"
    assert response.headers["content-disposition"].endswith('.csv"')


def test_download_with_unknown_format_is_an_error_not_a_file(gateway):
    expected = grpc_outcome(
        lambda request, timeout: list(gateway.upstream.stub.ExportLogs(request, timeout=timeout)),
        service_pb2.ExportLogsRequest(format="xml"),
    )
    assert expected != grpc.StatusCode.OK
    response = gateway.client.get(f"{API}/logs/download/", params={"format": "xml"})
    assert_mirrors(response, expected)
    assert "content-disposition" not in response.headers


# -- native gRPC on the same listener ---------------------------------------------------------


def test_native_grpc_unary_through_envoy(gateway):
    stub = gateway.grpc_stub()
    user = unique("grpc")
    event = events_pb2.ActivityEvent(
        event_id=f"{user}-1", user_id=user, type=events_pb2.ACTIVITY_TYPE_LOGIN_SUCCESS
    )
    event.occurred_at.FromDatetime(NOW - timedelta(minutes=1))
    reply = stub.RecordActivity(service_pb2.RecordActivityRequest(event=event), timeout=10)
    assert reply.event_id == f"{user}-1" and not reply.duplicate
    listed = stub.ListLogs(service_pb2.ListLogsRequest(user_id=user), timeout=10)
    assert [e.event_id for e in listed.events] == [f"{user}-1"]
    assert (
        stub.GetCapabilities(service_pb2.GetCapabilitiesRequest(), timeout=10).max_batch_size
        == 1000
    )


def test_native_grpc_streaming_through_envoy(gateway, seeded):
    user, _, events = seeded
    via_envoy = list(
        gateway.grpc_stub().ExportLogs(
            service_pb2.ExportLogsRequest(user_id=user, format="ndjson"), timeout=10
        )
    )
    direct = list(
        gateway.upstream.stub.ExportLogs(
            service_pb2.ExportLogsRequest(user_id=user, format="ndjson"), timeout=10
        )
    )
    assert b"".join(c.data for c in via_envoy) == b"".join(c.data for c in direct)
    assert len(b"".join(c.data for c in via_envoy).splitlines()) == len(events)


def test_native_grpc_errors_through_envoy(gateway):
    stub = gateway.grpc_stub()
    with pytest.raises(grpc.RpcError) as info:
        stub.RecordActivity(
            service_pb2.RecordActivityRequest(event=events_pb2.ActivityEvent()), timeout=10
        )
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "grpc-status-details-bin" in dict(info.value.trailing_metadata())
