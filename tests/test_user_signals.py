"""User signals end to end through the gRPC API: a small organisation with
routines learns its baselines, then each compromise pattern raises its
signal at MEDIUM or above while the attack-free routine stays below it."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from support.scenario import personas, send

from uba.domain.events import ActivityType
from uba.testing.synthetic import day_after_history
from uba.v1 import anomalies_pb2, service_pb2

# Its subject depends on the analytics mode: both passes of make test run it.
pytestmark = pytest.mark.both_modes

LOGIN, API = ActivityType.LOGIN_SUCCESS, ActivityType.API_CALL
DAY = day_after_history()
MEDIUM = anomalies_pb2.SEVERITY_MEDIUM


def anomalies(stub, user_id: str, **filters) -> list:
    out, token = [], ""
    while True:
        page = stub.ListAnomalies(
            service_pb2.ListAnomaliesRequest(
                user_id=user_id, page_size=1000, page_token=token, **filters
            )
        )
        out.extend(page.anomalies)
        token = page.next_page_token
        if not token:
            return out


@pytest.fixture(scope="module")
def org(uba_server):
    """Twelve users in three time zones and two teams, six weeks of routine."""
    people = personas(12, seed=23)
    rng = random.Random(8)
    send(uba_server.stub, [e for p in people for e in p.history(rng)])
    return people


def test_routine_raises_nothing_at_medium_or_above(uba_server, org):
    loud = [
        (a.detector, a.reason)
        for p in org
        for a in anomalies(uba_server.stub, p.user_id)
        if a.severity >= MEDIUM
    ]
    assert not loud


def test_session_continued_from_another_country_device_and_agent(uba_server, org):
    p = org[0]
    start = p.local(DAY, 10, 0)
    send(
        uba_server.stub,
        [
            p.event(LOGIN, start, session_id="web-1"),
            p.api_call(start + timedelta(minutes=3), random.Random(1), session_id="web-1"),
            p.api_call(
                start + timedelta(minutes=9),
                random.Random(2),
                session_id="web-1",
                source_ip="203.0.113.80",
                country_code="RO",
                city="Bucharest",
                device_id="android-7731",
                user_agent="python-requests/2.31",
            ),
        ],
    )
    (a,) = anomalies(uba_server.stub, p.user_id, detector="session_hijack")
    assert a.severity == anomalies_pb2.SEVERITY_HIGH and a.detector_version
    assert "web-1" in a.reason and "country RO" in a.reason


def test_weekend_night_login_of_a_weekday_worker(uba_server, org):
    p = org[1]
    saturday = DAY + timedelta(days=4)
    send(uba_server.stub, [p.event(LOGIN, p.local(saturday, 2, 40))])
    (a,) = anomalies(uba_server.stub, p.user_id, detector="login_time")
    assert a.severity >= MEDIUM and a.baseline_mature and "weekend" in a.reason


def test_takeover_from_a_new_network_and_device_with_unused_endpoints(uba_server, org):
    """Three weak signals in one session: at least MEDIUM, not three LOWs."""
    p = org[2]
    start = p.local(DAY, 10, 30)
    stranger = dict(source_ip="192.0.2.41", device_id="unknown-laptop-9", session_id="t-1")
    send(
        uba_server.stub,
        [p.event(LOGIN, start, **stranger)]
        + [
            p.api_call(
                start + timedelta(minutes=2 + i),
                random.Random(i),
                api_method="GET",
                api_path=f"/v1/exports/{i}",
                **stranger,
            )
            for i in range(3)
        ],
    )
    (risk,) = anomalies(uba_server.stub, p.user_id, detector="session_risk")
    assert risk.severity >= MEDIUM and "new network, new device" in risk.reason


def test_dormant_account_returns_on_a_new_device_for_admin_endpoints(uba_server, org):
    p = org[3]
    back = DAY + timedelta(days=20)
    send(
        uba_server.stub,
        [
            p.event(LOGIN, p.local(back, 10, 0), device_id="unknown-7731"),
            p.api_call(
                p.local(back, 10, 3),
                random.Random(1),
                api_method="GET",
                api_path="/admin/users",
                device_id="unknown-7731",
            ),
        ],
    )
    found = anomalies(uba_server.stub, p.user_id, detector="dormant_account")
    assert max(a.severity for a in found) == anomalies_pb2.SEVERITY_HIGH
    assert any("days of silence" in a.reason for a in found)


def test_privileged_endpoint_no_peer_ever_used(uba_server, org):
    p = org[4]
    send(
        uba_server.stub,
        [
            p.api_call(
                p.local(DAY, 14, 0),
                random.Random(3),
                api_method="POST",
                api_path="/admin/roles/assign",
            )
        ],
    )
    (a,) = anomalies(uba_server.stub, p.user_id, detector="api_new_endpoint")
    assert a.severity >= MEDIUM and "privileged" in a.reason and a.detector_version == "2.3"
