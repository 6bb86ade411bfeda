"""Realistic envelopes, built the way the delivery worker builds them:
domain objects -> the API's converters -> MessageToDict. For tests, for
the documentation's examples and for previewing a destination's format."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from uba.delivery import envelope as env
from uba.delivery.payloads import alert_json, anomaly_json, incident_json
from uba.domain.alerts import Alert, AlertStatus, Resolution
from uba.domain.anomalies import Anomaly, Feature, Severity
from uba.domain.incidents import EntityKind, Incident, IncidentStatus, Signal

T0 = datetime(2026, 3, 2, 3, 12, 7, 250000, tzinfo=UTC)


def new_country_anomaly() -> Anomaly:
    return Anomaly(
        anomaly_id="019c9f2a-6b10-7000-8000-00000000a001",
        user_id="alice@example.com",
        detector="new_country",
        detector_version="1",
        score=0.97,
        severity=Severity.HIGH,
        event_ids=["evt-20260302-031207-alice"],
        reason="first login from BR; 412 earlier logins, all from DE, NL",
        observed="BR",
        expected="DE, NL",
        baseline_observations=412,
        baseline_mature=True,
        features=[
            Feature("known_countries", 2.0, 1.0),
            Feature("peers_using", 0.0, 0.0),
            Feature("population_using", 1.0, 0.0),
        ],
        occurred_at=T0,
        detected_at=T0 + timedelta(seconds=1),
        alert_id="019c9f2a-6b10-7000-8000-00000000b001",
        quarantined=True,
        tactics=["TA0001", "TA0003"],
        techniques=["T1078"],
    )


def new_country_alert(**changes) -> Alert:
    fields: dict = dict(
        alert_id="019c9f2a-6b10-7000-8000-00000000b001",
        user_id="alice@example.com",
        detector="new_country",
        severity=Severity.HIGH,
        title="Login from a new country",
        reason="first login from BR; 412 earlier logins, all from DE, NL",
        created_at=T0 + timedelta(seconds=1),
        updated_at=T0 + timedelta(seconds=1),
        first_seen_at=T0,
        last_seen_at=T0,
        seq=4711,
        anomaly_ids=["019c9f2a-6b10-7000-8000-00000000a001"],
        anomaly_count=1,
        user_risk=64,
        tactics=["TA0001", "TA0003"],
        techniques=["T1078"],
        incident_id="019c9f2a-6b10-7000-8000-00000000c001",
    )
    fields.update(changes)
    return Alert(**fields)


def spraying_incident(**changes) -> Incident:
    signal = Signal(
        alert_id="019c9f2a-6b10-7000-8000-00000000b002",
        user_id="bob@example.com",
        detector="password_spraying",
        title="Password spraying",
        severity=Severity.HIGH,
        anomaly_count=14,
        first_seen_at=T0 - timedelta(minutes=9),
        last_seen_at=T0,
        tactics=["TA0006"],
        techniques=["T1110.003"],
        probability=0.7,
        counted=True,
    )
    fields: dict = dict(
        incident_id="019c9f2a-6b10-7000-8000-00000000c002",
        entity_kind=EntityKind.SOURCE_IP,
        entity_id="203.0.113.7",
        title="203.0.113.7: Password spraying against 14 users",
        severity=Severity.HIGH,
        score=70.0,
        created_at=T0 - timedelta(minutes=5),
        updated_at=T0,
        first_seen_at=T0 - timedelta(minutes=9),
        last_seen_at=T0,
        seq=4712,
        signals=[signal],
        user_ids=["bob@example.com", "carol@example.com"],
        source_ips=["203.0.113.7", "203.0.113.8"],
        tactics=["TA0006"],
        techniques=["T1110.003"],
        anomaly_ids=["019c9f2a-6b10-7000-8000-00000000a002"],
        anomaly_count=14,
    )
    fields.update(changes)
    return Incident(**fields)


def sample_envelopes() -> dict[str, env.EnvelopeDict]:
    """One envelope of each kind, by a short name: "alert.created",
    "alert.resolved" (an update closing it as benign), "incident.created",
    "incident.resolved" and "test"."""
    resolved_at = T0 + timedelta(hours=2)
    return {
        "alert.created": env.alert_envelope(
            alert_json(new_country_alert()),
            [anomaly_json(new_country_anomaly())],
            created=True,
            id="019c9f2a-6b11-7000-8000-000000000001",
            timestamp=T0 + timedelta(seconds=1),
        ),
        "alert.resolved": env.alert_envelope(
            alert_json(
                new_country_alert(
                    status=AlertStatus.RESOLVED,
                    updated_at=resolved_at,
                    acknowledged_at=T0 + timedelta(hours=1),
                    acknowledged_by="dana",
                    resolved_at=resolved_at,
                    resolved_by="dana",
                    resolution=Resolution.BENIGN,
                    note="on a business trip to São Paulo",
                )
            ),
            [],
            created=False,
            id="019c9f2a-6b11-7000-8000-000000000002",
            timestamp=resolved_at,
        ),
        "incident.created": env.incident_envelope(
            incident_json(spraying_incident()),
            created=True,
            id="019c9f2a-6b11-7000-8000-000000000003",
            timestamp=T0 - timedelta(minutes=5),
        ),
        "incident.resolved": env.incident_envelope(
            incident_json(
                spraying_incident(
                    status=IncidentStatus.RESOLVED,
                    updated_at=resolved_at,
                    resolved_at=resolved_at,
                    resolved_by="dana",
                    resolution=Resolution.TRUE_POSITIVE,
                )
            ),
            created=False,
            id="019c9f2a-6b11-7000-8000-000000000004",
            timestamp=resolved_at,
        ),
        "test": env.test_envelope(id="019c9f2a-6b11-7000-8000-000000000005", timestamp=T0),
    }
