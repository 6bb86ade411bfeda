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
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from support.events import FAILURE, event
from support.server import ServerProcess, keyed_channel

from gateway.gateway_support import API, Client, start_gateway
from uba.v1 import service_pb2, service_pb2_grpc


def uba(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("UBA_")}
    return subprocess.run(
        [sys.executable, "-m", "uba", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
    )


def stub_for(address: str, key: str) -> service_pb2_grpc.BehaviorAnalyticsServiceStub:
    return service_pb2_grpc.BehaviorAnalyticsServiceStub(keyed_channel(address, key))


def caps(stub) -> None:
    stub.GetCapabilities(service_pb2.GetCapabilitiesRequest(), timeout=10)


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """A server with tight limits and a short key cache, and Envoy before it."""
    server = ServerProcess(
        tmp_path_factory.mktemp("uba-limits"),
        extra_args=[
            "--rate-limit",
            "2",
            "--rate-burst",
            "5",
            "--max-streams-per-key",
            "1",
            "--key-cache-seconds",
            "0.5",
            "--heartbeat-interval",
            "0.3",
        ],
    ).start()
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
    done = uba(
        "capabilities", "--json", "--server", server.address, "--data-dir", str(server.data_dir)
    )
    assert done.returncode == 0, done.stderr
    refused = uba(
        "capabilities", "--server", server.address, "--data-dir", str(server.data_dir / "elsewhere")
    )
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
    audit = uba(
        "audit",
        "--action",
        "keys.revoke",
        "--json",
        "--server",
        server.address,
        "--data-dir",
        str(server.data_dir),
    )
    assert audit.returncode == 0, audit.stderr
    (entry,) = json.loads(audit.stdout)["audit_events"]
    assert (
        entry["target"] == "ops-reader"
        and entry["outcome"] == "ok"
        and entry["actor"].startswith("cli")
    )
    duplicate = uba(
        "keys",
        "create",
        "--name",
        "ops-reader",
        "--scope",
        "read",
        "--data-dir",
        str(server.data_dir),
    )
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
    now = datetime.now(UTC)
    stub = uba_server.stub  # the server's first-start key, named "admin"
    stub.RecordActivities(
        service_pb2.RecordActivitiesRequest(
            events=[
                event(user, FAILURE, at=now - timedelta(minutes=30) + timedelta(seconds=3 * i))
                for i in range(11)
            ]
        )
    )
    deadline = time.monotonic() + 10
    alerts = []
    while not alerts and time.monotonic() < deadline:
        alerts = list(stub.ListAlerts(service_pb2.ListAlertsRequest(user_id=user)).alerts)
        time.sleep(0.2)
    assert alerts, "no alert raised"
    acked = stub.AcknowledgeAlert(
        service_pb2.AcknowledgeAlertRequest(alert_id=alerts[0].alert_id, note="mine")
    ).alert
    assert acked.acknowledged_by == "admin"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        trail = stub.ListAuditEvents(
            service_pb2.ListAuditEventsRequest(action="AcknowledgeAlert")
        ).audit_events
        if any(e.target == alerts[0].alert_id for e in trail):
            break
        time.sleep(0.2)
    (entry,) = [e for e in trail if e.target == alerts[0].alert_id]
    assert (
        entry.actor == "admin" and entry.outcome == "ok" and entry.peer.startswith("ipv4:127.0.0.1")
    )


def test_anonymous_only_on_loopback(tmp_path):
    refused = uba(
        "serve", "--listen", "0.0.0.0:0", "--allow-anonymous", "--data-dir", str(tmp_path / "a")
    )
    assert refused.returncode != 0 and "loopback" in refused.stderr
    server = ServerProcess(tmp_path / "b", anonymous=True).start()
    try:
        caps(stub_for(server.address, ""))
        assert not (tmp_path / "b" / "admin.key").exists()
    finally:
        assert server.stop() == 0


def _code(call) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def _audit(server: ServerProcess, action: str) -> list:
    reply = server.stub.ListAuditEvents(
        service_pb2.ListAuditEventsRequest(action=action, page_size=1000), timeout=10
    )
    return list(reply.audit_events)


def test_a_client_failing_authentication_is_refused_before_any_lookup(tmp_path):
    """Past its failed-authentication budget an address gets
    RESOURCE_EXHAUSTED (429 over REST) with a retry hint, is audited once,
    not per attempt; other addresses (callers Envoy forwards) keep their own
    budget; a key the server verified recently still gets through. Also:
    a revoked key stops working within the default 10 s key cache."""
    # The standalone gateway runs on loopback: trusted as a proxy by address.
    server = ServerProcess(
        tmp_path / "data",
        extra_args=[
            "--auth-failure-rate",
            "0.2",
            "--auth-failure-burst",
            "5",
            "--trusted-proxies",
            "127.0.0.1",
        ],
    ).start()
    gateway = start_gateway(server.address, tmp_path / "gateway")
    try:
        # Revocation with the default key cache (10 s): refused within it
        # (this failure spends one unit of the address's budget).
        token = create_key(server, "soon-revoked", "read")
        stub = stub_for(server.address, token)
        caps(stub)
        assert (
            uba("keys", "revoke", "soon-revoked", "--data-dir", str(server.data_dir)).returncode
            == 0
        )
        revoked_at = time.monotonic()
        while (code := _code(lambda: caps(stub))) == grpc.StatusCode.OK:
            assert time.monotonic() - revoked_at < 12, (
                "a revoked key still works after the 10 s key cache"
            )
            time.sleep(0.25)
        assert code == grpc.StatusCode.UNAUTHENTICATED

        admin = stub_for(server.address, server.api_key)
        caps(admin)  # verified, hence cached for the key cache time
        made_up = stub_for(server.address, "uba_" + "x" * 43)
        codes = [_code(lambda: caps(made_up)) for _ in range(7)]
        assert (
            codes
            == [grpc.StatusCode.UNAUTHENTICATED] * 4 + [grpc.StatusCode.RESOURCE_EXHAUSTED] * 3
        )
        with pytest.raises(grpc.RpcError) as info:
            caps(stub_for(server.address, ""))  # no key at all counts too
        assert (
            info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and _retry_delay(info.value) > 0
        )
        caps(admin)

        # Through Envoy the caller is the address Envoy forwards: a budget of its own.
        rest = Client(gateway.listen_address, "uba_" + "y" * 43)
        statuses = [rest.get(f"{API}/capabilities").status for _ in range(7)]
        assert statuses == [401] * 5 + [429] * 2

        audited = _audit(server, "GetCapabilities")
        deadline = time.monotonic() + 10
        while len(audited) < 12 and time.monotonic() < deadline:  # the audit writer is asynchronous
            time.sleep(0.2)
            audited = _audit(server, "GetCapabilities")
        outcomes = sorted(e.outcome for e in audited)
        # revoked 1 + made-up 4 + REST 5 failures; one refusal audited per address.
        assert outcomes == ["RESOURCE_EXHAUSTED"] * 2 + ["UNAUTHENTICATED"] * 10, outcomes

    finally:
        gateway.stop()
        server.stop()
