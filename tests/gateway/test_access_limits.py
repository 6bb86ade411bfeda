"""Keys in operation: the first start's admin key, `uba keys`, revocation
within the cache time, per-key rate and stream limits (gRPC and REST),
--allow-anonymous only on loopback, and the principal recorded as who
acted."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from gateway.gateway_support import API, Client, start_gateway
from support.events import FAILURE, event
from support.server import ServerProcess, keyed_channel
from uba.v1 import service_pb2, service_pb2_grpc


def uba(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("UBA_")}
    return subprocess.run([sys.executable, "-m", "uba", *args], capture_output=True, text=True, timeout=60,
                          env={**clean, **(env or {})})


def stub_for(address: str, key: str) -> service_pb2_grpc.BehaviorAnalyticsServiceStub:
    return service_pb2_grpc.BehaviorAnalyticsServiceStub(keyed_channel(address, key))


def caps(stub) -> None:
    stub.GetCapabilities(service_pb2.GetCapabilitiesRequest(), timeout=10)


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """A server with tight limits and a short key cache, and Envoy before it."""
    server = ServerProcess(tmp_path_factory.mktemp("uba-limits"), extra_args=[
        "--rate-limit", "2", "--rate-burst", "5", "--max-streams-per-key", "1", "--key-cache-seconds", "0.5",
        "--heartbeat-interval", "0.3"]).start()
    gateway = start_gateway(server.address, tmp_path_factory.mktemp("gateway-limits"))
    try:
        yield server, gateway
    finally:
        gateway.stop()
        server.stop()


def create_key(server: ServerProcess, name: str, *scopes: str, extra: tuple = ()) -> str:
    args = ["keys", "create", "--name", name, "--data-dir", str(server.data_dir), *extra]
    for s in scopes:
        args += ["--scope", s]
    done = uba(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_first_start_writes_an_admin_key_file_and_logs_only_its_path(limited):
    server, _ = limited
    key_file = server.data_dir / "admin.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert server.api_key.startswith("uba_") and server.api_key not in server.log()
    assert str(key_file) in server.log() and "Authorization: Bearer" in server.log()
    # Client commands find it there without --api-key.
    done = uba("capabilities", "--json", "--server", server.address, "--data-dir", str(server.data_dir))
    assert done.returncode == 0, done.stderr
    refused = uba("capabilities", "--server", server.address, "--data-dir", str(server.data_dir / "elsewhere"))
    assert refused.returncode == 1 and "unauthenticated" in refused.stderr


def test_keys_cli_create_list_revoke_and_revocation_within_the_cache_time(limited):
    server, _ = limited
    token = create_key(server, "ops-reader", "read", "ingest", extra=("--expires-in", "30d"))
    stub = stub_for(server.address, token)
    caps(stub)
    listed = json.loads(uba("keys", "list", "--json", "--data-dir", str(server.data_dir)).stdout)
    (mine,) = [k for k in listed if k["name"] == "ops-reader"]
    assert mine["scopes"] == ["ingest", "read"] and mine["state"] == "active" and mine["expires_at"]
    assert token not in json.dumps(listed)
    assert uba("keys", "revoke", mine["key_id"], "--data-dir", str(server.data_dir)).returncode == 0
    time.sleep(0.7)  # --key-cache-seconds 0.5
    with pytest.raises(grpc.RpcError) as info:
        caps(stub)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert uba("keys", "revoke", "no-such-key", "--data-dir", str(server.data_dir)).returncode == 1
    audit = uba("audit", "--action", "keys.revoke", "--json", "--server", server.address,
                "--data-dir", str(server.data_dir))
    assert audit.returncode == 0, audit.stderr
    (entry,) = json.loads(audit.stdout)["audit_events"]
    assert entry["target"] == "ops-reader" and entry["outcome"] == "ok" and entry["actor"].startswith("cli")
    duplicate = uba("keys", "create", "--name", "ops-reader", "--scope", "read", "--data-dir", str(server.data_dir))
    assert duplicate.returncode == 1 and "exists" in duplicate.stderr


def _retry_delay(error: grpc.RpcError) -> float:
    status = rpc_status.from_call(error)
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return info.retry_delay.ToTimedelta().total_seconds()
    raise AssertionError("no RetryInfo detail")


def test_rate_limit_is_resource_exhausted_with_retry_info_and_429_over_rest(limited):
    server, gateway = limited
    stub = stub_for(server.address, create_key(server, "busy", "read"))
    codes = []
    for _ in range(10):
        try:
            caps(stub)
            codes.append("ok")
        except grpc.RpcError as exc:
            codes.append(exc.code().name)
            error = exc
    assert codes[:5] == ["ok"] * 5 and "RESOURCE_EXHAUSTED" in codes
    assert 0 < _retry_delay(error) <= 1.0
    rest = Client(gateway.listen_address, create_key(server, "busy-rest", "read"))
    statuses = [rest.get(f"{API}/capabilities/").status for _ in range(10)]
    assert statuses[:5] == [200] * 5 and 429 in statuses
    time.sleep(1.0)  # the bucket refills at 2/s
    assert rest.get(f"{API}/capabilities/").status == 200


def test_one_stream_per_key_then_resource_exhausted(limited):
    server, _ = limited
    stub = stub_for(server.address, create_key(server, "streamer", "read"))
    first = stub.StreamAlerts(service_pb2.StreamAlertsRequest(), timeout=10)
    try:
        next(first)  # a heartbeat: the stream is open
        with pytest.raises(grpc.RpcError) as info:
            next(stub.StreamAlerts(service_pb2.StreamAlertsRequest(), timeout=10))
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    finally:
        first.cancel()
    time.sleep(0.3)
    again = stub.StreamAlerts(service_pb2.StreamAlertsRequest(), timeout=10)
    next(again)
    again.cancel()


def test_the_principal_is_the_key_name_in_the_alert_workflow_and_the_audit(uba_server):
    user = f"principal-{uuid.uuid4().hex[:8]}"
    now = datetime.now(timezone.utc)
    stub = uba_server.stub  # the server's first-start key, named "admin"
    stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=[
        event(user, FAILURE, at=now - timedelta(minutes=30) + timedelta(seconds=3 * i)) for i in range(11)]))
    deadline = time.monotonic() + 10
    alerts = []
    while not alerts and time.monotonic() < deadline:
        alerts = list(stub.ListAlerts(service_pb2.ListAlertsRequest(user_id=user)).alerts)
        time.sleep(0.2)
    assert alerts, "no alert raised"
    acked = stub.AcknowledgeAlert(service_pb2.AcknowledgeAlertRequest(alert_id=alerts[0].alert_id, note="mine")).alert
    assert acked.acknowledged_by == "admin"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        trail = stub.ListAuditEvents(service_pb2.ListAuditEventsRequest(action="AcknowledgeAlert")).audit_events
        if any(e.target == alerts[0].alert_id for e in trail):
            break
        time.sleep(0.2)
    (entry,) = [e for e in trail if e.target == alerts[0].alert_id]
    assert entry.actor == "admin" and entry.outcome == "ok" and entry.peer.startswith("ipv4:127.0.0.1")


def test_anonymous_only_on_loopback(tmp_path):
    refused = uba("serve", "--listen", "0.0.0.0:0", "--allow-anonymous", "--data-dir", str(tmp_path / "a"))
    assert refused.returncode != 0 and "loopback" in refused.stderr
    server = ServerProcess(tmp_path / "b", anonymous=True).start()
    try:
        caps(stub_for(server.address, ""))
        assert not (tmp_path / "b" / "admin.key").exists()
    finally:
        assert server.stop() == 0
