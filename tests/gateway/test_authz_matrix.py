"""Who may call what: every RPC x every kind of caller x every way in.

Callers: no key, an unknown key, a revoked key, an expired key, and keys
holding exactly one scope (ingest, read, admin). Ways in: gRPC to the
server, REST through Envoy, gRPC through Envoy. Each cell asserts the
expected outcome; the summary counts unexpected allows (must be 0) and
unexpected denials. Refused calls are recorded in the audit trail, and no
key ever reaches a log.
"""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import json_format
from support.server import keyed_channel

from gateway.gateway_support import API, Client
from uba.domain import security as sec
from uba.storage.database import Database
from uba.storage.security import SecurityRepository
from uba.v1 import service_pb2, service_pb2_grpc

SERVICE = service_pb2.DESCRIPTOR.services_by_name["BehaviorAnalyticsService"]
RPCS = [m.name for m in SERVICE.methods]
STREAMING = {m.name for m in SERVICE.methods if m.server_streaming}


def _ago(minutes: int) -> dict:
    return {
        "start_time": (datetime.now(UTC) - timedelta(minutes=minutes))
        .isoformat()
        .replace("+00:00", "Z")
    }


# One harmless request per RPC: allowed, each fails or succeeds on its own
# merits (NOT_FOUND, INVALID_ARGUMENT, ...) without storing anything.
REQUESTS = {
    "RecordActivity": ("POST", "/events/", {}),
    "RecordActivities": ("POST", "/events/batch/", {}),
    "GetDashboard": ("GET", "/dashboard/", None),
    "ListLogs": ("GET", "/logs/?page_size=1", None),
    "ExportLogs": ("GET", "/logs/download/?format=csv&user_id=authz-nobody", None),
    "ListAnomalies": ("GET", "/anomalies/?page_size=1", None),
    "ListAlerts": ("GET", "/alerts/?page_size=1", None),
    "StreamAlerts": ("GET", "/alerts/stream/", None),
    "AcknowledgeAlert": ("POST", "/alerts/authz-none/acknowledge/", {}),
    "ResolveAlert": ("POST", "/alerts/authz-none/resolve/", {"resolution": "RESOLUTION_BENIGN"}),
    "GetUserBaseline": ("GET", "/users/authz-nobody/baseline/", None),
    "Backfill": ("POST", "/admin/backfill/", {"startTime": _ago(1)["start_time"]}),
    "TrainModel": ("POST", "/admin/train/", {"startTime": _ago(1)["start_time"]}),
    "GetCapabilities": ("GET", "/capabilities/", None),
    "ListAuditEvents": ("GET", "/admin/audit/?page_size=1", None),
    "ListIncidents": ("GET", "/incidents/?page_size=1", None),
    "GetIncident": ("GET", "/incidents/authz-none/", None),
    "AcknowledgeIncident": ("POST", "/incidents/authz-none/acknowledge/", {}),
    "ResolveIncident": (
        "POST",
        "/incidents/authz-none/resolve/",
        {"resolution": "RESOLUTION_BENIGN"},
    ),
    "ForgetUser": ("POST", "/admin/users/authz-nobody/forget/", {}),
    "ListNotifications": ("GET", "/admin/notifications/?page_size=1", None),
    "RetryNotifications": ("POST", "/admin/notifications/retry/", {"destination": "authz-none"}),
    "SendTestNotification": ("POST", "/admin/notifications/test/", {"destination": "authz-none"}),
}
GRPC_REQUESTS = {
    "ListLogs": {"page_size": 1},
    "ExportLogs": {"format": "csv", "user_id": "authz-nobody"},
    "ListAnomalies": {"page_size": 1},
    "ListAlerts": {"page_size": 1},
    "AcknowledgeAlert": {"alert_id": "authz-none"},
    "ResolveAlert": {"alert_id": "authz-none", "resolution": "RESOLUTION_BENIGN"},
    "GetUserBaseline": {"user_id": "authz-nobody"},
    "Backfill": _ago(1),
    "TrainModel": _ago(1),
    "ListAuditEvents": {"page_size": 1},
    "ListIncidents": {"page_size": 1},
    "GetIncident": {"incident_id": "authz-none"},
    "AcknowledgeIncident": {"incident_id": "authz-none"},
    "ResolveIncident": {"incident_id": "authz-none", "resolution": "RESOLUTION_BENIGN"},
    "ForgetUser": {"user_id": "authz-nobody"},
    "ListNotifications": {"page_size": 1},
    "RetryNotifications": {"destination": "authz-none"},
    "SendTestNotification": {"destination": "authz-none"},
}
CALLERS = ("no key", "unknown key", "revoked key", "expired key", "ingest", "read", "admin")


