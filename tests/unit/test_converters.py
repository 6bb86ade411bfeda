"""Message <-> domain conversion (uba.api.converters), without a server:
what a client sends arrives in the domain unchanged, what the domain holds
reaches the client with every field and enum it relies on, and filters with
values the server does not know are refused by field name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from uba.api import converters as conv
from uba.domain.alerts import Alert, AlertStatus, Resolution
from uba.domain.anomalies import Severity
from uba.domain.errors import InvalidArgument
from uba.domain.events import (
    ActivityEvent,
    ActivityType,
    FieldViolation,
    RecordOutcome,
    RecordStatus,
)
from uba.domain.incidents import EntityKind, Incident, IncidentStatus, Signal
from uba.v1 import alerts_pb2, anomalies_pb2, events_pb2, incidents_pb2, service_pb2

T0 = datetime(2026, 11, 24, 9, 30, 15, 123456, tzinfo=UTC)


def wire(message):
    """`message` after a trip over the wire."""
    return type(message).FromString(message.SerializeToString())


def full_event(**changes) -> ActivityEvent:
    fields = dict(
        event_id="e-1",
        user_id="alice",
        type=ActivityType.LOGOUT,
        occurred_at=T0,
        source_ip="203.0.113.7",
        user_agent="Mozilla/5.0",
        device_id="laptop-1",
        session_id="s-1",
        country_code="DE",
        city="Berlin",
        latitude=52.52,
        longitude=13.405,
        timezone="Europe/Berlin",
        peer_group="finance",
        api_method="GET",
        api_path="/v1/reports",
        status_code=403,
        bytes_transferred=2**40,
        session_duration=timedelta(hours=1, microseconds=5),
        attributes={"tenant": "acme", "mfa": "push"},
        source="okta",
    )
    fields.update(changes)
    return ActivityEvent(**fields)


# -- events -------------------------------------------------------------------


def test_an_event_survives_the_round_trip_field_for_field():
    event = full_event()
    m = events_pb2.ActivityEvent()
    conv.event_to_pb(event, m)
    assert conv.event_from_pb(wire(m)) == event


def test_zero_coordinates_are_kept_apart_from_missing_ones():
    for latitude, longitude in ((0.0, 0.0), (None, None)):
        event = full_event(latitude=latitude, longitude=longitude, session_duration=None)
        m = events_pb2.ActivityEvent()
        conv.event_to_pb(event, m)
        back = conv.event_from_pb(wire(m))
        assert (back.latitude, back.longitude, back.session_duration) == (
            latitude,
            longitude,
            None,
        )


def test_the_received_time_goes_out_when_stored():
    m = events_pb2.ActivityEvent()
    conv.event_to_pb(full_event(received_at=T0 + timedelta(seconds=2)), m)
    assert conv.to_datetime(m.received_at) == T0 + timedelta(seconds=2)


def test_missing_or_unknown_type_and_time_arrive_as_none_for_validation_to_name():
    event = conv.event_from_pb(events_pb2.ActivityEvent(user_id="alice", type=999))
    assert event.type is None and event.occurred_at is None
    assert conv.event_from_pb(events_pb2.ActivityEvent()).type is None


def test_every_activity_type_has_its_wire_value():
    for kind in ActivityType:
        m = events_pb2.ActivityEvent()
        conv.event_to_pb(full_event(type=kind), m)
        assert events_pb2.ActivityType.Name(m.type) == f"ACTIVITY_TYPE_{kind.name}"
        assert conv.activity_type(m.type) is kind


# -- time ---------------------------------------------------------------------


def test_timestamps_round_trip_to_the_microsecond():
    ts = Timestamp()
    conv.set_timestamp(ts, T0)
    assert (ts.seconds, ts.nanos) == (int(T0.timestamp()), 123_456_000)
    assert conv.to_datetime(ts) == T0
    assert conv.to_datetime(ts).tzinfo is UTC


def test_times_before_1970_round_trip():
    moment = datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC)
    ts = Timestamp()
    conv.set_timestamp(ts, moment)
    assert conv.to_datetime(ts) == moment


def test_timestamps_beyond_what_datetime_holds_are_clamped_not_raised():
    assert conv.to_datetime(Timestamp(seconds=2**62)) == datetime.max.replace(tzinfo=UTC)
    assert conv.to_datetime(Timestamp(seconds=-(2**62))) == datetime.min.replace(tzinfo=UTC)


@pytest.mark.parametrize(
    "span, seconds, nanos",
    [
        (timedelta(seconds=90, microseconds=250), 90, 250_000),
        (timedelta(seconds=-1.5), -1, -500_000_000),
        (timedelta(microseconds=-1), 0, -1000),
        (timedelta(0), 0, 0),
    ],
)
def test_durations_keep_one_sign_and_round_trip(span, seconds, nanos):
    d = Duration()
    conv.set_duration(d, span)
    assert (d.seconds, d.nanos) == (seconds, nanos)
    assert conv.to_timedelta(wire(d)) == span


def test_durations_beyond_what_timedelta_holds_are_clamped_not_raised():
    assert conv.to_timedelta(Duration(seconds=2**62)) == timedelta.max
    assert conv.to_timedelta(Duration(seconds=-(2**62))) == timedelta.min


# -- filters ------------------------------------------------------------------


def test_the_log_filter_takes_its_fields_and_leaves_unset_times_open():
    request = service_pb2.ListLogsRequest(
        user_id="alice", source_ip="203.0.113.7", type=events_pb2.ACTIVITY_TYPE_LOGOUT
    )
    conv.set_timestamp(request.start_time, T0)
    flt = conv.event_filter(request)
    assert (flt.user_id, flt.source_ip, flt.type) == ("alice", "203.0.113.7", ActivityType.LOGOUT)
    assert (flt.start_time, flt.end_time) == (T0, None)
    assert conv.event_filter(service_pb2.ExportLogsRequest()).type is None


def field_refused(call) -> str:
    with pytest.raises(InvalidArgument) as caught:
        call()
    (violation,) = caught.value.violations
    return violation.field


def test_filters_with_unknown_enum_values_are_refused_by_field_name():
    assert field_refused(lambda: conv.event_filter(service_pb2.ListLogsRequest(type=99))) == "type"
    assert (
        field_refused(lambda: conv.alert_filter(service_pb2.ListAlertsRequest(status=99)))
        == "status"
    )
    assert (
        field_refused(lambda: conv.anomaly_filter(service_pb2.ListAnomaliesRequest(min_severity=9)))
        == "min_severity"
    )
    assert (
        field_refused(lambda: conv.incident_filter(service_pb2.ListIncidentsRequest(status=99)))
        == "status"
    )
    assert (
        field_refused(lambda: conv.incident_filter(service_pb2.ListIncidentsRequest(tactic="x")))
        == "tactic"
    )


def test_filters_map_known_values_to_the_domain():
    alerts = conv.alert_filter(
        service_pb2.ListAlertsRequest(
            status=alerts_pb2.ALERT_STATUS_ACKNOWLEDGED,
            min_severity=anomalies_pb2.SEVERITY_HIGH,
            user_id="alice",
        )
    )
    assert (alerts.status, alerts.min_severity, alerts.user_id) == (
        AlertStatus.ACKNOWLEDGED,
        Severity.HIGH,
        "alice",
    )
    incidents = conv.incident_filter(
        service_pb2.ListIncidentsRequest(
            status=incidents_pb2.INCIDENT_STATUS_OPEN, tactic="Initial Access"
        )
    )
    assert (incidents.status, incidents.tactic) == (IncidentStatus.OPEN, "TA0001")
    assert conv.alert_filter(service_pb2.ListAlertsRequest()).status is None


def test_resolutions_map_back_to_the_domain_and_unspecified_to_none():
    assert conv.resolution(alerts_pb2.RESOLUTION_BENIGN) is Resolution.BENIGN
    assert conv.resolution(alerts_pb2.RESOLUTION_FALSE_POSITIVE) is Resolution.FALSE_POSITIVE
    assert conv.resolution(0) is None


# -- alerts and incidents ---------------------------------------------------------


def test_domain_severities_have_the_wire_numbers():
    for severity in Severity:
        assert anomalies_pb2.Severity.Name(conv.severity_to_pb(severity)) == (
            f"SEVERITY_{severity.name}"
        )


def alert(**changes) -> Alert:
    fields = dict(
        alert_id="a-1",
        user_id="alice",
        detector="new_country",
        severity=Severity.HIGH,
        title="Login from a new country",
        reason="first login from BR",
        created_at=T0,
        updated_at=T0 + timedelta(minutes=5),
        first_seen_at=T0 - timedelta(minutes=1),
        last_seen_at=T0,
        seq=42,
        anomaly_ids=["n-1", "n-2"],
        anomaly_count=2,
        user_risk=77,
        tactics=["TA0001"],
        techniques=["T1078"],
        incident_id="i-1",
    )
    fields.update(changes)
    return Alert(**fields)


def test_an_alert_reaches_the_client_with_its_fields_and_enums():
    m = alerts_pb2.Alert()
    conv.alert_to_pb(alert(), m)
    m = wire(m)
    assert (m.alert_id, m.seq, m.user_id, m.detector, m.incident_id) == (
        "a-1",
        42,
        "alice",
        "new_country",
        "i-1",
    )
    assert m.severity == anomalies_pb2.SEVERITY_HIGH
    assert m.status == alerts_pb2.ALERT_STATUS_OPEN
    assert list(m.anomaly_ids) == ["n-1", "n-2"] and m.anomaly_count == 2 and m.user_risk == 77
    assert conv.to_datetime(m.created_at) == T0
    assert conv.to_datetime(m.updated_at) == T0 + timedelta(minutes=5)
    assert conv.to_datetime(m.first_seen_at) == T0 - timedelta(minutes=1)
    assert not m.HasField("acknowledged_at") and not m.HasField("resolved_at")
    assert m.resolution == alerts_pb2.RESOLUTION_UNSPECIFIED
    assert [(t.tactic_id, t.name) for t in m.tactics] == [("TA0001", "Initial Access")]
    assert [(t.technique_id, t.name) for t in m.techniques] == [("T1078", "Valid Accounts")]


def test_a_resolved_alert_carries_who_when_and_how():
    resolved = alert(
        status=AlertStatus.RESOLVED,
        acknowledged_at=T0,
        acknowledged_by="bob",
        resolved_at=T0 + timedelta(hours=1),
        resolved_by="carol",
        resolution=Resolution.TRUE_POSITIVE,
        note="confirmed with the user",
    )
    m = alerts_pb2.Alert()
    conv.alert_to_pb(resolved, m)
    assert m.status == alerts_pb2.ALERT_STATUS_RESOLVED
    assert m.resolution == alerts_pb2.RESOLUTION_TRUE_POSITIVE
    assert (m.acknowledged_by, m.resolved_by, m.note) == ("bob", "carol", "confirmed with the user")
    assert conv.to_datetime(m.resolved_at) == T0 + timedelta(hours=1)


def test_every_alert_status_and_resolution_has_a_wire_value():
    for status in AlertStatus:
        m = alerts_pb2.Alert()
        conv.alert_to_pb(alert(status=status), m)
        assert alerts_pb2.AlertStatus.Name(m.status) == f"ALERT_STATUS_{status.name}"
    for resolution in Resolution:
        m = alerts_pb2.Alert()
        conv.alert_to_pb(alert(resolution=resolution), m)
        assert alerts_pb2.Resolution.Name(m.resolution) == f"RESOLUTION_{resolution.name}"
        assert conv.resolution(m.resolution) is resolution


def signal(alert_id: str, detector: str) -> Signal:
    return Signal(
        alert_id=alert_id,
        user_id="alice",
        detector=detector,
        title=f"{detector} signal",
        severity=Severity.MEDIUM,
        anomaly_count=3,
        first_seen_at=T0,
        last_seen_at=T0 + timedelta(minutes=2),
        tactics=["TA0006"],
        techniques=["T1110.004"],
        probability=0.4,
        counted=True,
    )


def incident(**changes) -> Incident:
    fields = dict(
        incident_id="i-1",
        entity_kind=EntityKind.SOURCE_IP,
        entity_id="203.0.113.7",
        title="Credential stuffing from 203.0.113.7",
        severity=Severity.CRITICAL,
        score=91.5,
        created_at=T0,
        updated_at=T0,
        first_seen_at=T0,
        last_seen_at=T0 + timedelta(minutes=2),
        seq=7,
        signals=[signal("a-1", "credential_stuffing"), signal("a-2", "new_ip")],
        session_ids=["s-1"],
        user_ids=["alice", "bob"],
        anomaly_ids=["n-1"],
        anomaly_count=6,
    )
    fields.update(changes)
    return Incident(**fields)


def test_an_incident_reaches_the_client_with_its_signals_and_members():
    m = incidents_pb2.Incident()
    conv.incident_to_pb(incident(), m)
    m = wire(m)
    assert (m.incident_id, m.seq, m.entity_id, m.score) == ("i-1", 7, "203.0.113.7", 91.5)
    assert m.entity_kind == incidents_pb2.ENTITY_KIND_SOURCE_ADDRESS
    assert m.severity == anomalies_pb2.SEVERITY_CRITICAL
    assert m.status == incidents_pb2.INCIDENT_STATUS_OPEN
    assert list(m.alert_ids) == ["a-1", "a-2"]
    assert list(m.user_ids) == ["alice", "bob"] and list(m.session_ids) == ["s-1"]
    assert m.anomaly_count == 6
    first = m.signals[0]
    assert (first.alert_id, first.detector, first.severity) == (
        "a-1",
        "credential_stuffing",
        anomalies_pb2.SEVERITY_MEDIUM,
    )
    assert first.probability == pytest.approx(0.4) and first.counted and first.active
    assert conv.to_datetime(first.last_seen_at) == T0 + timedelta(minutes=2)
    assert [t.technique_id for t in first.techniques] == ["T1110.004"]
    assert not m.HasField("resolved_at")


def test_every_incident_status_and_entity_kind_has_a_wire_value():
    for status in IncidentStatus:
        m = incidents_pb2.Incident()
        conv.incident_to_pb(incident(status=status), m)
        assert incidents_pb2.IncidentStatus.Name(m.status) == f"INCIDENT_STATUS_{status.name}"
    m = incidents_pb2.Incident()
    conv.incident_to_pb(incident(entity_kind=EntityKind.USER, entity_id="alice"), m)
    assert m.entity_kind == incidents_pb2.ENTITY_KIND_USER


def test_alerts_and_incidents_read_back_from_the_wire_as_they_were_sent():
    """Front ends of the event log rebuild the changes a worker published
    (uba.eventlog.fanout): what they then serve equals what the worker
    would have served, for every status, resolution and optional time."""
    alerts = [
        alert(),
        alert(
            status=AlertStatus.RESOLVED,
            acknowledged_at=T0,
            acknowledged_by="bob",
            resolved_at=T0 + timedelta(hours=1),
            resolved_by="carol",
            resolution=Resolution.BENIGN,
            note="travel",
        ),
        alert(status=AlertStatus.ACKNOWLEDGED, acknowledged_at=T0, tactics=[], techniques=[]),
    ]
    for sent in alerts:
        m = alerts_pb2.Alert()
        conv.alert_to_pb(sent, m)
        back = conv.alert_from_pb(wire(m))
        assert back == sent
        again = alerts_pb2.Alert()
        conv.alert_to_pb(back, again)
        assert again == m
    incidents = [
        incident(),
        incident(
            entity_kind=EntityKind.USER,
            entity_id="alice",
            status=IncidentStatus.RESOLVED,
            acknowledged_at=T0,
            acknowledged_by="bob",
            resolved_at=T0 + timedelta(hours=2),
            resolved_by="carol",
            resolution=Resolution.FALSE_POSITIVE,
            note="pentest",
            source_ips=["203.0.113.7"],
            tactics=["TA0006"],
            techniques=["T1110.004"],
        ),
    ]
    incidents[1].signals[0].active = False
    for sent in incidents:
        m = incidents_pb2.Incident()
        conv.incident_to_pb(sent, m)
        back = conv.incident_from_pb(wire(m))
        assert back == sent  # risk fields and echoes are at their defaults in both
        assert back.alert_ids == ["a-1", "a-2"] and back.detectors == sent.detectors
        again = incidents_pb2.Incident()
        conv.incident_to_pb(back, again)
        assert again == m


# -- replies ------------------------------------------------------------------


def test_a_batch_reply_counts_each_outcome_and_keeps_the_order():
    outcomes = [
        RecordOutcome("e-1", RecordStatus.ACCEPTED, received_at=T0),
        RecordOutcome(
            "e-2", RecordStatus.INVALID, violations=(FieldViolation("events[1].type", "required"),)
        ),
        RecordOutcome("e-1", RecordStatus.DUPLICATE),
        RecordOutcome("e-3", RecordStatus.ACCEPTED, received_at=T0),
    ]
    reply = wire(conv.record_activities_response(outcomes))
    assert (reply.accepted_count, reply.duplicate_count, reply.invalid_count) == (2, 1, 1)
    assert [(r.index, r.event_id) for r in reply.results] == [
        (0, "e-1"),
        (1, "e-2"),
        (2, "e-1"),
        (3, "e-3"),
    ]
    assert reply.results[1].status == service_pb2.RECORD_STATUS_INVALID
    assert [(v.field, v.description) for v in reply.results[1].violations] == [
        ("events[1].type", "required")
    ]
    assert reply.results[2].status == service_pb2.RECORD_STATUS_DUPLICATE


def test_a_single_reply_says_whether_it_was_a_duplicate():
    accepted = conv.record_activity_response(
        RecordOutcome("e-1", RecordStatus.ACCEPTED, received_at=T0)
    )
    assert not accepted.duplicate and conv.to_datetime(accepted.received_at) == T0
    duplicate = conv.record_activity_response(RecordOutcome("e-1", RecordStatus.DUPLICATE))
    assert duplicate.duplicate and not duplicate.HasField("received_at")
