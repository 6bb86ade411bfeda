"""What the gateway decides, checked against a scripted upstream: status
mapping, JSON error bodies, SSE framing and resumption, the download
headers, path normalisation, the page, and native gRPC passing through."""

from __future__ import annotations

import itertools
import re

import grpc
import pytest

from gateway.gateway_support import API, Client, start_gateway
from uba.v1 import service_pb2, service_pb2_grpc

# gRPC code -> HTTP status, as the transcoder maps them.
STATUS_MAP = [
    ("INVALID_ARGUMENT", 400),
    ("FAILED_PRECONDITION", 400),
    ("OUT_OF_RANGE", 400),
    ("UNAUTHENTICATED", 401),
    ("PERMISSION_DENIED", 403),
    ("NOT_FOUND", 404),
    ("ALREADY_EXISTS", 409),
    ("ABORTED", 409),
    ("RESOURCE_EXHAUSTED", 429),
    ("INTERNAL", 500),
    ("UNKNOWN", 500),
    ("UNIMPLEMENTED", 501),
    ("UNAVAILABLE", 503),
    ("DEADLINE_EXCEEDED", 504),
]


@pytest.fixture
def client(fake_gateway) -> Client:
    return fake_gateway.client


def assert_status_body(response, http_status: int, grpc_code: int) -> dict:
    assert response.status == http_status, response
    assert response.content_type == "application/json", response
    body = response.json()
    assert body["code"] == grpc_code, body
    assert isinstance(body.get("message"), str) and body["message"]
    return body


# -- errors ---------------------------------------------------------------------


@pytest.mark.parametrize("code_name,http_status", STATUS_MAP)
def test_grpc_errors_become_http_status_with_json_status_body(client, code_name, http_status):
    response = client.get(f"{API}/alerts/", params={"user_id": code_name})
    body = assert_status_body(response, http_status, grpc.StatusCode[code_name].value[0])
    assert body["message"] == f"scripted {code_name}"
    # REST callers get the status in the body, not in grpc-* headers
    assert "grpc-status" not in response.headers and "grpc-message" not in response.headers


