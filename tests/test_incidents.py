"""Incidents end to end through a real server, on SQLite and PostgreSQL:
a takeover-like burst becomes ONE incident with every signal, scored HIGH
or more, with its ATT&CK tactics; population attacks group by source;
listing, the timeline, the workflow with its cascade to alerts, errors,
and incident changes on the resumable alert stream."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.rpc import status_pb2
from grpc_status import rpc_status
from support.events import FAILURE, event, unique
from support.scenario import personas, send

from uba.domain.events import ActivityType
from uba.testing.synthetic import day_after_history
from uba.v1 import alerts_pb2, anomalies_pb2, incidents_pb2, service_pb2

# Its subject depends on the analytics mode: both passes of make test run it.
pytestmark = pytest.mark.both_modes

LOGIN = ActivityType.LOGIN_SUCCESS


def all_incidents(stub, **filters) -> list[incidents_pb2.Incident]:
    out, token = [], ""
    while True:
        page = stub.ListIncidents(
            service_pb2.ListIncidentsRequest(page_size=1000, page_token=token, **filters)
        )
        out.extend(page.incidents)
        token = page.next_page_token
        if not token:
            return out


def story_of(stub, user_id: str, session_id: str) -> list[incidents_pb2.Incident]:
    """The user's incidents of one session (the synthetic history may have
    left the user a LOW story of its own before the test's events)."""
    return [i for i in all_incidents(stub, user_id=user_id) if session_id in i.session_ids]


def all_alerts(stub, **filters) -> list[alerts_pb2.Alert]:
    return list(stub.ListAlerts(service_pb2.ListAlertsRequest(page_size=1000, **filters)).alerts)


def burst(user: str, minutes_ago: int = 30, ip: str = "203.0.113.5") -> list:
    now = datetime.now(UTC)
    return [
        event(
            user,
            FAILURE,
            at=now - timedelta(minutes=minutes_ago) + timedelta(seconds=3 * i),
            source_ip=ip,
        )
        for i in range(11)
    ]


@pytest.fixture(scope="module")
def population(uba_server):
    """Four mature users."""
    people = personas(4, seed=23)
    rng = random.Random(3)
    send(uba_server.stub, [e for p in people for e in p.history(rng)])
    return people


@pytest.fixture(scope="module")
def takeover(uba_server, population):
    """The first user's account is taken over: a login at 03:12 local time
    from another country, on a new device and address, in one session."""
    victim = population[0]
    day = day_after_history()
    send(
        uba_server.stub,
        [
            victim.event(
                LOGIN,
                victim.local(day, 3, 12),
                country_code="BR",
                city="Sao Paulo",
                latitude=-23.55,
                longitude=-46.63,
                source_ip="203.0.113.80",
                device_id="unknown-android-7731",
                session_id="takeover-1",
            )
        ],
    )
    return victim


def test_takeover_burst_is_one_high_incident_with_its_tactics(uba_server, takeover):
    stub = uba_server.stub
    # The takeover's alerts: those of its moment (the synthetic history may
    # have left the user a LOW of its own, a separate story).
    everything = all_alerts(stub, user_id=takeover.user_id)
    moment = max(a.first_seen_at.ToDatetime() for a in everything)
    alerts = [a for a in everything if a.first_seen_at.ToDatetime() == moment]
    detectors = {a.detector for a in alerts}
    assert {"new_country", "new_device", "login_time"} <= detectors, detectors
    assert all(
        a.severity <= anomalies_pb2.SEVERITY_MEDIUM for a in alerts
    )  # each one weak on its own
    (incident,) = story_of(stub, takeover.user_id, "takeover-1")
    assert incident.severity >= anomalies_pb2.SEVERITY_HIGH
    assert (
        incident.entity_kind == incidents_pb2.ENTITY_KIND_USER
        and incident.entity_id == takeover.user_id
    )
    assert sorted(incident.alert_ids) == sorted(a.alert_id for a in alerts)
    assert {s.detector for s in incident.signals} == detectors
    assert all(s.probability > 0 and s.counted and s.active for s in incident.signals)
    assert incident.anomaly_count == len(incident.anomaly_ids) >= 3
    assert list(incident.session_ids) == ["takeover-1"]
    assert {t.tactic_id for t in incident.tactics} >= {"TA0001", "TA0003"}
    assert {t.name for t in incident.tactics} >= {"Initial Access", "Persistence"}
    assert [(t.technique_id, t.name) for t in incident.techniques] == [("T1078", "Valid Accounts")]
    assert takeover.user_id in incident.title and "one session" in incident.title
    assert 60 <= incident.score <= 100 and incident.status == incidents_pb2.INCIDENT_STATUS_OPEN
    # Every member alert and anomaly carries its ATT&CK ids and the incident.
    assert all(a.incident_id == incident.incident_id for a in alerts)
    assert all([t.technique_id for t in a.techniques] == ["T1078"] for a in alerts)
    anomalies = stub.ListAnomalies(
        service_pb2.ListAnomaliesRequest(user_id=takeover.user_id)
    ).anomalies
    assert anomalies and all(a.techniques and a.tactics for a in anomalies)


