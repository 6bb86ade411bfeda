"""Attacks that no single event of one user reveals, end to end through the
gRPC API of a real server: MFA fatigue, a credential-stuffing wave spread
over many addresses and accounts, and slow exfiltration over days."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from support.events import event, unique
from support.scenario import FAILURE, LOGIN, personas, send
from support.server import ServerProcess

from uba.testing.synthetic import day_after_history
from uba.v1 import anomalies_pb2, events_pb2, service_pb2

# Its subject depends on the analytics mode: both passes of make test run it.
pytestmark = pytest.mark.both_modes

CHALLENGE = events_pb2.ACTIVITY_TYPE_MFA_CHALLENGE
APPROVED = events_pb2.ACTIVITY_TYPE_MFA_APPROVED
DENIED = events_pb2.ACTIVITY_TYPE_MFA_DENIED


def alerts_of(stub, user_id: str, detector: str):
    return list(
        stub.ListAlerts(
            service_pb2.ListAlertsRequest(user_id=user_id, detector=detector, page_size=100)
        ).alerts
    )


def test_mfa_push_bombing_then_approval_is_a_high_alert(stub):
    user = unique("mfa")
    start = datetime.now(UTC) - timedelta(hours=2)
    request = service_pb2.RecordActivitiesRequest()
    for i in range(8):
        request.events.append(
            event(user, CHALLENGE, start + timedelta(seconds=30 * i), source_ip="203.0.113.40")
        )
        if i % 2:
            request.events.append(event(user, DENIED, start + timedelta(seconds=30 * i + 5)))
    request.events.append(
        event(user, APPROVED, start + timedelta(seconds=300), source_ip="203.0.113.40")
    )
    reply = stub.RecordActivities(request)
    assert reply.invalid_count == 0
    # The types round-trip through storage.
    logs = stub.ListLogs(
        service_pb2.ListLogsRequest(user_id=user, type=APPROVED, page_size=10)
    ).events
    assert [e.type for e in logs] == [APPROVED]
    (alert,) = alerts_of(stub, user, "mfa_fatigue")
    assert alert.severity == anomalies_pb2.SEVERITY_HIGH
    anomalies = stub.ListAnomalies(
        service_pb2.ListAnomaliesRequest(user_id=user, detector="mfa_fatigue", page_size=10)
    ).anomalies
    approval = [a for a in anomalies if a.severity == anomalies_pb2.SEVERITY_HIGH]
    assert (
        approval
        and "T1621" in approval[0].reason
        and approval[0].observed.endswith("then approval")
    )
    assert any(
        a.severity == anomalies_pb2.SEVERITY_MEDIUM for a in anomalies
    )  # the refusals before it


def test_credential_stuffing_across_addresses_is_flagged_and_the_accounts_it_opened_are_high(stub):
    """Forty users with two weeks of routine; then 60 addresses try one or
    two passwords each against 30 of them within 40 minutes, and get into two."""
    rng = random.Random(21)
    staff = personas(40)
    history = [e for p in staff for e in p.history(rng, days=14)]
    send(stub, history)
    day = day_after_history(days=14)
    start = staff[0].local(day, 11, 0)
    victims = rng.sample(staff, 30)
    attack = []
    for k in range(60):
        for _ in range(rng.choice((1, 2))):
            at = start + timedelta(seconds=rng.uniform(0, 2400))
            attack.append(
                rng.choice(victims).event(FAILURE, at, source_ip=f"203.0.113.{k + 1}", device_id="")
            )
    attack.sort(key=lambda e: e.occurred_at)
    owned = {}
    for failure in (attack[30], attack[60]):
        victim = next(p for p in staff if p.user_id == failure.user_id)
        owned[victim.user_id] = victim.event(
            LOGIN,
            failure.occurred_at + timedelta(seconds=2),
            source_ip=failure.source_ip,
            device_id="",
        )
    send(stub, attack + list(owned.values()))
    users = {p.user_id for p in staff}
    found = [
        a
        for a in stub.ListAnomalies(
            service_pb2.ListAnomaliesRequest(detector="credential_stuffing", page_size=1000)
        ).anomalies
        if a.user_id in users
    ]
    waves = sorted(
        (a for a in found if "accounts" in a.observed), key=lambda a: a.occurred_at.seconds
    )
    assert waves and waves[0].severity >= anomalies_pb2.SEVERITY_MEDIUM
    assert waves[0].occurred_at.ToDatetime(UTC) - start <= timedelta(minutes=30)
    assert "203.0.113." in waves[0].reason and "T1110" in waves[0].reason
    opened = {a.user_id: a for a in found if a.observed.startswith("success after")}
    assert set(opened) == set(owned)
    for user_id, anomaly in opened.items():
        assert anomaly.severity == anomalies_pb2.SEVERITY_HIGH
        (alert,) = [a for a in alerts_of(stub, user_id, "credential_stuffing")]
        assert alert.severity >= anomalies_pb2.SEVERITY_HIGH


def exfiltration_days(seed: int = 29):
    """A persona's six weeks of routine, and a function giving a day with
    twice its usual daily bytes added, spread evenly over working hours."""
    rng = random.Random(4)
    (alice,) = personas(1, seed=seed)
    history = alice.history(rng)
    days = {}
    for e in history:
        days[e.occurred_at.date()] = days.get(e.occurred_at.date(), 0) + e.bytes_transferred
    usual = sorted(days.values())[len(days) // 2]
    first = day_after_history() - timedelta(days=1)  # a Monday

    def day_of(d: int):
        day = first + timedelta(days=d)
        events = alice.workday(day, rng)
        for i in range(40):
            at = alice.local(
                day, alice.work_start + i * (alice.work_end - alice.work_start) // 40, (7 * i) % 60
            )
            events.append(
                alice.api_call(
                    at,
                    rng,
                    bytes_transferred=2 * usual // 40,
                    api_method="GET",
                    api_path="/v1/customers",
                )
            )
        return events

    return alice, history, day_of


def test_low_and_slow_exfiltration_over_days_is_medium_by_the_third_day(stub):
    """Six weeks of routine, then three times the usual bytes a day, spread
    evenly over working hours: no hour stands out; the days do."""
    alice, history, day_of = exfiltration_days()
    send(stub, history)
    by_day = []
    for d in range(3):
        send(stub, day_of(d))
        by_day.append(
            list(
                stub.ListAnomalies(
                    service_pb2.ListAnomaliesRequest(
                        user_id=alice.user_id, detector="sustained_volume", page_size=100
                    )
                ).anomalies
            )
        )
    assert not [a for a in by_day[0] if a.severity >= anomalies_pb2.SEVERITY_MEDIUM]
    medium = [a for a in by_day[2] if a.severity >= anomalies_pb2.SEVERITY_MEDIUM]
    assert medium, [(a.severity, a.observed) for a in by_day[2]]
    assert "CUSUM" in medium[0].reason and medium[0].baseline_mature and medium[0].detector_version
    # No single hour was a spike.
    assert not stub.ListAnomalies(
        service_pb2.ListAnomaliesRequest(
            user_id=alice.user_id, detector="data_volume", page_size=10
        )
    ).anomalies
    alerts = alerts_of(stub, alice.user_id, "sustained_volume")
    assert max(a.severity for a in alerts) >= anomalies_pb2.SEVERITY_MEDIUM


def test_the_days_already_counted_survive_a_restart(tmp_path):
    """The per-user days live in the detector state's checkpoint: two days of
    excess before a restart, the third after it, still MEDIUM."""
    alice, history, day_of = exfiltration_days(seed=31)
    server = ServerProcess(tmp_path).start()
    try:
        send(server.stub, history + day_of(0) + day_of(1))
        # Not MEDIUM yet: the third day alone could not make it so.
        assert not server.stub.ListAnomalies(
            service_pb2.ListAnomaliesRequest(
                user_id=alice.user_id,
                detector="sustained_volume",
                min_severity=anomalies_pb2.SEVERITY_MEDIUM,
                page_size=10,
            )
        ).anomalies
    finally:
        assert server.stop() == 0
    server = ServerProcess(tmp_path).start()
    try:
        send(server.stub, day_of(2))
        found = server.stub.ListAnomalies(
            service_pb2.ListAnomaliesRequest(
                user_id=alice.user_id,
                detector="sustained_volume",
                min_severity=anomalies_pb2.SEVERITY_MEDIUM,
                page_size=100,
            )
        ).anomalies
        assert found and "3 days" in found[0].reason, [a.reason for a in found]
    finally:
        server.stop()
