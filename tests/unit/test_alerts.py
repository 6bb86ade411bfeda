from datetime import UTC, datetime, timedelta

import pytest

from uba.domain.alerts import (
    MAX_ANOMALY_IDS,
    AlertPolicy,
    AlertStatus,
    Resolution,
    acknowledge,
    resolve,
)
from uba.domain.anomalies import Anomaly, Severity
from uba.domain.errors import FailedPrecondition, InvalidArgument
from uba.domain.ids import new_uuid7

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
POLICY = AlertPolicy(titles={"new_country": "Login from a new country"})


def anomaly(at=T0, severity=Severity.MEDIUM, detector="new_country", user="alice", reason="r"):
    return Anomaly(
        new_uuid7(),
        user,
        detector,
        "1.0",
        1.0,
        severity,
        ["e"],
        reason,
        "",
        "",
        10,
        True,
        occurred_at=at,
        detected_at=at,
    )


def test_first_anomaly_opens_an_alert():
    a = anomaly()
    alert, created = POLICY.apply(a, None, None, T0, user_risk=30)
    assert created and alert.status is AlertStatus.OPEN and alert.seq == 0
    assert alert.title == "Login from a new country" and a.alert_id == alert.alert_id
    assert (alert.anomaly_ids, alert.anomaly_count, alert.user_risk) == ([a.anomaly_id], 1, 30)


def test_repeats_within_the_cooldown_join_the_open_alert():
    alert, _ = POLICY.apply(anomaly(), None, None, T0)
    later = anomaly(T0 + timedelta(minutes=50), Severity.HIGH, reason="latest")
    joined, created = POLICY.apply(later, alert, None, T0 + timedelta(minutes=50))
    assert not created and joined is alert
    assert alert.anomaly_count == 2 and alert.severity is Severity.HIGH and alert.reason == "latest"
    assert alert.anomaly_ids[0] == later.anomaly_id and later.alert_id == alert.alert_id
    lower = anomaly(T0 + timedelta(minutes=90), Severity.LOW)  # within 1 h of the latest
    POLICY.apply(lower, alert, None, T0 + timedelta(minutes=90))
    assert alert.severity is Severity.HIGH and alert.last_seen_at == T0 + timedelta(minutes=90)
    # Past the cool-down: a new alert.
    late = anomaly(T0 + timedelta(hours=3))
    fresh, created = POLICY.apply(late, alert, None, T0 + timedelta(hours=3))
    assert created and fresh is not alert and alert.anomaly_count == 3


def test_anomaly_ids_keep_the_latest_hundred():
    alert, _ = POLICY.apply(anomaly(), None, None, T0)
    ids = []
    for i in range(150):
        a = anomaly(T0 + timedelta(seconds=i))
        ids.append(a.anomaly_id)
        POLICY.apply(a, alert, None, T0)
    assert alert.anomaly_count == 151 and len(alert.anomaly_ids) == MAX_ANOMALY_IDS
    assert alert.anomaly_ids == ids[::-1][:MAX_ANOMALY_IDS]


def test_resolved_alert_is_not_joined():
    alert, _ = POLICY.apply(anomaly(), None, None, T0)
    resolve(alert, Resolution.TRUE_POSITIVE, "ana", "", T0)
    _, created = POLICY.apply(
        anomaly(T0 + timedelta(minutes=1)), alert, None, T0 + timedelta(minutes=1)
    )
    assert created


def test_suppression_after_benign_resolution():
    alert, _ = POLICY.apply(anomaly(), None, None, T0)
    resolve(alert, Resolution.BENIGN, "ana", "travelling", T0 + timedelta(hours=1))
    until = POLICY.suppressed_until(alert)
    assert until == T0 + timedelta(hours=25)
    soon = T0 + timedelta(hours=2)
    assert POLICY.apply(anomaly(soon, Severity.HIGH), alert, until, soon) is None
    critical = POLICY.apply(anomaly(soon, Severity.CRITICAL), alert, until, soon)
    assert critical is not None and critical[1]
    after = T0 + timedelta(hours=26)
    assert POLICY.apply(anomaly(after), None, until, after) is not None
    alert2, _ = POLICY.apply(anomaly(), None, None, T0)
    resolve(alert2, Resolution.TRUE_POSITIVE, "ana", "", T0)
    assert POLICY.suppressed_until(alert2) is None
    assert (
        Resolution.FALSE_POSITIVE.readmits_events and not Resolution.TRUE_POSITIVE.readmits_events
    )


def test_minimum_severity():
    policy = AlertPolicy(min_severity=Severity.MEDIUM)
    assert policy.apply(anomaly(severity=Severity.LOW), None, None, T0) is None


def test_lifecycle_transitions():
    alert, _ = POLICY.apply(anomaly(), None, None, T0)
    acknowledge(alert, "ana", "looking", T0 + timedelta(minutes=5))
    assert (
        alert.status is AlertStatus.ACKNOWLEDGED
        and alert.acknowledged_by == "ana"
        and alert.note == "looking"
    )
    with pytest.raises(FailedPrecondition):
        acknowledge(alert, "bo", "", T0)
    resolve(alert, Resolution.FALSE_POSITIVE, "ana", "known VPN", T0 + timedelta(minutes=9))
    assert alert.status is AlertStatus.RESOLVED and alert.resolution is Resolution.FALSE_POSITIVE
    assert alert.updated_at == alert.resolved_at == T0 + timedelta(minutes=9)
    with pytest.raises(FailedPrecondition, match="already resolved"):
        resolve(alert, Resolution.BENIGN, "ana", "", T0)
    with pytest.raises(FailedPrecondition):
        acknowledge(alert, "ana", "", T0)


def test_bad_transition_arguments():
    alert, _ = POLICY.apply(anomaly(), None, None, T0)
    with pytest.raises(InvalidArgument) as info:
        resolve(alert, None, "ana", "", T0)
    assert info.value.violations[0].field == "resolution"
    with pytest.raises(InvalidArgument):
        acknowledge(alert, " ", "", T0)
    assert alert.status is AlertStatus.OPEN


def test_open_alert_of_another_detector_is_a_programming_error():
    alert, _ = POLICY.apply(anomaly(), None, None, T0)
    with pytest.raises(ValueError):
        POLICY.apply(anomaly(detector="new_ip"), alert, None, T0)