def test_separate_sessions_are_separate_incidents(uba_server, population):
    stub = uba_server.stub
    user = population[1]
    day = day_after_history()
    send(
        stub,
        [
            # Each from a new country (MEDIUM on its own): an incident each.
            user.event(
                LOGIN,
                user.local(day, 10, 0),
                device_id="tablet-a",
                session_id="morning-a",
                country_code="PT",
                city="Lisbon",
                latitude=38.72,
                longitude=-9.14,
            ),
            user.event(
                LOGIN,
                user.local(day, 10, 10),
                device_id="tablet-b",
                session_id="morning-b",
                country_code="ES",
                city="Madrid",
                latitude=40.42,
                longitude=-3.70,
            ),
        ],
    )
    incidents = story_of(stub, user.user_id, "morning-a") + story_of(
        stub, user.user_id, "morning-b"
    )
    assert sorted(list(i.session_ids) for i in incidents) == [["morning-a"], ["morning-b"]]
    assert all({"new_country", "new_device"} <= {s.detector for s in i.signals} for i in incidents)


def test_get_incident_has_members_breakdown_and_timeline(uba_server, takeover):
    stub = uba_server.stub
    (incident,) = story_of(stub, takeover.user_id, "takeover-1")
    for incident_id in (incident.incident_id,):
        detail = stub.GetIncident(service_pb2.GetIncidentRequest(incident_id=incident_id))
        assert detail.incident.incident_id == incident_id and detail.incident.signals
        assert sorted(a.alert_id for a in detail.alerts) == sorted(incident.alert_ids)
        kinds = [e.WhichOneof("entry") for e in detail.timeline]
        assert kinds.count("anomaly") == incident.anomaly_count and "event" in kinds
        times = [e.occurred_at.ToDatetime() for e in detail.timeline]
        assert times == sorted(times)
        logins = [
            e.event
            for e in detail.timeline
            if e.HasField("event") and e.event.session_id == "takeover-1"
        ]
        assert len(logins) == 1 and logins[0].country_code == "BR"
        assert {e.anomaly.anomaly_id for e in detail.timeline if e.HasField("anomaly")} == set(
            incident.anomaly_ids
        )


def test_population_attack_is_one_incident_of_the_source(uba_server):
    stub = uba_server.stub
    sprayer = "198.18.7.99"
    victims = [unique("spray") for _ in range(25)]
    now = datetime.now(UTC)
    stub.RecordActivities(
        service_pb2.RecordActivitiesRequest(
            events=[
                event(
                    u,
                    FAILURE,
                    at=now - timedelta(minutes=10) + timedelta(seconds=5 * i),
                    source_ip=sprayer,
                )
                for i, u in enumerate(victims)
            ]
        )
    )
    spray = [i for i in all_incidents(stub) if i.entity_id == sprayer]
    assert len(spray) == 1, spray
    (incident,) = spray
    assert incident.entity_kind == incidents_pb2.ENTITY_KIND_SOURCE_ADDRESS
    # The detector speaks at the 5th account (its slow tier: nobody logged in
    # from there), the 10th and the 20th: each of those victims links to it.
    assert {victims[4], victims[9], victims[19]} <= set(incident.user_ids) <= set(victims), (
        incident.user_ids
    )
    assert "T1110.003" in [t.technique_id for t in incident.techniques]
    assert [i.incident_id for i in all_incidents(stub, user_id=victims[19])] == [
        incident.incident_id
    ]


