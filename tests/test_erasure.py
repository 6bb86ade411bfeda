"""The right to erasure end to end through a real server, on SQLite and
PostgreSQL: `ForgetUser` deletes a person's events and baseline, leaves
their alerts, incidents and audit entries under a pseudonym, writes the
erasure into the audit trail, is idempotent, and races nothing: while the
user keeps sending events, whatever was acknowledged before the erasure is
gone and whatever is sent after it stays."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from support.events import API_CALL, FAILURE, LOGIN, event, stored_events, unique

from uba.v1 import service_pb2


def burst(user: str) -> list:
    now = datetime.now(UTC)
    return [
        event(
            user,
            FAILURE,
            at=now - timedelta(minutes=30) + timedelta(seconds=3 * i),
            source_ip="203.0.113.5",
        )
        for i in range(11)
    ]


def audit_entries(stub) -> list:
    out, token = [], ""
    while True:
        page = stub.ListAuditEvents(
            service_pb2.ListAuditEventsRequest(page_size=1000, page_token=token)
        )
        out.extend(page.audit_events)
        token = page.next_page_token
        if not token:
            return out


def test_forget_deletes_the_person_and_pseudonymises_the_facts(uba_server):
    stub = uba_server.stub
    user = unique("erase")
    other = unique("keep")
    stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=burst(user)))
    stub.RecordActivities(
        service_pb2.RecordActivitiesRequest(events=[event(other, LOGIN), event(user, API_CALL)])
    )
    assert stub.ListAlerts(service_pb2.ListAlertsRequest(user_id=user)).alerts
    assert stub.ListIncidents(service_pb2.ListIncidentsRequest(user_id=user)).incidents
    # An audited call that names the user (ExportLogs is in the trail).
    list(stub.ExportLogs(service_pb2.ExportLogsRequest(user_id=user)))
    deadline = time.monotonic() + 10  # the trail is written by its own thread
    while not any(user in e.detail for e in audit_entries(stub)):
        assert time.monotonic() < deadline, "the export never reached the audit trail"
        time.sleep(0.1)

    reply = stub.ForgetUser(service_pb2.ForgetUserRequest(user_id=user))
    alias = reply.pseudonym
    assert alias.startswith("erased_") and user not in alias
    assert reply.events_deleted == 12
    assert reply.records_deleted >= 1  # the baseline at least
    assert reply.records_pseudonymised >= 3  # anomalies, the alert, the incident, audit

    assert stored_events(stub, user) == []
    assert len(stored_events(stub, other)) == 1
    with pytest.raises(grpc.RpcError) as info:
        stub.GetUserBaseline(service_pb2.GetUserBaselineRequest(user_id=user))
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    assert not stub.ListAlerts(service_pb2.ListAlertsRequest(user_id=user)).alerts
    assert not stub.ListIncidents(service_pb2.ListIncidentsRequest(user_id=user)).incidents
    assert not stub.ListAnomalies(service_pb2.ListAnomaliesRequest(user_id=user)).anomalies
    # The facts stay, under the pseudonym.
    alerts = stub.ListAlerts(service_pb2.ListAlertsRequest(user_id=alias)).alerts
    assert alerts and all(user not in a.title + a.reason for a in alerts)
    incidents = stub.ListIncidents(service_pb2.ListIncidentsRequest(user_id=alias)).incidents
    assert incidents and all(user not in str(i) for i in incidents)
    assert stub.ListAnomalies(service_pb2.ListAnomaliesRequest(user_id=alias)).anomalies
    # The trail names the pseudonym only, and records the erasure.
    entries = audit_entries(stub)
    assert not [e for e in entries if user in e.target + e.detail]
    (forget,) = [e for e in entries if e.action == "users.forget"]
    assert (
        forget.target == alias and forget.actor == "admin" and "events_deleted=12" in forget.detail
    )

    again = stub.ForgetUser(service_pb2.ForgetUserRequest(user_id=user))
    assert again.pseudonym == alias
    assert (again.events_deleted, again.records_deleted, again.records_pseudonymised) == (0, 0, 0)


def test_the_cli_forgets_and_refuses_an_empty_id(uba_server):
    stub = uba_server.stub
    user = unique("cli")
    stub.RecordActivity(service_pb2.RecordActivityRequest(event=event(user, LOGIN)))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "uba",
            "users",
            "forget",
            user,
            "--server",
            uba_server.address,
            "--api-key",
            uba_server.api_key,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"forgot {user}: 1 events" in done.stdout and "erased_" in done.stdout
    assert stored_events(stub, user) == []
    with pytest.raises(grpc.RpcError) as info:
        stub.ForgetUser(service_pb2.ForgetUserRequest(user_id=""))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_every_user_id_ingest_stores_can_be_forgotten(uba_server):
    """Erasure takes the ids ingest takes: a no-break space, a private-use
    or an unassigned character are fine in both (they used to be refused by
    ForgetUser alone, leaving such a person impossible to erase), and what
    ingest refuses (a control or format character, more than 256
    characters) ForgetUser refuses too, naming the field."""
    stub = uba_server.stub
    for odd in ("\u00a0", "\ue000", "\U000e01f0", "\u0378"):
        user = unique("odd") + odd
        stub.RecordActivity(service_pb2.RecordActivityRequest(event=event(user, LOGIN)))
        reply = stub.ForgetUser(service_pb2.ForgetUserRequest(user_id=user))
        assert reply.events_deleted == 1, repr(user)
        assert stored_events(stub, user) == []
    for refused in ("tab\there", "zero\u200bwidth", "x" * 257):
        with pytest.raises(grpc.RpcError) as info:
            stub.RecordActivity(service_pb2.RecordActivityRequest(event=event(refused, LOGIN)))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(grpc.RpcError) as info:
            stub.ForgetUser(service_pb2.ForgetUserRequest(user_id=refused))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "user_id" in info.value.details()


def test_forget_while_the_user_keeps_sending(uba_server):
    """Acknowledged before the erasure started: gone. Sent after it ended:
    kept, and the baseline learned only those."""
    stub = uba_server.stub
    user = unique("busy")
    acked: list[tuple[float, str]] = []  # (acknowledged at, event id)
    sent: list[tuple[float, str]] = []  # (sent at, event id)
    stop = threading.Event()

    def sender() -> None:
        i = 0
        while not stop.is_set():
            batch = [event(user, API_CALL, event_id=f"{user}-{i + k}") for k in range(20)]
            i += 20
            started = time.monotonic()
            stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=batch))
            done = time.monotonic()
            sent.extend((started, e.event_id) for e in batch)
            acked.extend((done, e.event_id) for e in batch)

    thread = threading.Thread(target=sender)
    thread.start()
    try:
        time.sleep(1.5)
        began = time.monotonic()
        reply = stub.ForgetUser(service_pb2.ForgetUserRequest(user_id=user))
        ended = time.monotonic()
        time.sleep(1.0)
    finally:
        stop.set()
        thread.join(60)
    stored = {e.event_id for e in stored_events(stub, user)}
    before = {i for t, i in acked if t < began}
    after = {i for t, i in sent if t > ended}
    assert before and after
    assert reply.events_deleted >= len(before)
    assert not stored & before
    assert after <= stored
    baseline = stub.GetUserBaseline(service_pb2.GetUserBaselineRequest(user_id=user)).baseline
    assert after and baseline.observation_count <= len(stored)
