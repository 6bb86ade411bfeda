from datetime import UTC, datetime, timedelta

from uba.domain.anomalies import Anomaly, Severity
from uba.domain.risk import RiskAccumulator, RiskPolicy

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
POLICY = RiskPolicy()


def anomaly(severity, age_hours=0.0, alert_id=""):
    return Anomaly(
        "a",
        "alice",
        "d",
        "1",
        1.0,
        severity,
        ["e"],
        "r",
        "",
        "",
        0,
        True,
        occurred_at=NOW - timedelta(hours=age_hours),
        alert_id=alert_id,
    )


def test_no_anomalies_no_risk():
    assert POLICY.user_risk([], NOW) == 0


def test_severity_weights_and_saturation():
    assert POLICY.user_risk([anomaly(Severity.LOW)], NOW) == 10
    assert POLICY.user_risk([anomaly(Severity.CRITICAL)], NOW) == 80
    assert POLICY.user_risk([anomaly(Severity.CRITICAL)] * 50, NOW) == 100


def test_half_life_decay():
    fresh = POLICY.user_risk([anomaly(Severity.HIGH)], NOW)
    day_old = POLICY.user_risk([anomaly(Severity.HIGH, 24)], NOW)
    assert POLICY.contribution(Severity.HIGH, NOW - timedelta(hours=24), NOW) == 20.0
    assert fresh > day_old > POLICY.user_risk([anomaly(Severity.HIGH, 24 * 7)], NOW) >= 0
    shorter = RiskPolicy(half_life=timedelta(hours=1))
    assert shorter.user_risk([anomaly(Severity.HIGH, 24)], NOW) == 0


def test_resolved_alerts_no_longer_count():
    anomalies = [anomaly(Severity.HIGH, alert_id="x"), anomaly(Severity.LOW, alert_id="y")]
    assert POLICY.user_risk(anomalies, NOW, resolved_alert_ids={"x"}) == POLICY.user_risk(
        anomalies[1:], NOW
    )


def test_accumulator_matches_the_batch_score():
    acc = RiskAccumulator()
    items = [(Severity.MEDIUM, 30), (Severity.HIGH, 10), (Severity.LOW, 2)]
    for severity, age in items:
        at = NOW - timedelta(hours=age)
        acc.add(POLICY, severity, at, at)
    batch = [anomaly(s, age) for s, age in items]
    assert acc.score(POLICY, NOW) == POLICY.user_risk(batch, NOW)
    acc.remove(POLICY, Severity.HIGH, NOW - timedelta(hours=10), NOW)
    assert acc.score(POLICY, NOW) == POLICY.user_risk([batch[0], batch[2]], NOW)