def test_list_filters_and_paging(uba_server):
    stub = uba_server.stub
    users = [unique("list") for _ in range(3)]
    # Each from its own address, 20 minutes apart, hours before the module's
    # spray: bursts on several accounts at once from one address or within
    # minutes are a password attack on the population (a campaign).
    for k, user in enumerate(users):
        events = burst(user, minutes_ago=240 + 20 * k, ip=f"203.0.113.{20 + k}")
        stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=events))
    # Each burst is one signal of one incident (the user's, or a campaign's
    # when the population detectors take the failures for a password attack,
    # as the module's other failures may make them): its repeats join that
    # signal and do not escalate it.
    everything = all_incidents(stub)
    mine = []
    for user in users:
        (alert,) = all_alerts(stub, user_id=user, detector="failed_login_burst")
        (incident,) = [i for i in everything if alert.alert_id in i.alert_ids]
        mine.append(incident)
        assert user in incident.user_ids and incident.severity >= alert.severity
        (signal,) = [s for s in incident.signals if s.alert_id == alert.alert_id]
        assert signal.anomaly_count == alert.anomaly_count and signal.severity == alert.severity
        if incident.entity_kind == incidents_pb2.ENTITY_KIND_USER:
            assert incident.entity_id == user and [s.alert_id for s in incident.signals] == [
                alert.alert_id
            ]
    assert sum(i.entity_kind == incidents_pb2.ENTITY_KIND_USER for i in mine) >= 2
    # Paging, most recently changed first, through every incident.
    seen, token = [], ""
    while True:
        page = stub.ListIncidents(service_pb2.ListIncidentsRequest(page_size=2, page_token=token))
        assert len(page.incidents) <= 2
        seen.extend(page.incidents)
        token = page.next_page_token
        if not token:
            break
    seqs = [i.seq for i in seen]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == len(seqs)
    assert {i.incident_id for i in mine} <= {i.incident_id for i in seen}
    # Filters.
    by_user = all_incidents(stub, user_id=users[0])
    assert [i.incident_id for i in by_user] == [mine[0].incident_id]
    credential = {i.incident_id for i in all_incidents(stub, tactic="credential-access")}
    assert {i.incident_id for i in mine} <= credential
    assert credential == {i.incident_id for i in all_incidents(stub, tactic="TA0006")}
    assert not {i.incident_id for i in mine} & {
        i.incident_id for i in all_incidents(stub, tactic="TA0010")
    }
    assert all(
        i.status == incidents_pb2.INCIDENT_STATUS_OPEN
        for i in all_incidents(stub, status=incidents_pb2.INCIDENT_STATUS_OPEN)
    )
    high = all_incidents(stub, min_severity=anomalies_pb2.SEVERITY_HIGH)
    assert all(i.severity >= anomalies_pb2.SEVERITY_HIGH for i in high)
    future = datetime.now(UTC) + timedelta(days=1)
    request = service_pb2.ListIncidentsRequest(user_id=users[0])
    request.start_time.FromDatetime(future)
    assert not stub.ListIncidents(request).incidents
    # Refusals name the field.
    for request, field in (
        (service_pb2.ListIncidentsRequest(tactic="lunch"), "tactic"),
        (service_pb2.ListIncidentsRequest(status=9), "status"),
        (service_pb2.ListIncidentsRequest(page_size=-1), "page_size"),
    ):
        with pytest.raises(grpc.RpcError) as info:
            stub.ListIncidents(request)
        assert (
            info.value.code() == grpc.StatusCode.INVALID_ARGUMENT and field in info.value.details()
        )
    token = stub.ListIncidents(service_pb2.ListIncidentsRequest(page_size=1)).next_page_token
    with pytest.raises(grpc.RpcError) as info:
        stub.ListIncidents(
            service_pb2.ListIncidentsRequest(page_size=1, page_token=token, user_id=users[1])
        )
    assert (
        info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        and "page_token" in info.value.details()
    )


