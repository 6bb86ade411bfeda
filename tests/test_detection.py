"""The detection engine end to end through the gRPC API: a population with
routines learns its baselines; injected attacks raise the expected alerts;
the attack-free history stays under a stated false-alert rate; analysts
work alerts; StreamAlerts delivers live and resumes without gaps."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from support.events import FAILURE, LOGIN, event, unique
from support.scenario import attacks, personas, send
from support.server import ServerProcess

from uba.testing.synthetic import HISTORY_DAYS
from uba.v1 import alerts_pb2, anomalies_pb2, service_pb2

# Its subject depends on the analytics mode: both passes of make test run it.
pytestmark = pytest.mark.both_modes

# Alerts per user-day the attack-free population may raise (all severities).
MAX_FALSE_ALERTS_PER_USER_DAY = 0.05
POPULATION = 24


def all_alerts(stub, **filters) -> list[alerts_pb2.Alert]:
    out, token = [], ""
    while True:
        page = stub.ListAlerts(
            service_pb2.ListAlertsRequest(page_size=1000, page_token=token, **filters)
        )
        out.extend(page.alerts)
        token = page.next_page_token
        if not token:
            return out


@pytest.fixture(scope="module")
def population(uba_server):
    """24 users in three time zones, six weeks of routine each."""
    people = personas(POPULATION)
    rng = random.Random(5)
    history = [e for p in people for e in p.history(rng)]
    send(uba_server.stub, history)
    return people, len(history)


def test_attack_free_population_stays_quiet(uba_server, population):
    people, count = population
    users = {p.user_id for p in people}
    alerts = [a for a in all_alerts(uba_server.stub) if a.user_id in users]
    workdays = HISTORY_DAYS * 5 / 7
    rate = len(alerts) / (len(people) * workdays)
    print(
        f"\n{count} events of {len(people)} users over {HISTORY_DAYS} days: {len(alerts)} alerts, "
        f"{rate:.4f} alerts per user-workday ({[a.detector for a in alerts]})"
    )
    assert rate <= MAX_FALSE_ALERTS_PER_USER_DAY


def test_each_attack_raises_its_alert(uba_server, population):
    people, _ = population
    stub = uba_server.stub
    injected = attacks(people, random.Random(9))
    for _user_id, events in injected.values():
        send(stub, events)
    missed = []
    for detector, (user_id, _) in injected.items():
        raised = {a.detector for a in all_alerts(stub, user_id=user_id)}
        if detector not in raised:
            missed.append((detector, user_id, sorted(raised)))
    assert not missed, missed
    # Every alert explains itself. (Risk has decayed: the history is months old.)
    for alert in all_alerts(stub, detector="new_country"):
        assert alert.reason and alert.title and alert.anomaly_ids


def test_anomalies_carry_their_explanation(uba_server, population):
    stub = uba_server.stub
    page = stub.ListAnomalies(
        service_pb2.ListAnomaliesRequest(detector="impossible_travel", page_size=10)
    )
    assert page.anomalies, "impossible travel raised no anomaly"
    a = page.anomalies[0]
    assert a.detector_version and a.score > 0 and a.severity >= anomalies_pb2.SEVERITY_MEDIUM
    assert "km" in a.reason and a.observed and a.expected and a.event_ids and a.features
    assert a.baseline_mature and a.baseline_observations > 30
    high = stub.ListAnomalies(
        service_pb2.ListAnomaliesRequest(min_severity=anomalies_pb2.SEVERITY_HIGH, page_size=1000)
    ).anomalies
    assert all(x.severity >= anomalies_pb2.SEVERITY_HIGH for x in high)
    assert all(x.quarantined for x in high)  # kept out of the baseline


def test_baseline_is_typed_and_mature(uba_server, population):
    people, _ = population
    p = people[0]
    b = uba_server.stub.GetUserBaseline(
        service_pb2.GetUserBaselineRequest(user_id=p.user_id)
    ).baseline
    assert b.mature and b.timezone == p.timezone and len(b.login_hour_of_week) == 168
    assert sum(b.login_hour_of_week) >= 30 and b.days_covered >= 20
    assert p.country_code in {c.value for c in b.countries}
    assert b.log_session_seconds.count > 0 and b.last_login.source_ip
    with pytest.raises(grpc.RpcError) as info:
        uba_server.stub.GetUserBaseline(
            service_pb2.GetUserBaselineRequest(user_id=unique("nobody"))
        )
    assert info.value.code() == grpc.StatusCode.NOT_FOUND


def test_brute_force_joins_one_alert_and_the_dashboard_ranks_the_user(uba_server):
    stub = uba_server.stub
    user = unique("brute")
    now = datetime.now(UTC)
    burst = [
        event(
            user,
            FAILURE,
            at=now - timedelta(minutes=10) + timedelta(seconds=5 * i),
            source_ip="203.0.113.5",
        )
        for i in range(60)
    ]
    stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=burst))
    alerts = all_alerts(stub, user_id=user, detector="failed_login_burst")
    assert len(alerts) == 1 and alerts[0].anomaly_count >= 2  # repeats joined, not new alerts
    dashboard = stub.GetDashboard(service_pb2.GetDashboardRequest())
    assert dashboard.totals.anomaly_count >= 1 and dashboard.totals.open_alert_count >= 1
    risky = {u.user_id: u for u in dashboard.top_risky_users}
    assert user in risky and risky[user].top_reasons
    assert sum(b.anomaly_count for b in dashboard.hourly) == dashboard.totals.anomaly_count
    assert {d.detector for d in dashboard.anomalies_by_detector} >= {"failed_login_burst"}


def test_suppression_longer_than_ten_years_is_refused_naming_the_field(uba_server):
    """The longest Duration (10,000 years) used to overflow the suppression's
    end and fail the call as UNAVAILABLE (REST 503); now any suppression
    beyond ten years is INVALID_ARGUMENT, and the alert stays as it was."""
    stub = uba_server.stub
    user = unique("suppress")
    now = datetime.now(UTC)
    stub.RecordActivities(
        service_pb2.RecordActivitiesRequest(
            events=[
                event(user, FAILURE, at=now - timedelta(minutes=5) + timedelta(seconds=3 * i))
                for i in range(12)
            ]
        )
    )
    (alert,) = all_alerts(stub, user_id=user)
    request = service_pb2.ResolveAlertRequest(
        alert_id=alert.alert_id, resolution=alerts_pb2.RESOLUTION_BENIGN
    )
    for seconds in (315_576_000_000, 3651 * 86400, -1):
        request.suppress_for.seconds = seconds
        with pytest.raises(grpc.RpcError) as info:
            stub.ResolveAlert(request)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, seconds
        assert "suppress_for" in info.value.details()
    (unchanged,) = all_alerts(stub, user_id=user)
    assert unchanged.status == alerts_pb2.ALERT_STATUS_OPEN and unchanged.seq == alert.seq
    request.suppress_for.seconds = 3650 * 86400
    assert stub.ResolveAlert(request).alert.status == alerts_pb2.ALERT_STATUS_RESOLVED


def test_alert_lifecycle(uba_server):
    stub = uba_server.stub
    user = unique("life")
    now = datetime.now(UTC)
    stub.RecordActivities(
        service_pb2.RecordActivitiesRequest(
            events=[
                event(user, FAILURE, at=now - timedelta(minutes=5) + timedelta(seconds=3 * i))
                for i in range(12)
            ]
        )
    )
    (alert,) = all_alerts(stub, user_id=user)
    risk_before = alert.user_risk
    acked = stub.AcknowledgeAlert(
        service_pb2.AcknowledgeAlertRequest(alert_id=alert.alert_id, note="on it")
    ).alert
    assert (
        acked.status == alerts_pb2.ALERT_STATUS_ACKNOWLEDGED
        and acked.seq > alert.seq
        and acked.note == "on it"
    )
    with pytest.raises(grpc.RpcError) as info:
        stub.ResolveAlert(service_pb2.ResolveAlertRequest(alert_id=alert.alert_id))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT  # a resolution is required
    request = service_pb2.ResolveAlertRequest(
        alert_id=alert.alert_id,
        resolution=alerts_pb2.RESOLUTION_BENIGN,
        note="user forgot the password",
    )
    request.suppress_for.FromTimedelta(timedelta(hours=2))
    resolved = stub.ResolveAlert(request).alert
    assert (
        resolved.status == alerts_pb2.ALERT_STATUS_RESOLVED
        and resolved.resolution == alerts_pb2.RESOLUTION_BENIGN
    )
    assert resolved.user_risk < risk_before and resolved.resolved_at.seconds > 0
    for call, code in (
        (lambda: stub.ResolveAlert(request), grpc.StatusCode.FAILED_PRECONDITION),
        (
            lambda: stub.AcknowledgeAlert(
                service_pb2.AcknowledgeAlertRequest(alert_id=alert.alert_id)
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
        ),
        (
            lambda: stub.AcknowledgeAlert(
                service_pb2.AcknowledgeAlertRequest(alert_id="no-such-alert")
            ),
            grpc.StatusCode.NOT_FOUND,
        ),
        (
            lambda: stub.AcknowledgeAlert(service_pb2.AcknowledgeAlertRequest()),
            grpc.StatusCode.INVALID_ARGUMENT,
        ),
    ):
        with pytest.raises(grpc.RpcError) as info:
            call()
        assert info.value.code() == code
    # Suppressed: another burst within two hours raises no new alert.
    stub.RecordActivities(
        service_pb2.RecordActivitiesRequest(
            events=[
                event(user, FAILURE, at=now - timedelta(minutes=1) + timedelta(seconds=2 * i))
                for i in range(12)
            ]
        )
    )
    assert [a.alert_id for a in all_alerts(stub, user_id=user)] == [alert.alert_id]
    statuses = {
        a.status for a in all_alerts(stub, status=alerts_pb2.ALERT_STATUS_RESOLVED, user_id=user)
    }
    assert statuses == {alerts_pb2.ALERT_STATUS_RESOLVED}


def burst_for(user: str, minutes_ago: int = 30) -> list:
    now = datetime.now(UTC)
    return [
        event(user, FAILURE, at=now - timedelta(minutes=minutes_ago) + timedelta(seconds=3 * i))
        for i in range(11)
    ]


def test_stream_delivers_live_and_resumes_without_gap_or_duplicate(uba_server):
    stub = uba_server.stub
    prefix = unique("stream")
    received: list[alerts_pb2.Alert] = []
    first_batch = threading.Event()

    def follow(after_seq: int, stop_after: int) -> int:
        call = stub.StreamAlerts(service_pb2.StreamAlertsRequest(after_seq=after_seq))
        last = after_seq
        try:
            for message in call:
                if message.HasField("alert") and message.alert.user_id.startswith(prefix):
                    received.append(message.alert)
                    if len(received) >= 3:
                        first_batch.set()
                last = message.seq
                if len([a for a in received]) >= stop_after:
                    break
        finally:
            call.cancel()
        return last

    start = max([a.seq for a in all_alerts(stub)] or [0])
    result: dict = {}
    reader = threading.Thread(target=lambda: result.setdefault("last", follow(start, 3)))
    reader.start()
    time.sleep(0.5)  # subscribed
    users = [f"{prefix}-{i}" for i in range(8)]
    for user in users[:3]:
        stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=burst_for(user)))
    assert first_batch.wait(10), "live alerts did not arrive"
    reader.join(10)
    # Disconnected. More alerts are raised while nobody listens.
    for user in users[3:]:
        stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=burst_for(user)))
    follow(result["last"], 8)
    expected = sorted(a.seq for a in all_alerts(stub) if a.user_id.startswith(prefix))
    seqs = [a.seq for a in received]
    assert seqs == expected, (seqs, expected)  # no gap, no duplicate, in order
    assert {a.user_id for a in received} == set(users)


def test_stream_filters_and_heartbeats(tmp_path):
    server = ServerProcess(tmp_path, extra_args=["--heartbeat-interval", "0.3"]).start()
    try:
        stub = server.stub
        call = stub.StreamAlerts(
            service_pb2.StreamAlertsRequest(min_severity=anomalies_pb2.SEVERITY_CRITICAL)
        )
        first = next(call)
        assert first.HasField("heartbeat") and first.seq == 0
        call.cancel()
        user = unique("filt")
        call = stub.StreamAlerts(service_pb2.StreamAlertsRequest(user_id=user))
        stub.RecordActivities(
            service_pb2.RecordActivitiesRequest(events=burst_for(unique("other")) + burst_for(user))
        )
        alert = next(m for m in call if m.HasField("alert"))
        assert alert.alert.user_id == user and alert.seq == alert.alert.seq
        call.cancel()
        with pytest.raises(grpc.RpcError) as info:
            next(stub.StreamAlerts(service_pb2.StreamAlertsRequest(after_seq=-1)))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        server.stop()


def test_baselines_and_alerts_survive_a_restart(tmp_path, make_database_url):
    for backend in ("sqlite", "postgresql"):
        url = make_database_url(backend)
        data = tmp_path / backend
        server = ServerProcess(data, url).start()
        user = unique("persist")
        now = datetime.now(UTC)
        server.stub.RecordActivities(
            service_pb2.RecordActivitiesRequest(
                events=[
                    event(user, LOGIN, at=now - timedelta(days=d, hours=1), source_ip="10.1.1.1")
                    for d in range(5)
                ]
            )
        )
        before = server.stub.GetUserBaseline(
            service_pb2.GetUserBaselineRequest(user_id=user)
        ).baseline
        server.stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=burst_for(user)))
        alerts = all_alerts(server.stub, user_id=user)
        assert server.stop() == 0
        again = ServerProcess(data, url).start()
        try:
            after = again.stub.GetUserBaseline(
                service_pb2.GetUserBaselineRequest(user_id=user)
            ).baseline
            assert after.observation_count == before.observation_count + 11
            assert list(after.login_hour_of_week) == list(before.login_hour_of_week)
            assert [a.seq for a in all_alerts(again.stub, user_id=user)] == [a.seq for a in alerts]
            # The seq counter continues after the restart.
            again.stub.RecordActivities(
                service_pb2.RecordActivitiesRequest(events=burst_for(unique("next")))
            )
            assert max(a.seq for a in all_alerts(again.stub)) > max(a.seq for a in alerts)
        finally:
            again.stop()


def test_two_processes_share_baselines_and_alerts(tmp_path, make_database_url):
    """Two server processes on one PostgreSQL: no lost baseline updates, and
    an alert raised by one reaches a subscriber of the other."""
    url = make_database_url("postgresql")
    args = ["--alert-poll-interval", "0.2"]
    a = ServerProcess(tmp_path / "a", url, extra_args=args).start()
    b = ServerProcess(
        tmp_path / "b", url, extra_args=args, api_key=a.api_key
    ).start()  # a created the keys
    try:
        user = unique("shared")
        now = datetime.now(UTC)
        for i in range(20):  # alternate processes for one user's events
            server = (a, b)[i % 2]
            server.stub.RecordActivity(
                service_pb2.RecordActivityRequest(
                    event=event(user, LOGIN, at=now - timedelta(hours=20 - i), source_ip="10.9.9.9")
                )
            )
        for server in (a, b):
            baseline = server.stub.GetUserBaseline(
                service_pb2.GetUserBaselineRequest(user_id=user)
            ).baseline
            assert baseline.observation_count == 20

        victim = unique("cross")
        call = b.stub.StreamAlerts(service_pb2.StreamAlertsRequest(user_id=victim))
        a.stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=burst_for(victim)))
        got = next(m for m in call if m.HasField("alert"))
        call.cancel()
        assert got.alert.user_id == victim and got.alert.detector == "failed_login_burst"
        # One alert, not one per process.
        assert len(all_alerts(a.stub, user_id=victim)) == 1
    finally:
        a.stop()
        b.stop()


def test_backfill_rebuilds_baselines_from_imported_history(tmp_path, make_database_url):
    """History imported with detection off, then replayed: the baselines are
    what live ingest would have learned, and replaying twice changes nothing."""
    for backend in ("sqlite", "postgresql"):
        url = make_database_url(backend)
        server = ServerProcess(tmp_path / backend, url, extra_args=["--disable-detection"]).start()
        try:
            stub = server.stub
            (p,) = personas(1, seed=3)
            send(stub, p.history(random.Random(2)))
            with pytest.raises(grpc.RpcError) as info:
                stub.GetUserBaseline(service_pb2.GetUserBaselineRequest(user_id=p.user_id))
            assert info.value.code() == grpc.StatusCode.NOT_FOUND  # nothing learned on import
            request = service_pb2.BackfillRequest()
            request.start_time.FromDatetime(datetime(2025, 12, 1, tzinfo=UTC))
            first = stub.Backfill(request)
            assert first.event_count > 500 and first.user_count == 1 and first.alert_count == 0
            baseline = stub.GetUserBaseline(
                service_pb2.GetUserBaselineRequest(user_id=p.user_id)
            ).baseline
            assert baseline.mature and baseline.observation_count == first.event_count
            second = stub.Backfill(request)
            again = stub.GetUserBaseline(
                service_pb2.GetUserBaselineRequest(user_id=p.user_id)
            ).baseline
            assert second.event_count == first.event_count
            assert again.observation_count == baseline.observation_count
            assert list(again.login_hour_of_week) == list(baseline.login_hour_of_week)
            with pytest.raises(grpc.RpcError) as info:
                stub.Backfill(service_pb2.BackfillRequest())
            assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        finally:
            server.stop()