def expected(caller: str, rpc: str) -> str:
    """'allow', 'unauthenticated' or 'denied'."""
    if caller not in sec.SCOPES:
        return "unauthenticated"
    return "allow" if sec.METHOD_SCOPES[rpc] == caller else "denied"


@pytest.fixture(scope="module")
def keys(uba_server) -> dict[str, str]:
    url = uba_server.database_url or f"sqlite:///{uba_server.data_dir.resolve() / 'uba.db'}"
    database = Database(url)
    repo = SecurityRepository(database)
    now = datetime.now(UTC)
    tokens = {"no key": "", "unknown key": sec.new_token()}
    for scope in sec.SCOPES:
        tokens[scope] = repo.create_key(f"authz-{scope}", frozenset({scope}), now)[1]
    tokens["revoked key"] = repo.create_key("authz-revoked", frozenset(sec.SCOPES), now)[1]
    repo.revoke("authz-revoked", now)
    past = now - timedelta(days=2)
    tokens["expired key"] = repo.create_key(
        "authz-expired", frozenset(sec.SCOPES), past, past + timedelta(days=1)
    )[1]
    database.dispose()
    return tokens


def grpc_outcome(address: str, token: str, rpc: str) -> str:
    stub = service_pb2_grpc.BehaviorAnalyticsServiceStub(keyed_channel(address, token))
    method = SERVICE.methods_by_name[rpc]
    request = json_format.ParseDict(
        GRPC_REQUESTS.get(rpc, {}), getattr(service_pb2, method.input_type.name)()
    )
    try:
        if rpc in STREAMING:
            call = getattr(stub, rpc)(request, timeout=1.5)
            try:
                next(call, None)
            finally:
                call.cancel()
        else:
            getattr(stub, rpc)(request, timeout=30)
    except grpc.RpcError as exc:
        code = exc.code()
        if code == grpc.StatusCode.UNAUTHENTICATED:
            return "unauthenticated"
        if code == grpc.StatusCode.PERMISSION_DENIED:
            return "denied"
    return "allow"


def rest_outcome(client: Client, token: str, rpc: str) -> str:
    verb, path, body = REQUESTS[rpc]
    headers = {"authorization": f"Bearer {token}"} if token else {}
    if rpc in STREAMING:
        accept = "text/event-stream" if rpc == "StreamAlerts" else "*/*"
        conn = client.connection(10)
        try:
            conn.request("GET", API + path, headers={"accept": accept, **headers})
            status = conn.getresponse().status  # the stream itself is not read
        finally:
            conn.close()
    else:
        status = client.request(verb, API + path, body=body, headers={**headers}).status
    return {401: "unauthenticated", 403: "denied"}.get(status, "allow")


def test_every_rpc_is_in_the_matrix():
    assert set(RPCS) == set(REQUESTS) == set(sec.METHOD_SCOPES)


def test_authorization_matrix(uba_server, gateway, keys, capsys):
    rest = Client(gateway.address)  # no default key: each cell sets its own
    ways = {
        "grpc": lambda token, rpc: grpc_outcome(uba_server.address, token, rpc),
        "rest via envoy": lambda token, rpc: rest_outcome(rest, token, rpc),
        "grpc via envoy": lambda token, rpc: grpc_outcome(gateway.address, token, rpc),
    }
    wrong: list[str] = []
    unexpected_allows = unexpected_denials = cells = 0
    for caller, rpc, way in itertools.product(CALLERS, RPCS, ways):
        want, got = expected(caller, rpc), ways[way](keys[caller], rpc)
        cells += 1
        if got != want:
            wrong.append(f"{caller} / {rpc} / {way}: expected {want}, got {got}")
            unexpected_allows += got == "allow"
            unexpected_denials += want == "allow"
    with capsys.disabled():
        print(
            f"\nauthorization matrix ({uba_server.backend}): {cells} cells, "
            f"{unexpected_allows} unexpected allows, {unexpected_denials} unexpected denials"
        )
    assert not wrong, "\n".join(wrong)
    assert cells == len(CALLERS) * len(RPCS) * len(ways)


def test_denied_stream_over_rest_is_an_error_status_not_an_empty_200(gateway, keys):
    client = Client(gateway.address)
    for token, status in (("", 401), (keys["unknown key"], 401), (keys["ingest"], 403)):
        headers = {"authorization": f"Bearer {token}"} if token else {}
        with client.open_stream(f"{API}/alerts/stream/", headers=headers, timeout=10) as stream:
            assert stream.status == status
            assert stream.response.read().startswith(
                b"{"
            )  # a JSON google.rpc.Status, not "[]" or SSE