def test_acknowledge_then_resolve_cascades_to_alerts(uba_server, takeover):
    stub = uba_server.stub
    (incident,) = story_of(stub, takeover.user_id, "takeover-1")
    acked = stub.AcknowledgeIncident(
        service_pb2.AcknowledgeIncidentRequest(
            incident_id=incident.incident_id, note="calling the user"
        )
    ).incident
    assert acked.status == incidents_pb2.INCIDENT_STATUS_ACKNOWLEDGED and acked.seq > incident.seq
    assert (
        acked.note == "calling the user" and acked.acknowledged_by and acked.acknowledged_at.seconds
    )
    quarantined = [
        a
        for a in stub.ListAnomalies(
            service_pb2.ListAnomaliesRequest(user_id=takeover.user_id)
        ).anomalies
        if a.quarantined
    ]
    with pytest.raises(grpc.RpcError) as info:
        stub.ResolveIncident(service_pb2.ResolveIncidentRequest(incident_id=incident.incident_id))
    assert (
        info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        and "resolution" in info.value.details()
    )
    request = service_pb2.ResolveIncidentRequest(
        incident_id=incident.incident_id,
        resolution=alerts_pb2.RESOLUTION_BENIGN,
        note="new phone, on holiday",
    )
    resolved = stub.ResolveIncident(request).incident
    assert resolved.status == incidents_pb2.INCIDENT_STATUS_RESOLVED
    assert resolved.resolution == alerts_pb2.RESOLUTION_BENIGN and resolved.seq > acked.seq
    assert resolved.score == incident.score  # the story's score stays on record
    alerts = [
        a for a in all_alerts(stub, user_id=takeover.user_id) if a.alert_id in incident.alert_ids
    ]
    assert {(a.status, a.resolution, a.note) for a in alerts} == {
        (alerts_pb2.ALERT_STATUS_RESOLVED, alerts_pb2.RESOLUTION_BENIGN, "new phone, on holiday")
    }
    assert all(a.seq < resolved.seq for a in alerts)
    # Benign re-admits what was quarantined, as resolving the alert does.
    after = {
        a.anomaly_id: a
        for a in stub.ListAnomalies(
            service_pb2.ListAnomaliesRequest(user_id=takeover.user_id)
        ).anomalies
    }
    assert all(not after[a.anomaly_id].quarantined for a in quarantined)
    # Once.
    for call in (
        lambda: stub.ResolveIncident(request),
        lambda: stub.AcknowledgeIncident(
            service_pb2.AcknowledgeIncidentRequest(incident_id=incident.incident_id)
        ),
    ):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert incident.incident_id in info.value.details()
    assert all_incidents(
        stub, user_id=takeover.user_id, status=incidents_pb2.INCIDENT_STATUS_RESOLVED
    )


def test_unknown_incident_is_not_found_naming_it(uba_server):
    stub = uba_server.stub
    for call in (
        lambda: stub.GetIncident(service_pb2.GetIncidentRequest(incident_id="no-such-incident")),
        lambda: stub.AcknowledgeIncident(
            service_pb2.AcknowledgeIncidentRequest(incident_id="no-such-incident")
        ),
        lambda: stub.ResolveIncident(
            service_pb2.ResolveIncidentRequest(
                incident_id="no-such-incident", resolution=alerts_pb2.RESOLUTION_TRUE_POSITIVE
            )
        ),
    ):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert (
            info.value.code() == grpc.StatusCode.NOT_FOUND
            and "no-such-incident" in info.value.details()
        )
    with pytest.raises(grpc.RpcError) as info:
        stub.GetIncident(service_pb2.GetIncidentRequest())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(info.value)
    assert isinstance(status, status_pb2.Status) and "incident_id" in status.message


def test_resolving_the_last_open_alert_takes_the_incident_out_of_the_risk(uba_server):
    stub = uba_server.stub
    user = unique("riskcut")
    stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=burst(user, minutes_ago=5)))
    # Its burst's alert; the module's other failures may make the population
    # detectors see a password attack that the burst is part of, a second
    # alert of the user's in that campaign's incident.
    alerts = all_alerts(stub, user_id=user)
    assert "failed_login_burst" in {a.detector for a in alerts}
    assert all(a.incident_id for a in alerts) and max(a.user_risk for a in alerts) > 0
    for alert in alerts:
        resolved = stub.ResolveAlert(
            service_pb2.ResolveAlertRequest(
                alert_id=alert.alert_id, resolution=alerts_pb2.RESOLUTION_FALSE_POSITIVE
            )
        ).alert
    assert resolved.user_risk == 0  # the last one resolved
    incidents = all_incidents(stub, user_id=user)
    assert {a.incident_id for a in alerts} == {i.incident_id for i in incidents}
    for incident in incidents:
        ours = [s for s in incident.signals if s.alert_id in {a.alert_id for a in alerts}]
        assert incident.status == incidents_pb2.INCIDENT_STATUS_OPEN
        assert ours and not any(s.active for s in ours)
        assert incident.seq < resolved.seq  # the change reached the stream's sequence too


