"""Sessions: the context established at login is checked on every later
event of the session (session_hijack), bounded and checkpointed."""

import json
import random
from datetime import timedelta

from uba.detectors.engine import DetectionEngine
from uba.detectors.registry import DetectorRegistry
from uba.domain.anomalies import Severity
from uba.domain.events import ActivityType
from uba.domain.sessions import SessionContext, SessionStore, compare
from uba.domain.shared_state import SharedState
from uba.testing.checks import Simulation, only
from uba.testing.synthetic import Persona, day_after_history

LOGIN, API, LOGOUT = ActivityType.LOGIN_SUCCESS, ActivityType.API_CALL, ActivityType.LOGOUT
REGISTRY = DetectorRegistry(entry_points=False)
DAY = day_after_history()


def world(**params):
    alice = Persona()
    sim = Simulation(DetectionEngine(REGISTRY, only(REGISTRY, "session_hijack", **params)))
    sim.feed(alice.history(random.Random(7), days=14))
    return sim, alice


def login(alice, minute=0, **kw):
    return alice.event(LOGIN, alice.local(DAY, 10, minute), session_id="sess-1", **kw)


def call(alice, minute, **kw):
    return alice.api_call(
        alice.local(DAY, 10, minute), random.Random(minute), session_id="sess-1", **kw
    )


def test_a_session_continued_from_another_country_device_and_agent_is_high():
    sim, alice = world()
    assert sim.feed([login(alice)]) == []
    (a,) = sim.feed(
        [
            call(
                alice,
                5,
                source_ip="203.0.113.80",
                country_code="RO",
                device_id="android-7731",
                user_agent="curl/8.1",
            )
        ]
    )
    assert a.detector == "session_hijack" and a.severity is Severity.HIGH and a.quarantined
    assert "sess-1" in a.reason and "country RO" in a.reason and "established with" in a.reason
    assert "address 198.51.100.7" in a.expected
    # Reported once per level, not on every later event of the session.
    assert (
        sim.feed(
            [
                call(
                    alice,
                    6,
                    source_ip="203.0.113.80",
                    country_code="RO",
                    device_id="android-7731",
                    user_agent="curl/8.1",
                )
            ]
        )
        == []
    )


def test_any_event_type_is_checked_and_one_change_beyond_the_network_is_medium():
    sim, alice = world()
    sim.feed([login(alice)])
    (a,) = sim.feed(
        [
            alice.event(
                LOGOUT,
                alice.local(DAY, 11, 0),
                session_id="sess-1",
                source_ip="203.0.113.80",
                device_id="android-7731",
                session_duration=timedelta(hours=1),
            )
        ]
    )
    assert a.severity is Severity.MEDIUM and "logout" in a.reason


def test_mobile_address_changes_and_agent_updates_are_tolerated():
    sim, alice = world()
    sim.feed([login(alice)])
    # Same /24, then another /24 of the same /16, then an agent update from the same network.
    assert (
        sim.feed(
            [
                call(alice, 1, source_ip="198.51.100.200"),
                call(alice, 2, source_ip="198.51.7.9"),
                call(alice, 3, user_agent="Mozilla/5.1"),
            ]
        )
        == []
    )
    # Another network, nothing else changed (roaming inside the country): tolerated.
    assert sim.feed([call(alice, 4, source_ip="192.0.2.44")]) == []


def test_events_without_session_or_context_are_not_refused_or_judged():
    sim, alice = world()
    sim.feed([login(alice)])
    assert (
        sim.feed(
            [
                alice.api_call(
                    alice.local(DAY, 10, 5),
                    random.Random(1),
                    source_ip="203.0.113.80",
                    country_code="RO",
                    device_id="x",
                )
            ]
        )
        == []
    )
    assert (
        sim.feed([call(alice, 6, source_ip="", country_code="", device_id="", user_agent="")]) == []
    )
    assert not sim.engine.failures


def test_sessions_expire_after_idle_time_and_are_capped():
    shared = SharedState()
    store = SessionStore(shared, "session_hijack", idle_seconds=3600, max_sessions=3)
    alice = Persona()
    events = [alice.event(LOGIN, alice.local(DAY, 9, i), session_id=f"s{i}") for i in range(5)]
    for e in events:
        store.put(e, e.occurred_at.timestamp(), SessionContext.of(e))
    assert len(store.windows) == 3  # the two least recently active went
    assert store.get(events[0], events[4].occurred_at.timestamp()) is None
    last = events[4]
    assert store.get(last, last.occurred_at.timestamp() + 1800) == SessionContext.of(last)
    assert store.get(last, last.occurred_at.timestamp() + 3601) is None


def test_session_state_survives_a_checkpoint():
    sim, alice = world()
    sim.feed([login(alice)])
    restored = SharedState.from_dict(json.loads(json.dumps(sim.shared.to_dict())))
    sim.shared = restored
    (a,) = sim.feed(
        [call(alice, 5, source_ip="203.0.113.80", country_code="RO", device_id="android-7731")]
    )
    assert a.severity is Severity.HIGH


def test_compare_only_fields_both_carry():
    alice = Persona()
    ctx = SessionContext(source_ip="198.51.100.7", device_id="", user_agent="", country_code="DE")
    change = compare(
        ctx, alice.event(API, alice.local(DAY, 10, 0), device_id="other", country_code="")
    )
    assert not change.device and not change.country and not change.network