def test_browser_cookie_works_on_the_stream_and_download_routes_only(gateway, keys):
    client = Client(gateway.address)
    same_origin = {"sec-fetch-site": "same-origin"}
    cookie = {"cookie": f"other=1; uba_key={keys['admin']}", **same_origin}
    with client.open_stream(
        f"{API}/alerts/stream/", headers={"cookie": f"uba_key={keys['read']}", **same_origin}
    ) as stream:
        assert stream.status == 200
    assert (
        client.get(f"{API}/logs/download/", params={"format": "csv"}, headers=cookie).status == 200
    )
    # Anywhere else the cookie is not a credential (no CSRF on POST routes).
    assert (
        client.get(
            f"{API}/dashboard/", headers={"cookie": f"uba_key={keys['read']}", **same_origin}
        ).status
        == 401
    )
    assert client.post(f"{API}/alerts/x/acknowledge/", headers=cookie).status == 401


@pytest.mark.parametrize(
    "headers, status",
    [
        ({"sec-fetch-site": "same-origin"}, 200),
        ({"sec-fetch-site": "same-site"}, 401),  # another port, a sibling subdomain
        ({"sec-fetch-site": "cross-site"}, 401),
        ({"sec-fetch-site": "none"}, 401),  # typed into the address bar, a bookmark
        (
            {"sec-fetch-site": "same-site", "referer": "http://{own}/"},
            401,
        ),  # the browser's word wins
        (
            {"origin": "http://{own}"},
            200,
        ),  # browsers without Fetch Metadata (plain HTTP to a LAN address)
        ({"referer": "http://{own}/?window=3600"}, 200),
        ({"origin": "http://{other}"}, 401),
        ({"origin": "null"}, 401),
        ({"referer": "http://{other}/"}, 401),
        ({"referer": "http://{own}.example/"}, 401),
        ({}, 401),  # curl with a cookie: send the authorization header instead
    ],
)
def test_key_cookie_counts_only_for_requests_from_the_gateways_own_origin(
    gateway, keys, headers, status
):
    host, port = gateway.address.rsplit(":", 1)
    names = {"own": gateway.address, "other": f"{host}:{int(port) + 1}"}
    headers = {k: v.format(**names) for k, v in headers.items()}
    client = Client(gateway.address)
    response = client.get(
        f"{API}/logs/download/",
        params={"format": "csv"},
        headers={"cookie": f"uba_key={keys['admin']}", **headers},
    )
    assert response.status == status, response
    with client.open_stream(
        f"{API}/alerts/stream/", headers={"cookie": f"uba_key={keys['read']}", **headers}
    ) as s:
        assert s.status == status


def test_cookie_named_like_the_key_is_not_the_key(gateway, keys):
    client = Client(gateway.address)
    for cookie in (
        f"x_uba_key={keys['admin']}",
        f"__Host-uba_key={keys['admin']}",
    ):  # the latter: TLS only
        response = client.get(
            f"{API}/logs/download/",
            params={"format": "csv"},
            headers={"cookie": cookie, "sec-fetch-site": "same-origin"},
        )
        assert response.status == 401, (cookie, response)


def test_refusals_are_audited_and_no_key_reaches_a_log(uba_server, gateway, keys):
    stub = uba_server.stub  # the server's admin key
    deadline = time.monotonic() + 10
    while True:
        events = list(
            stub.ListAuditEvents(service_pb2.ListAuditEventsRequest(page_size=1000)).audit_events
        )
        outcomes = {(e.action, e.outcome, e.actor) for e in events}
        if (
            ("ListLogs", "PERMISSION_DENIED", "authz-ingest") in outcomes
            and ("AcknowledgeAlert", "NOT_FOUND", "authz-admin") in outcomes
        ) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert ("ListLogs", "PERMISSION_DENIED", "authz-ingest") in outcomes
    assert (
        "AcknowledgeAlert",
        "NOT_FOUND",
        "authz-admin",
    ) in outcomes  # admin actions: every outcome
    assert any(e.outcome == "UNAUTHENTICATED" and e.detail == "API key revoked" for e in events)
    assert any(e.outcome == "UNAUTHENTICATED" and e.detail == "API key expired" for e in events)
    assert all(e.peer for e in events if e.outcome == "UNAUTHENTICATED")
    assert not any(
        e.action in ("RecordActivity", "RecordActivities") and e.outcome == "ok" for e in events
    )
    texts = [uba_server.log(), gateway.process.log_path.read_text(errors="replace")]
    texts += [json_format.MessageToJson(e) for e in events]
    secrets = [t for t in keys.values() if t] + [uba_server.api_key]
    for text in texts:
        for token in secrets:
            assert token not in text and sec.digest(token) not in text