def test_stream_delivers_incident_changes_and_resumes_without_gap_or_duplicate(uba_server):
    stub = uba_server.stub
    prefix = unique("istream")
    start = max([a.seq for a in all_alerts(stub)] + [i.seq for i in all_incidents(stub)] + [0])
    received: list[tuple[str, int, str]] = []
    got_incident = threading.Event()

    def ours(incident) -> bool:
        """The test's users' incidents: their own, or a campaign they are in
        (the module's other failures may wake the population detectors)."""
        return any(u.startswith(prefix) for u in [incident.entity_id, *incident.user_ids])

    def mine(message) -> tuple[str, int, str] | None:
        kind = message.WhichOneof("kind")
        if kind == "alert" and message.alert.user_id.startswith(prefix):
            return kind, message.seq, message.alert.alert_id
        if kind == "incident" and ours(message.incident):
            assert message.seq == message.incident.seq
            return kind, message.seq, message.incident.incident_id
        return None

    def follow(after_seq: int, until) -> int:
        call = stub.StreamAlerts(
            service_pb2.StreamAlertsRequest(after_seq=after_seq, include_incidents=True)
        )
        last = after_seq
        try:
            for message in call:
                item = mine(message)
                if item:
                    received.append(item)
                    if item[0] == "incident":
                        got_incident.set()
                last = message.seq
                if until():
                    break
        finally:
            call.cancel()
        return last

    result: dict = {}
    reader = threading.Thread(
        target=lambda: result.setdefault(
            "last", follow(start, lambda: any(k == "incident" for k, _, _ in received))
        )
    )
    reader.start()
    time.sleep(0.5)
    users = [f"{prefix}-{i}" for i in range(4)]
    addresses = [f"198.51.100.{60 + i}" for i in range(4)]
    stub.RecordActivities(
        service_pb2.RecordActivitiesRequest(events=burst(users[0], ip=addresses[0]))
    )
    assert got_incident.wait(15), "no live incident change arrived"
    reader.join(15)
    # Disconnected: more changes while nobody listens, an acknowledgement among them.
    for user, ip in zip(users[1:], addresses[1:], strict=True):
        stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=burst(user, ip=ip)))
    (first,) = [
        i
        for i in all_incidents(stub, user_id=users[0])
        if any(s.detector == "failed_login_burst" for s in i.signals)
    ]
    stub.AcknowledgeIncident(service_pb2.AcknowledgeIncidentRequest(incident_id=first.incident_id))

    def expected() -> list[int]:
        alerts = [a.seq for a in all_alerts(stub) if a.user_id.startswith(prefix)]
        incidents = [i.seq for i in all_incidents(stub) if ours(i)]
        return sorted(alerts + incidents)

    want = expected()
    follow(result["last"], lambda: received[-1][1] >= want[-1])
    # Each change's latest seq is stored; earlier ones of an item were superseded.
    latest: dict[str, int] = {}
    for _, seq, item_id in received:
        latest[item_id] = seq
    seqs = [s for _, s, _ in received]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # in order, no duplicate
    assert sorted(latest.values()) == want  # no gap
    # Every incident created, and the acknowledgement.
    created = {i.incident_id for i in all_incidents(stub) if ours(i)}
    assert len(created) >= 1 and first.incident_id in created
    assert sum(1 for k, _, _ in received if k == "incident") >= len(created) + 1


def test_subscribers_of_alerts_only_get_no_incident_messages(uba_server):
    stub = uba_server.stub
    user = unique("alerts-only")
    call = stub.StreamAlerts(service_pb2.StreamAlertsRequest(user_id=user))
    try:
        assert next(call).HasField("heartbeat")
        # Hours away from the module's other failures: no campaign to join.
        events = burst(user, minutes_ago=600, ip="198.51.100.99")
        stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=events))
        alert = next(m for m in call if not m.HasField("heartbeat"))
        assert alert.HasField("alert") and alert.seq == alert.alert.seq
        (incident,) = all_incidents(stub, user_id=user)
        # The commit gave the incident its seq before the alert's.
        assert incident.seq < alert.seq
        stub.AcknowledgeIncident(
            service_pb2.AcknowledgeIncidentRequest(incident_id=incident.incident_id)
        )
        stub.AcknowledgeAlert(service_pb2.AcknowledgeAlertRequest(alert_id=alert.alert.alert_id))
        nxt = next(m for m in call if not m.HasField("heartbeat"))
        assert nxt.HasField("alert") and nxt.alert.status == alerts_pb2.ALERT_STATUS_ACKNOWLEDGED
    finally:
        call.cancel()
