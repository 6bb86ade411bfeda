import random
from datetime import UTC, datetime, timedelta

import pytest

from uba.detectors.base import Detector
from uba.detectors.engine import DetectionEngine
from uba.detectors.registry import DetectorRegistry
from uba.domain.anomalies import Severity
from uba.domain.event_keys import agent_device
from uba.domain.events import ActivityType
from uba.domain.priors import PriorBaselines
from uba.domain.shared_state import SharedState
from uba.domain.user_baseline import UserBaseline
from uba.testing.checks import Simulation
from uba.testing.synthetic import JAKARTA, Persona, day_after_history, population

LOGIN = ActivityType.LOGIN_SUCCESS
DAY = day_after_history()
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def mature_simulation(registry=None, config=None) -> tuple[Simulation, Persona]:
    engine = DetectionEngine(
        registry or DetectorRegistry(entry_points=False), config, clock=lambda: NOW
    )
    sim = Simulation(engine)
    alice = Persona()
    sim.feed(alice.history(random.Random(7)))
    assert sim.baseline("alice").mature
    return sim, alice


def test_normal_activity_raises_almost_nothing():
    sim = Simulation(DetectionEngine(DetectorRegistry(entry_points=False)))
    rng = random.Random(7)
    events = [e for p in population(rng, 10) for e in p.history(rng, days=42)]
    events.sort(key=lambda e: e.occurred_at)
    found = sim.feed(events)
    assert len(found) <= len(events) / 2000, [a.reason for a in found]


def test_anomalies_are_complete_and_one_high_quarantines_the_event():
    sim, alice = mature_simulation()
    sim.feed([alice.event(LOGIN, alice.local(DAY, 2, 50))])
    found = sim.feed(
        [
            alice.event(
                LOGIN,
                alice.local(DAY, 3, 12),
                country_code="BR",
                city="São Paulo",
                latitude=-23.55,
                longitude=-46.63,
                source_ip="203.0.113.80",
            )
        ]
    )
    by_detector = {a.detector: a for a in found}
    assert {"login_time", "new_country", "new_ip", "impossible_travel"} <= set(by_detector)
    travel = by_detector["impossible_travel"]
    assert travel.detected_at == NOW and travel.occurred_at == alice.local(DAY, 3, 12)
    assert travel.detector_version == "1.3" and travel.anomaly_id and not travel.alert_id
    assert len(travel.event_ids) == 2
    assert all(a.quarantined for a in found)
    assert by_detector["new_country"].severity is Severity.MEDIUM


def test_the_user_back_at_work_after_a_strangers_login_is_no_impossible_travel():
    """A stranger's login from Jakarta (no device, a new network: an alarm)
    the morning after alice's last in Berlin is the last login; alice's own
    login on her laptop two hours later is her back at work, not a journey
    from Jakarta. The same login from a new device and network still is."""
    sim, alice = mature_simulation()
    last = alice.local(DAY, 18, 0) - timedelta(days=1)
    sim.feed([alice.event(LOGIN, last)])
    stranger = alice.from_place(LOGIN, last + timedelta(hours=15), "203.0.113.80", JAKARTA)
    found = sim.feed([stranger])
    assert any(a.severity >= Severity.MEDIUM for a in found), [a.reason for a in found]
    assert sim.baseline("alice").last_login.stranger
    other = sim.copy()
    back = sim.feed([alice.event(LOGIN, last + timedelta(hours=17))])
    assert "impossible_travel" not in {a.detector for a in back}
    elsewhere = other.feed(
        [alice.event(LOGIN, last + timedelta(hours=17), device_id="pc-x", source_ip="192.0.2.44")]
    )
    assert "impossible_travel" in {a.detector for a in elsewhere}


def test_quarantined_event_is_not_learned_until_admitted():
    sim, alice = mature_simulation()
    baseline = sim.baseline("alice")
    before = baseline.to_dict()
    sydney = alice.event(
        LOGIN,
        alice.local(DAY, 9, 20),
        country_code="AU",
        city="Sydney",
        latitude=-33.87,
        longitude=151.21,
    )
    sim.feed([alice.event(LOGIN, alice.local(DAY, 9, 0))])
    anomalies = sim.feed([sydney])
    assert any(a.severity >= Severity.HIGH for a in anomalies) and all(
        a.quarantined for a in anomalies
    )
    assert "AU" not in baseline.countries
    # Where it last logged in is a fact, not a habit: it is what the next
    # login is judged against.
    assert baseline.last_login.city == "Sydney"
    assert baseline.observation_count == before["observation_count"] + 1  # only the Berlin login
    # The analyst says: benign (a VPN exit in Sydney). Learn it after all.
    sim.engine.admit(sydney, baseline)
    assert "AU" in baseline.countries and baseline.last_login.city == "Sydney"


