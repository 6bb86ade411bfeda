"""Findings of the security review on who a caller is and what a key may
still do: forwarded addresses believed only from the gateway, valid keys
unaffected by their address's failure budget, revoked keys ending their open
streams, and denied calls counted against the key's limit and aggregated in
the audit (cancelled streams: tests/faults/test_cancelled_streams.py)."""

from __future__ import annotations

import re
import threading
import time

import grpc
import pytest
from support.server import ServerProcess

from gateway.gateway_support import API, Client
from gateway.test_access_limits import create_key, stub_for, uba
from uba.v1 import service_pb2, service_pb2_grpc

WRONG_KEY = "uba_" + "w" * 43


def _code(call) -> grpc.StatusCode:
    try:
        call()
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def caps_with(address: str, key: str, forwarded: str = "") -> grpc.StatusCode:
    metadata = [("authorization", f"Bearer {key}")]
    if forwarded:
        metadata.append(("x-forwarded-for", forwarded))
    channel = grpc.insecure_channel(address)
    try:
        return _code(
            lambda: service_pb2_grpc.BehaviorAnalyticsServiceStub(channel).GetCapabilities(
                service_pb2.GetCapabilitiesRequest(), metadata=metadata, timeout=10
            )
        )
    finally:
        channel.close()


def audit(server: ServerProcess, action: str, wanted: int = 0) -> list:
    """The audit entries of `action`, waiting (the writer is asynchronous)
    until there are at least `wanted`."""
    deadline = time.monotonic() + 15
    while True:
        rows = list(
            server.stub.ListAuditEvents(
                service_pb2.ListAuditEventsRequest(action=action, page_size=1000), timeout=10
            ).audit_events
        )
        if len(rows) >= wanted or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


@pytest.fixture
def bundled(tmp_path):
    """A server with a tight failure budget and its own gateway (the one
    whose x-forwarded-for it believes)."""
    server = ServerProcess(
        tmp_path / "data",
        extra_args=[
            "--auth-failure-rate",
            "0.1",
            "--auth-failure-burst",
            "5",
            "--key-cache-seconds",
            "0.5",
            "--gateway-listen",
            "127.0.0.1:0",
        ],
    ).start()
    match = re.search(r"gateway on http://(\S+)", server.log())
    deadline = time.monotonic() + 30
    while match is None and time.monotonic() < deadline:
        time.sleep(0.1)
        match = re.search(r"gateway on http://(\S+)", server.log())
    assert match, server.log()
    try:
        yield server, match.group(1)
    finally:
        server.stop()


