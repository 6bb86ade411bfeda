"""Attacks that no single event of one user reveals, end to end through the
gRPC API of a real server: MFA fatigue, a credential-stuffing wave spread
over many addresses and accounts, and slow exfiltration over days."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from support.events import event, unique
from uba.v1 import anomalies_pb2, events_pb2, service_pb2

CHALLENGE = events_pb2.ACTIVITY_TYPE_MFA_CHALLENGE
APPROVED = events_pb2.ACTIVITY_TYPE_MFA_APPROVED
DENIED = events_pb2.ACTIVITY_TYPE_MFA_DENIED


def alerts_of(stub, user_id: str, detector: str):
    return list(stub.ListAlerts(service_pb2.ListAlertsRequest(user_id=user_id, detector=detector,
                                                              page_size=100)).alerts)


def test_mfa_push_bombing_then_approval_is_a_high_alert(stub):
    user = unique("mfa")
    start = datetime.now(timezone.utc) - timedelta(hours=2)
    request = service_pb2.RecordActivitiesRequest()
    for i in range(8):
        request.events.append(event(user, CHALLENGE, start + timedelta(seconds=30 * i), source_ip="203.0.113.40"))
        if i % 2:
            request.events.append(event(user, DENIED, start + timedelta(seconds=30 * i + 5)))
    request.events.append(event(user, APPROVED, start + timedelta(seconds=300), source_ip="203.0.113.40"))
    reply = stub.RecordActivities(request)
    assert reply.invalid_count == 0
    # The types round-trip through storage.
    logs = stub.ListLogs(service_pb2.ListLogsRequest(user_id=user, type=APPROVED, page_size=10)).events
    assert [e.type for e in logs] == [APPROVED]
    (alert,) = alerts_of(stub, user, "mfa_fatigue")
    assert alert.severity == anomalies_pb2.SEVERITY_HIGH
    anomalies = stub.ListAnomalies(service_pb2.ListAnomaliesRequest(user_id=user, detector="mfa_fatigue",
                                                                    page_size=10)).anomalies
    approval = [a for a in anomalies if a.severity == anomalies_pb2.SEVERITY_HIGH]
    assert approval and "T1621" in approval[0].reason and approval[0].observed.endswith("then approval")
    assert any(a.severity == anomalies_pb2.SEVERITY_MEDIUM for a in anomalies)  # the refusals before it