def test_field_violations_reach_the_json_body(client):
    response = client.post(f"{API}/events/", {"type": "ACTIVITY_TYPE_LOGIN_SUCCESS"})
    body = assert_status_body(response, 400, 3)
    (detail,) = body["details"]
    assert detail["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    assert detail["fieldViolations"][0]["field"] == "event.user_id"


def test_unknown_query_parameter_is_400_with_json_status(fake_gateway):
    before = len(fake_gateway.upstream.service.requests)
    response = fake_gateway.client.get(f"{API}/logs/", params={"user": "alice"})
    body = assert_status_body(response, 400, 3)
    assert '"user"' in body["message"]
    assert len(fake_gateway.upstream.service.requests) == before  # never reached the server


def test_malformed_json_body_is_400(client):
    response = client.post(f"{API}/events/", b"{not json")
    assert_status_body(response, 400, 3)


def test_bad_enum_value_in_query_is_400(client):
    response = client.get(f"{API}/logs/", params={"type": "ACTIVITY_TYPE_NOPE"})
    assert_status_body(response, 400, 3)


@pytest.mark.parametrize(
    "path", [f"{API}/nothing-here/", f"{API}/logs/extra/segments", "/favicon.ico", "/api/"]
)
def test_unknown_paths_are_404_with_json_status(client, path):
    assert_status_body(client.get(path), 404, 5)


@pytest.mark.parametrize(
    "verb,path,allowed",
    [
        ("GET", f"{API}/events/", "POST"),  # RecordActivity is POST only
        ("PUT", f"{API}/events", "POST"),
        ("DELETE", f"{API}/alerts/some-alert/acknowledge/", "POST"),
        ("PATCH", f"{API}/logs/", "GET"),
        ("TRACE", f"{API}/incidents/some-incident", "GET"),
        ("OPTIONS", f"{API}/users/someone/baseline/", "GET"),
        ("POST", f"{API}/alerts/stream/", "GET"),
        ("DELETE", f"{API}/admin/users/someone/forget", "POST"),
    ],
)
def test_a_method_the_path_does_not_take_is_405_with_allow(fake_gateway, verb, path, allowed):
    """Not the transcoder's 404 "Could not resolve": the path exists, the
    method does not (RFC 9110: 405 names the methods in Allow); nothing
    reaches the server."""
    before = len(fake_gateway.upstream.service.requests)
    response = fake_gateway.client.request(verb, path)
    body = assert_status_body(response, 405, 12)
    assert response.headers["allow"] == allowed
    assert allowed in body["message"]
    assert len(fake_gateway.upstream.service.requests) == before


def test_query_method_is_405_and_without_content_type_refused_by_envoy(client):
    """QUERY (an IETF draft: a GET with a body) is answered like any other
    method a path does not take; without a Content-Type Envoy refuses it
    as malformed before it is routed (400)."""
    response = client.request("QUERY", f"{API}/capabilities/", body=b"{}")
    assert_status_body(response, 405, 12)
    assert response.headers["allow"] == "GET"
    response = client.request("QUERY", f"{API}/capabilities/")
    assert response.status == 400 and response.json()["code"] == 3, response


def test_the_right_method_still_reaches_the_server_in_both_spellings(client):
    for path in (f"{API}/capabilities", f"{API}/capabilities/"):
        response = client.get(path)
        assert response.status == 200, response
        assert "allow" not in response.headers


def test_upstream_down_is_503_json_for_rest_and_unavailable_for_grpc(tmp_path):
    process = start_gateway("127.0.0.1:1", tmp_path)
    try:
        response = Client(process.listen_address).get(f"{API}/capabilities/")
        assert_status_body(response, 503, 14)
        stub = service_pb2_grpc.BehaviorAnalyticsServiceStub(
            grpc.insecure_channel(process.listen_address)
        )
        with pytest.raises(grpc.RpcError) as info:
            stub.GetCapabilities(service_pb2.GetCapabilitiesRequest(), timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert not info.value.details().startswith("{")  # gRPC callers get text, not the REST JSON
    finally:
        process.stop()


# -- paths, query strings, bodies --------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "/"])
def test_query_parameters_map_to_request_fields(fake_gateway, suffix):
    response = fake_gateway.client.get(
        f"{API}/logs{suffix}",
        params={
            "user_id": "bob smith",
            "type": "ACTIVITY_TYPE_LOGIN_FAILURE",
            "start_time": "2024-05-01T10:00:00Z",
            "source_ip": "10.0.0.1",
            "page_size": "7",
        },
    )
    assert response.status == 200, response
    (event,) = response.json()["events"]
    assert event["userId"] == "bob smith"
    assert event["type"] == "ACTIVITY_TYPE_LOGIN_FAILURE"
    assert event["occurredAt"] == "2024-05-01T10:00:00Z"
    assert event["sourceIp"] == "10.0.0.1"
    assert event["bytesTransferred"] == str(2**40)  # int64 as a string
    assert event["deviceId"] == ""  # primitive fields are always printed
    assert "latitude" not in event  # optional fields only when set
    assert response.json()["nextPageToken"] == "size=7"


def test_plus_in_query_means_space_and_enums_are_case_insensitive(client):
    response = client.get(f"{API}/logs/?user_id=bob+smith&type=activity_type_logout")
    assert response.status == 200, response
    (event,) = response.json()["events"]
    assert (event["userId"], event["type"]) == ("bob smith", "ACTIVITY_TYPE_LOGOUT")


def test_post_json_body_and_both_field_spellings(client):
    for body in (
        {"userId": "alice", "type": "ACTIVITY_TYPE_LOGIN_SUCCESS", "eventId": "e-1"},
        {"user_id": "alice", "type": "ACTIVITY_TYPE_LOGIN_SUCCESS", "event_id": "e-1"},
    ):
        response = client.post(f"{API}/events/", body)
        assert response.status == 200, response
        assert response.json()["eventId"] == "e-1"
        assert response.json()["duplicate"] is False


@pytest.mark.parametrize(
    "path",
    [
        "/api/behavior-analytics/capabilities",
        "/api/behavior-analytics/capabilities/",
        "/api/behavior-analytics//capabilities/",
    ],
)
def test_path_spellings(client, path):
    assert client.get(path).status == 200


# -- download ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "fmt,content_type",
    [("csv", "text/csv"), ("json", "application/json"), ("ndjson", "application/x-ndjson")],
)
@pytest.mark.parametrize("suffix", ["", "/"])
def test_download_headers_and_streamed_body(client, fmt, content_type, suffix):
    response = client.get(f"{API}/logs/download{suffix}", params={"format": fmt})
    assert response.status == 200, response
    assert response.content_type == content_type
    disposition = response.headers["content-disposition"]
    assert re.fullmatch(rf'attachment; filename="uba-logs-\d{{8}}T\d{{6}}Z\.{fmt}"', disposition), (
        disposition
    )
    assert response.headers.get("transfer-encoding") == "chunked"  # streamed, not buffered
    assert "grpc-accept-encoding" not in response.headers
    assert b"row-4" in response.body


def test_download_failing_before_first_chunk_is_an_http_error_without_attachment(client):
    response = client.get(f"{API}/logs/download/", params={"format": "fail"})
    assert_status_body(response, 400, 3)
    assert "content-disposition" not in response.headers


def test_other_paths_get_no_content_disposition(client):
    assert "content-disposition" not in client.get(f"{API}/capabilities/").headers


# -- server-sent events ------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", "/"])
def test_alert_stream_is_sse_with_seq_in_every_message(client, suffix):
    with client.open_stream(f"{API}/alerts/stream{suffix}") as stream:
        assert stream.status == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-cache"
        events = stream.events(5)
    assert [e["seq"] for e in events[:3]] == ["1", "2", "3"]
    assert [e["alert"]["alertId"] for e in events[:3]] == ["a1", "a2", "a3"]
    assert events[0]["alert"]["severity"] == "SEVERITY_HIGH"
    assert all("heartbeat" in e and e["seq"] == "3" for e in events[3:])


def test_alert_stream_resumes_from_after_seq(client):
    with client.open_stream(f"{API}/alerts/stream/?after_seq=2") as stream:
        first = stream.events(1)[0]
    assert first["seq"] == "3" and first["alert"]["alertId"] == "a3"


def test_last_event_id_header_becomes_after_seq(client):
    with client.open_stream(f"{API}/alerts/stream/", headers={"Last-Event-ID": "2"}) as stream:
        first = stream.events(1)[0]
    assert first["alert"]["alertId"] == "a3"


def test_after_seq_wins_over_last_event_id(client):
    with client.open_stream(
        f"{API}/alerts/stream/?after_seq=1", headers={"Last-Event-ID": "2"}
    ) as stream:
        first = stream.events(1)[0]
    assert first["alert"]["alertId"] == "a2"


def test_last_event_id_that_is_not_a_number_is_ignored(client):
    with client.open_stream(
        f"{API}/alerts/stream/", headers={"Last-Event-ID": "2; drop table"}
    ) as stream:
        first = stream.events(1)[0]
    assert first["alert"]["alertId"] == "a1"


def test_stream_failing_before_first_message_is_an_http_error_not_200(client):
    response = client.get(
        f"{API}/alerts/stream/", params={"user_id": "fail"}, headers={"accept": "text/event-stream"}
    )
    assert response.body != b"[]"
    assert_status_body(response, 503, 14)


def test_stream_rejects_unknown_query_parameters(client):
    assert_status_body(client.get(f"{API}/alerts/stream/", params={"since": "1"}), 400, 3)


def test_unary_responses_are_not_sse(client):
    response = client.get(f"{API}/alerts/")
    assert response.status == 200 and response.content_type == "application/json"
    assert not response.body.startswith(b"data:")


def test_alert_stream_outlives_the_rest_route_timeout_defaults(fake_gateway):
    # 15 s is Envoy's default route timeout; the stream route has none.
    with fake_gateway.client.open_stream(f"{API}/alerts/stream/", timeout=30) as stream:
        events = stream.events(3 + 85, deadline_s=25)  # heartbeats every 0.2 s for ~17 s
    assert len(events) == 88


# -- the page -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/index.html"])
def test_dashboard_page_is_served(client, path):
    response = client.get(path, headers={"accept": "text/html"})
    assert response.status == 200
    assert response.content_type == "text/html"
    assert b'id="alerts-list"' in response.body and b"</html>" in response.body
    csp = response.headers["content-security-policy"]
    assert "connect-src 'self'" in csp and "default-src 'none'" in csp


def test_page_fetches_nothing_from_elsewhere(client):
    page = client.get("/").body.decode()
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    assert "http://" not in page.replace('"http://www.w3.org/2000/svg"', "")
    assert "https://" not in page


# -- native gRPC through the same listener --------------------------------------------------


def test_native_grpc_unary(fake_gateway):
    stub = fake_gateway.grpc_stub()
    reply = stub.GetCapabilities(service_pb2.GetCapabilitiesRequest(), timeout=10)
    assert reply.version == "fake"


def test_native_grpc_server_streaming(fake_gateway):
    stub = fake_gateway.grpc_stub()
    messages = list(
        itertools.islice(
            stub.StreamAlerts(service_pb2.StreamAlertsRequest(after_seq=1), timeout=10), 4
        )
    )
    assert [m.seq for m in messages] == [2, 3, 3, 3]
    assert messages[0].alert.alert_id == "a2" and messages[2].HasField("heartbeat")
    chunks = list(stub.ExportLogs(service_pb2.ExportLogsRequest(format="ndjson"), timeout=10))
    assert chunks[0].content_type == "application/x-ndjson" and len(chunks) == 5


def test_native_grpc_errors_keep_status_and_details(fake_gateway):
    stub = fake_gateway.grpc_stub()
    with pytest.raises(grpc.RpcError) as info:
        stub.ListAlerts(service_pb2.ListAlertsRequest(user_id="BAD_REQUEST"), timeout=10)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "grpc-status-details-bin" in dict(info.value.trailing_metadata())
    with pytest.raises(grpc.RpcError) as info:
        list(stub.StreamAlerts(service_pb2.StreamAlertsRequest(user_id="fail"), timeout=10))
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_native_grpc_deadline_is_honoured(fake_gateway):
    stub = fake_gateway.grpc_stub()
    with pytest.raises(grpc.RpcError) as info:
        list(stub.StreamAlerts(service_pb2.StreamAlertsRequest(), timeout=1.0))
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED, info.value.details()