def test_low_severity_events_are_learned_at_once():
    sim, alice = mature_simulation()
    found = sim.feed([alice.event(LOGIN, alice.local(DAY, 10, 0), device_id="new-laptop")])
    assert [(a.detector, a.quarantined) for a in found] == [("new_device", False)]
    assert "new-laptop" in sim.baseline("alice").devices


def test_scores_before_learning():
    engine = DetectionEngine(DetectorRegistry(entry_points=False))
    alice = Persona()
    baseline, shared = UserBaseline("alice"), SharedState()
    event = alice.event(LOGIN, alice.local(DAY, 9, 0))
    engine.process(event, baseline, None, shared)
    assert baseline.login_count == 1 and baseline.observation_count == 1


def test_baseline_of_another_user_is_refused():
    engine = DetectionEngine(DetectorRegistry(entry_points=False))
    event = Persona().event(LOGIN, Persona().local(DAY, 9, 0))
    with pytest.raises(ValueError, match="baseline of 'bob'"):
        engine.process(event, UserBaseline("bob"), None, SharedState())


def test_a_baseline_joins_the_prior_when_it_turns_mature():
    engine = DetectionEngine(DetectorRegistry(entry_points=False))
    prior = PriorBaselines()
    sim = Simulation(engine, prior)
    alice = Persona()
    history = alice.history(random.Random(7))
    # Maturity counts active days (five) and logins (five), not 30 logins.
    first_days = [e for e in history if (e.occurred_at - history[0].occurred_at).days < 3]
    sim.feed(first_days)
    assert prior.population.user_count == 0 and not sim.baseline("alice").mature
    sim.feed(history[len(first_days) :])
    assert prior.population.user_count == 1 and prior.groups["engineering"].user_count == 1


class Broken(Detector):
    name = "broken"
    description = "always raises"
    title = "Broken"

    def score_one(self, event, ctx):
        raise RuntimeError("bug")

    def learn_one(self, event, ctx):
        raise RuntimeError("bug")


def test_a_failing_detector_does_not_stop_the_others():
    registry = DetectorRegistry(entry_points=False)
    registry.register("broken", Broken)
    sim, alice = mature_simulation(registry)
    assert sim.engine.failures["broken"] > 0
    found = sim.feed([alice.event(LOGIN, alice.local(DAY, 10, 0), device_id="new-laptop")])
    assert [a.detector for a in found] == ["new_device"]


def test_titles_for_the_alert_policy():
    titles = DetectionEngine(DetectorRegistry(entry_points=False)).titles
    assert (
        titles["new_country"] == "Activity from a new country"
    )  # any event type now, not only logins


def test_attacker_cannot_teach_the_baseline_by_repeating_the_attack():
    sim, alice = mature_simulation()
    rng = random.Random(3)
    for day in range(5):
        start = alice.local(DAY, 10, 0) + timedelta(days=day)
        found = sim.feed(
            [
                alice.api_call(start + timedelta(minutes=i), rng, bytes_transferred=300_000_000)
                for i in range(5)
            ]
        )
        assert any(
            a.detector == "data_volume" and a.severity is Severity.CRITICAL for a in found
        ), day


def test_a_user_whose_events_carry_no_device_is_known_by_their_user_agent():
    """Cloud trails and most identity providers send no device id: for a
    user whose events never carry one, the browser and system the user agent
    names is the device, so another machine's login is a new device (and a
    browser update is not). A user who sends device ids is judged by them."""
    sim = Simulation(DetectionEngine(DetectorRegistry(entry_points=False), clock=lambda: NOW))
    alice = Persona(
        device_id="",
        user_agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/120.0.0.0 Safari/537.36",
    )
    history = [e for e in alice.history(random.Random(7))]
    assert history and not any(e.device_id for e in history)
    sim.feed(history)
    baseline = sim.baseline("alice")
    assert not baseline.sends_device_ids
    assert [d for d in baseline.devices.entries] == [agent_device(alice.user_agent)]
    updated = alice.user_agent.replace("120", "121")
    assert updated != alice.user_agent
    at = alice.local(DAY, 10, 0)
    assert "new_device" not in {
        a.detector for a in sim.copy().feed([alice.event(LOGIN, at, user_agent=updated)])
    }
    other = "Mozilla/5.0 (X11; Linux x86_64; rv:131.0) Gecko/20100101 Firefox/131.0"
    found = sim.copy().feed([alice.event(LOGIN, at, user_agent=other)])
    assert "new_device" in {a.detector for a in found}, [a.reason for a in found]
    # The stored event keeps what was sent.
    assert alice.event(LOGIN, at, user_agent=other).device_id == ""
    # Device ids, once sent, are what the user is known by.
    sim.feed([alice.event(LOGIN, at, device_id="laptop-alice")])
    assert baseline.sends_device_ids
    assert baseline.as_seen(alice.event(LOGIN, at, user_agent=other)).device_id == ""
