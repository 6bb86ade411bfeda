"""The live alert stream through Envoy, from the real server started with
fast heartbeats (the default 15 s would make every test wait for it)."""

from __future__ import annotations

import itertools
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from support.events import FAILURE, event
from support.server import ServerProcess, keyed_channel

from gateway.gateway_support import API, Client, start_gateway
from uba.v1 import service_pb2, service_pb2_grpc


@pytest.fixture(scope="module")
def stream_gateway(tmp_path_factory):
    server = ServerProcess(
        tmp_path_factory.mktemp("uba-stream"), extra_args=["--heartbeat-interval", "0.3"]
    ).start()
    try:
        process = start_gateway(server.address, tmp_path_factory.mktemp("gateway-stream"))
        try:
            yield (
                Client(process.listen_address, server.api_key),
                process.listen_address,
                server.api_key,
            )
        finally:
            process.stop()
    finally:
        server.stop()


@pytest.mark.parametrize("suffix", ["/", ""], ids=["slash", "no-slash"])
def test_stream_is_server_sent_events_with_seq(stream_gateway, suffix):
    client, _, _ = stream_gateway
    with client.open_stream(f"{API}/alerts/stream{suffix}") as stream:
        assert stream.status == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = stream.events(3, deadline_s=10)
    for message in events:
        assert set(message) == {"seq", "heartbeat"}
        assert message["seq"].isdigit()  # int64 as a string
        assert message["heartbeat"]["sentAt"].endswith("Z")


def test_incident_changes_arrive_as_server_sent_events(stream_gateway):
    client, address, key = stream_gateway
    stub = service_pb2_grpc.BehaviorAnalyticsServiceStub(keyed_channel(address, key))
    user = f"sse-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    burst = [
        event(user, FAILURE, at=now - timedelta(minutes=10) + timedelta(seconds=3 * i))
        for i in range(11)
    ]
    with client.open_stream(
        f"{API}/alerts/stream/?user_id={user}&include_incidents=true"
    ) as stream:
        stream.events(1, deadline_s=10)  # subscribed
        stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=burst))
        seen = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not any("incident" in e for e in seen):
            seen.extend(stream.events(1, deadline_s=20))
    (message,) = [e for e in seen if "incident" in e][:1]
    assert message["incident"]["entityId"] == user and message["seq"] == message["incident"]["seq"]
    kinds = [next(k for k in e if k != "seq") for e in seen]
    assert "incident" in kinds


def test_after_seq_reaches_the_server(stream_gateway):
    client, _, _ = stream_gateway
    with client.open_stream(
        f"{API}/alerts/stream/?after_seq=4000000000&min_severity=SEVERITY_HIGH&user_id=nobody"
    ) as stream:
        (event,) = stream.events(1, deadline_s=10)
    assert event["seq"] == "4000000000"


def test_last_event_id_becomes_after_seq(stream_gateway):
    client, _, _ = stream_gateway
    with client.open_stream(
        f"{API}/alerts/stream/", headers={"Last-Event-ID": "4000000001"}
    ) as stream:
        (event,) = stream.events(1, deadline_s=10)
    assert event["seq"] == "4000000001"


def test_after_seq_in_the_query_wins_over_last_event_id(stream_gateway):
    client, _, _ = stream_gateway
    with client.open_stream(
        f"{API}/alerts/stream?after_seq=4000000002", headers={"Last-Event-ID": "4000000001"}
    ) as stream:
        (event,) = stream.events(1, deadline_s=10)
    assert event["seq"] == "4000000002"


def test_bad_request_before_the_first_message_is_400_json(stream_gateway):
    client, _, _ = stream_gateway
    response = client.get(
        f"{API}/alerts/stream/", params={"after_seq": "-1"}, headers={"accept": "text/event-stream"}
    )
    assert response.status == 400, response
    assert response.content_type == "application/json"
    assert response.json()["code"] == 3


def test_native_grpc_stream_through_envoy(stream_gateway):
    _, address, key = stream_gateway
    stub = service_pb2_grpc.BehaviorAnalyticsServiceStub(keyed_channel(address, key))
    call = stub.StreamAlerts(service_pb2.StreamAlertsRequest(after_seq=7), timeout=10)
    try:
        messages = list(itertools.islice(call, 2))
    finally:
        call.cancel()
    assert [m.WhichOneof("kind") for m in messages] == ["heartbeat", "heartbeat"]
    assert all(m.seq >= 7 for m in messages)