def test_forwarded_addresses_sent_straight_to_the_grpc_port_buy_no_fresh_budget(bundled):
    """A different x-forwarded-for per attempt used to give each wrong key a
    fresh budget: now the header counts only from the gateway."""
    server, _ = bundled
    codes = [caps_with(server.address, WRONG_KEY, forwarded=f"203.0.113.{i}") for i in range(40)]
    assert codes[:5] == [grpc.StatusCode.UNAUTHENTICATED] * 5
    assert set(codes[5:]) == {grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    # Audited: five failures and one aggregated refusal, not forty rows.
    rows = audit(server, "GetCapabilities", wanted=6)
    assert sorted(r.outcome for r in rows) == ["RESOURCE_EXHAUSTED"] + ["UNAUTHENTICATED"] * 5
    # The caller's claims are kept in the audit, marked as such.
    assert all("xff(untrusted)=203.0.113." in r.peer for r in rows)


def test_a_spoofed_gateway_address_does_not_lock_gateway_clients_out(bundled):
    server, gateway = bundled
    rest = Client(gateway, WRONG_KEY)
    # What the gateway reports for its clients: read it from the audit.
    assert rest.get(f"{API}/capabilities/").status == 401
    (first,) = audit(server, "GetCapabilities", wanted=1)
    gateway_client = re.search(r"client=(\S+)", first.peer).group(1)
    # A direct caller claiming to be that address exhausts only its own budget.
    codes = [caps_with(server.address, WRONG_KEY, forwarded=gateway_client) for _ in range(10)]
    assert codes[-1] == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Gateway clients still get their own answers (wrong key: 401, right key: 200).
    assert rest.get(f"{API}/capabilities/").status == 401
    assert Client(gateway, server.api_key).get(f"{API}/capabilities/").status == 200


def test_the_audit_keeps_the_real_client_and_the_whole_forwarded_chain(bundled):
    server, gateway = bundled
    fakes = ", ".join(f"198.51.100.{i}" for i in range(5))
    reply = Client(gateway, WRONG_KEY).get(
        f"{API}/capabilities/", headers={"x-forwarded-for": fakes}
    )
    assert reply.status == 401
    (row,) = audit(server, "GetCapabilities", wanted=1)
    client = re.search(r"client=(\S+)", row.peer).group(1)
    assert not client.startswith("198.51.100."), (
        row.peer
    )  # the right-most hop: the gateway's, not the caller's
    assert f"xff={fakes}, {client}" in row.peer, row.peer


def test_a_valid_key_is_let_in_while_its_address_is_over_the_failure_budget(bundled):
    """Behind one NAT or one gateway, one client's bad keys must not lock
    everybody out once the key cache has lapsed; unknown keys stay refused
    without a lookup."""
    server, _ = bundled
    fresh = create_key(server, "fresh", "read")
    time.sleep(1.5)  # the server's set of active keys refreshes each key-cache period (0.5 s)
    codes = [caps_with(server.address, WRONG_KEY) for _ in range(8)]
    assert codes[-1] == grpc.StatusCode.RESOURCE_EXHAUSTED
    # Never used before, so not cached: still admitted.
    assert caps_with(server.address, fresh) == grpc.StatusCode.OK
    time.sleep(1.0)  # past the key cache: looked up again, still admitted
    assert caps_with(server.address, server.api_key) == grpc.StatusCode.OK
    assert caps_with(server.address, WRONG_KEY) == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_revoking_a_key_ends_its_open_alert_stream(bundled):
    server, _ = bundled
    token = create_key(server, "watcher", "read")
    stream = stub_for(server.address, token).StreamAlerts(
        service_pb2.StreamAlertsRequest(), timeout=60
    )
    next(stream)  # the first heartbeat: the stream is open
    ended: list[grpc.StatusCode] = []

    def drain() -> None:
        try:
            for _ in stream:
                pass
            ended.append(grpc.StatusCode.OK)
        except grpc.RpcError as exc:
            ended.append(exc.code())

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    assert uba("keys", "revoke", "watcher", "--data-dir", str(server.data_dir)).returncode == 0
    reader.join(20)  # the key is checked again each key-cache period (0.5 s here)
    assert ended == [grpc.StatusCode.UNAUTHENTICATED]
    rows = [r for r in audit(server, "StreamAlerts") if r.actor == "watcher"]
    assert rows == []  # StreamAlerts is not an audited method; the revocation itself is
    assert any(r.target == "watcher" for r in audit(server, "keys.revoke", wanted=1))


def test_denied_calls_count_against_the_key_limit_and_are_aggregated_in_the_audit(tmp_path):
    server = ServerProcess(
        tmp_path / "data", extra_args=["--rate-limit", "20", "--rate-burst", "20"]
    ).start()
    try:
        reader = stub_for(server.address, create_key(server, "reader", "read"))
        codes = [
            _code(lambda: reader.ListAuditEvents(service_pb2.ListAuditEventsRequest(), timeout=10))
            for _ in range(300)
        ]
        denied = codes.count(grpc.StatusCode.PERMISSION_DENIED)
        limited = codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert denied + limited == 300 and limited > 0, (denied, limited)
        assert denied < 200  # 20 at once, then 20/s, over however long the 300 took
        rows = [r for r in audit(server, "ListAuditEvents", wanted=1) if r.actor == "reader"]
        assert 1 <= len(rows) <= 3 and all(r.outcome == "PERMISSION_DENIED" for r in rows), rows
    finally:
        server.stop()
