"""User signals end to end through the gRPC API: a small organisation with
routines learns its baselines, then each compromise pattern raises its
signal at MEDIUM or above while the attack-free routine stays below it."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from support.scenario import personas, send
from uba.detectors.synthetic import day_after_history
from uba.domain.events import ActivityType
from uba.v1 import anomalies_pb2, service_pb2

LOGIN, API = ActivityType.LOGIN_SUCCESS, ActivityType.API_CALL
DAY = day_after_history()
MEDIUM = anomalies_pb2.SEVERITY_MEDIUM


def anomalies(stub, user_id: str, **filters) -> list:
    out, token = [], ""
    while True:
        page = stub.ListAnomalies(service_pb2.ListAnomaliesRequest(user_id=user_id, page_size=1000,
                                                                   page_token=token, **filters))
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
    loud = [(a.detector, a.reason) for p in org for a in anomalies(uba_server.stub, p.user_id)
            if a.severity >= MEDIUM]
    assert not loud


def test_session_continued_from_another_country_device_and_agent(uba_server, org):
    p = org[0]
    start = p.local(DAY, 10, 0)
    send(uba_server.stub, [
        p.event(LOGIN, start, session_id="web-1"),
        p.api_call(start + timedelta(minutes=3), random.Random(1), session_id="web-1"),
        p.api_call(start + timedelta(minutes=9), random.Random(2), session_id="web-1", source_ip="203.0.113.80",
                   country_code="RO", city="Bucharest", device_id="android-7731", user_agent="python-requests/2.31"),
    ])
    (a,) = anomalies(uba_server.stub, p.user_id, detector="session_hijack")
    assert a.severity == anomalies_pb2.SEVERITY_HIGH and a.detector_version
    assert "web-1" in a.reason and "country RO" in a.reason


def test_weekend_night_login_of_a_weekday_worker(uba_server, org):
    p = org[1]
    saturday = DAY + timedelta(days=4)
    send(uba_server.stub, [p.event(LOGIN, p.local(saturday, 2, 40))])
    (a,) = anomalies(uba_server.stub, p.user_id, detector="login_time")
    assert a.severity >= MEDIUM and a.baseline_mature and "weekend" in a.reason
