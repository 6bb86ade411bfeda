"""Per-detector behaviour on deterministic synthetic data (seeded)."""

import random
from datetime import timedelta

import pytest

from uba.detectors.checks import Simulation, only
from uba.detectors.registry import DetectorRegistry
from uba.detectors.synthetic import Persona, day_after_history, population
from uba.domain.anomalies import Severity
from uba.domain.baselines import PriorBaselines, UserBaseline
from uba.domain.detection import DetectionEngine
from uba.domain.events import ActivityType

LOGIN, FAILURE, API = ActivityType.LOGIN_SUCCESS, ActivityType.LOGIN_FAILURE, ActivityType.API_CALL
REGISTRY = DetectorRegistry(entry_points=False)
DAY = day_after_history()

_learned: dict = {}


def simulation(name, seed=7, **params) -> tuple[Simulation, Persona]:
    """Alice's six weeks learned with only detector `name` enabled."""
    key = (name, seed, tuple(sorted(params.items())))
    if key not in _learned:
        alice = Persona()
        sim = Simulation(DetectionEngine(REGISTRY, only(REGISTRY, name, **params)))
        assert sim.feed(alice.history(random.Random(seed))) is not None
        _learned[key] = (sim, alice)
    sim, alice = _learned[key]
    return sim.copy(), alice


def prior_from_population(users=8, seed=5) -> PriorBaselines:
    rng = random.Random(seed)
    baselines = []
    for persona in population(rng, users):
        b = UserBaseline(persona.user_id)
        for e in persona.history(rng, days=21):
            b.learn(e)
        baselines.append(b)
    return PriorBaselines.build(baselines)


def fresh(name, prior=None, **params) -> Simulation:
    return Simulation(DetectionEngine(REGISTRY, only(REGISTRY, name, **params)), prior)


# -- login time -------------------------------------------------------------------

def test_login_time_flags_3am_for_a_mature_office_worker():
    sim, alice = simulation("login_time")
    assert sim.baseline("alice").mature
    assert sim.copy().feed([alice.event(LOGIN, alice.local(DAY, 10, 30))]) == []
    (anomaly,) = sim.feed([alice.event(LOGIN, alice.local(DAY, 3, 12))])
    assert anomaly.severity is Severity.MEDIUM and anomaly.baseline_mature
    assert anomaly.observed == "Tue 03:12" and anomaly.expected == "weekdays 08-16"
    assert anomaly.reason.startswith("login Tue 03:12 Europe/Berlin; usual weekdays 08-16; 0 of ")


def test_login_time_judges_the_hour_of_the_week_weekend_night_is_medium():
    """A weekday worker's Saturday night login was LOW ("not mature") when
    the hour of the day was all that counted: it is the week that matters."""
    sim, alice = simulation("login_time")
    saturday = DAY + timedelta(days=4)
    assert saturday.weekday() == 5
    (anomaly,) = sim.copy().feed([alice.event(LOGIN, alice.local(saturday, 2, 30))])
    assert anomaly.severity is Severity.MEDIUM and anomaly.observed == "Sat 02:30"
    assert "weekend" in anomaly.reason
    # A first Wednesday at 10:00 borrows from the other weekdays' 10:00.
    wednesday = DAY + timedelta(days=1)
    assert sim.copy().feed([alice.event(LOGIN, alice.local(wednesday, 10, 0))]) == []


def test_login_time_is_local_time_across_daylight_saving_changes():
    """Berlin moved to summer time on 29 March 2026: 08:30 local stays usual
    although it is an hour earlier in UTC."""
    sim, alice = simulation("login_time")
    summer = DAY.replace(month=4, day=7)  # a Tuesday after the change
    assert summer.weekday() == 1
    assert sim.feed([alice.event(LOGIN, alice.local(summer, 8, 30))]) == []


def test_login_time_weekly_rhythm_learned_through_dst_in_new_york():
    """A New York user learned through the March change keeps 09:00 usual."""
    bob = Persona(user_id="bob", timezone="America/New_York", work_start=9, work_end=17)
    sim = fresh("login_time")
    start = DAY.replace(month=2, day=16)  # four weeks before the 8 March change, five after
    sim.feed(bob.history(random.Random(3), start=start, days=63))
    assert sim.baseline("bob").mature
    assert sim.feed([bob.event(LOGIN, bob.local(start + timedelta(days=64), 9, 10))]) == []


def test_login_time_cold_start_without_prior_stays_quiet():
    sim = fresh("login_time")
    alice = Persona()
    assert sim.feed([alice.event(LOGIN, alice.local(DAY, 3, 0))]) == []


def test_login_time_new_user_is_judged_by_the_peer_group_prior():
    sim = fresh("login_time", prior_from_population())
    newbie = Persona(user_id="newbie")
    assert sim.feed([newbie.event(LOGIN, newbie.local(DAY, 10, 0))]) == []
    (anomaly,) = sim.feed([newbie.event(LOGIN, newbie.local(DAY + timedelta(days=1), 3, 0))])
    assert not anomaly.baseline_mature and anomaly.severity is Severity.LOW
    assert "peer group engineering" in anomaly.reason and "user baseline not mature" in anomaly.reason


# -- login frequency ---------------------------------------------------------------

def test_login_frequency_reports_at_the_threshold_and_each_doubling_only():
    sim, alice = simulation("login_frequency")
    found = sim.feed([alice.event(LOGIN, alice.local(DAY, 8, 0) + timedelta(minutes=5 * i)) for i in range(40)])
    assert [a.observed for a in found] == ["8", "15", "29"]
    assert [a.severity for a in found] == [Severity.LOW, Severity.MEDIUM, Severity.HIGH]
    assert "logins today; usual 3.0" in found[0].reason


def test_login_frequency_cold_start_has_no_statistics_to_judge():
    sim = fresh("login_frequency")
    alice = Persona()
    assert sim.feed([alice.event(LOGIN, alice.local(DAY, 8, 0) + timedelta(minutes=i)) for i in range(50)]) == []


# -- failed logins -------------------------------------------------------------------

def test_failed_login_burst_and_success_after_it():
    sim = fresh("failed_login_burst")
    alice = Persona()
    start = alice.local(DAY, 9, 0)
    failures = [alice.event(FAILURE, start + timedelta(seconds=5 * i)) for i in range(20)]
    found = sim.feed(failures)
    assert [a.observed for a in found] == ["10 in 5m", "20 in 5m"]
    assert [a.severity for a in found] == [Severity.MEDIUM, Severity.HIGH]
    (success,) = sim.feed([alice.event(LOGIN, start + timedelta(seconds=120))])
    assert success.severity is Severity.HIGH and "after 20 failed attempts" in success.reason
    # The success closed the burst.
    assert sim.feed([alice.event(LOGIN, start + timedelta(seconds=130))]) == []


def test_failed_logins_spread_beyond_the_window_are_not_a_burst():
    sim = fresh("failed_login_burst")
    alice = Persona()
    start = alice.local(DAY, 9, 0)
    assert sim.feed([alice.event(FAILURE, start + timedelta(minutes=i)) for i in range(30)]) == []


def test_password_spraying_counts_distinct_users_per_address():
    sim = fresh("password_spraying", min_users=5)
    start = Persona().local(DAY, 9, 0)

    def fail(user, i, ip="203.0.113.9"):
        return Persona(user_id=user).event(FAILURE, start + timedelta(seconds=i), source_ip=ip)

    # One user failing often, and users spread over addresses: no spraying.
    assert sim.feed([fail("bob", i) for i in range(20)]) == []
    assert sim.feed([fail(f"u{i}", 30 + i, ip=f"198.51.100.{i}") for i in range(10)]) == []
    found = sim.feed([fail(f"v{i}", 60 + i) for i in range(8)])
    (anomaly,) = found
    assert anomaly.user_id == "v3" and anomaly.severity is Severity.HIGH  # bob + v0..v3 = 5 users
    assert anomaly.quarantined


# -- session duration ----------------------------------------------------------------

def test_session_duration_flags_long_and_short_sessions():
    sim, alice = simulation("session_duration")
    rng = random.Random(1)
    assert sim.copy().feed(alice.session(alice.local(DAY, 10, 0), rng, 2, 70)) == []
    (long,) = sim.copy().feed(alice.session(alice.local(DAY, 10, 0), rng, 2, 14 * 60))
    assert "unusually long" in long.reason and long.observed == "14h 00m"
    (short,) = sim.copy().feed(alice.session(alice.local(DAY, 10, 0), rng, 0, 0.1))
    assert "unusually short" in short.reason


def test_session_duration_one_sided_ignores_short_sessions():
    sim, alice = simulation("session_duration", two_sided=False)
    assert sim.feed(alice.session(alice.local(DAY, 10, 0), random.Random(1), 0, 0.1)) == []


def test_session_duration_cold_start_without_prior_stays_quiet():
    sim = fresh("session_duration")
    alice = Persona()
    assert sim.feed(alice.session(alice.local(DAY, 10, 0), random.Random(1), 1, 20 * 60)) == []


# -- API usage -----------------------------------------------------------------------

def test_api_rate_spike():
    sim, alice = simulation("api_rate")
    rng = random.Random(2)
    start = alice.local(DAY, 10, 0)
    found = sim.feed([alice.api_call(start + timedelta(seconds=i), rng) for i in range(450)])
    assert [a.observed for a in found] == ["100 calls", "200 calls", "400 calls"]


def test_api_new_endpoint_only_for_mature_baselines():
    sim, alice = simulation("api_new_endpoint")
    rng = random.Random(2)
    at = alice.local(DAY, 10, 0)
    assert sim.copy().feed([alice.api_call(at, rng, api_method="GET", api_path="/v1/customers/123456")]) == []
    (anomaly,) = sim.feed([alice.api_call(at, rng, api_method="DELETE", api_path="/admin/users/5")])
    assert anomaly.observed == "DELETE /admin/users/{id}" and anomaly.severity is Severity.LOW
    # Learned now (LOW is not quarantined): the second call is not new.
    assert sim.feed([alice.api_call(at, rng, api_method="DELETE", api_path="/admin/users/6")]) == []
    cold = fresh("api_new_endpoint")
    assert cold.feed([alice.api_call(at, rng, api_method="DELETE", api_path="/admin/users/5")]) == []


def test_data_volume_spike_is_critical_quarantined_and_not_learned():
    sim, alice = simulation("data_volume")
    rng = random.Random(2)
    start = alice.local(DAY, 10, 0)
    spike = [alice.api_call(start + timedelta(minutes=i), rng, bytes_transferred=200_000_000) for i in range(3)]
    found = sim.feed(spike[:1])
    (first,) = found
    assert first.severity is Severity.CRITICAL and first.quarantined
    assert first.reason.startswith("200.0 MB transferred this hour; usual ")
    learned_hours = sim.baseline("alice").bytes_per_hour.count
    # 400 MB is the next doubling of the level; 600 MB is not.
    assert [a.observed for a in sim.feed(spike[1:])] == ["400.0 MB"]
    sim.feed([alice.api_call(start + timedelta(hours=2), rng)])
    assert sim.baseline("alice").bytes_per_hour.count == learned_hours  # the tainted hour was dropped
    # The next day the attacker does it again: the spike was not learned.
    again = sim.feed([alice.api_call(start + timedelta(days=1), rng, bytes_transferred=200_000_000)])
    assert again and again[0].severity is Severity.CRITICAL


def test_api_error_rate_reports_once_per_hour():
    sim, alice = simulation("api_error_rate")
    rng = random.Random(2)
    start = alice.local(DAY, 10, 0)
    found = sim.feed([alice.api_call(start + timedelta(seconds=20 * i), rng, status_code=403) for i in range(60)])
    assert len(found) == 1
    assert found[0].reason.startswith("20 of 20 API calls failed this hour (100%)")
    assert sim.feed([alice.api_call(start + timedelta(hours=1, seconds=i), rng, status_code=200)
                     for i in range(30)]) == []


# -- novelty ---------------------------------------------------------------------------

@pytest.mark.parametrize("name, change", [
    ("new_country", {"country_code": "BR", "city": "São Paulo"}),
    ("new_device", {"device_id": "phone-x"}),
    ("new_ip", {"source_ip": "203.0.113.80"}),
])
def test_novelty_needs_a_mature_baseline(name, change):
    sim, alice = simulation(name)
    at = alice.local(DAY, 10, 0)
    assert sim.copy().feed([alice.event(LOGIN, at)]) == []
    (anomaly,) = sim.feed([alice.event(LOGIN, at, **change)])
    assert anomaly.baseline_mature and anomaly.reason.startswith("first login from new ")
    assert sim.feed([alice.event(LOGIN, at + timedelta(hours=1), **change)]) == []  # learned
    cold = fresh(name)
    newbie = Persona(user_id="newbie")
    assert cold.feed([newbie.event(LOGIN, at + timedelta(days=i)) for i in range(3)]) == []
    assert cold.feed([newbie.event(LOGIN, at + timedelta(days=4), **change)]) == []


# -- impossible travel -----------------------------------------------------------------

def test_impossible_travel():
    sim = fresh("impossible_travel")  # needs no mature baseline, only the last login
    alice = Persona()
    start = alice.local(DAY, 9, 0)
    assert sim.feed([alice.event(LOGIN, start)]) == []
    # Munich two hours later: 500 km, 250 km/h.
    assert sim.feed([alice.event(LOGIN, start + timedelta(hours=2), city="Munich", latitude=48.14,
                                 longitude=11.58)]) == []
    # Geo-IP jitter: 150 km within a minute is ignored (below min_distance_km).
    assert sim.feed([alice.event(LOGIN, start + timedelta(hours=2, minutes=1), latitude=49.0,
                                 longitude=12.9)]) == []
    (anomaly,) = sim.feed([alice.event(LOGIN, start + timedelta(hours=2, minutes=20), country_code="AU",
                                       city="Sydney", latitude=-33.87, longitude=151.21)])
    assert anomaly.severity is Severity.HIGH and anomaly.quarantined
    assert len(anomaly.event_ids) == 2 and "Sydney, AU" in anomaly.reason
    # Missing coordinates: nothing to judge.
    assert sim.feed([alice.event(LOGIN, start + timedelta(hours=3), latitude=None, longitude=None)]) == []


def test_impossible_travel_respects_the_configured_speed():
    sim = fresh("impossible_travel", max_speed_kmh=5000.0)
    alice = Persona()
    start = alice.local(DAY, 9, 0)
    # Berlin to New York (6,400 km) in 2 hours: 3,200 km/h, under the limit.
    assert sim.feed([alice.event(LOGIN, start), alice.event(LOGIN, start + timedelta(hours=2), latitude=40.71,
                                                            longitude=-74.0)]) == []


# -- threshold rules --------------------------------------------------------------------

def test_threshold_rule_by_source_address_across_users():
    rules = [{"name": "scan", "type": "api_call", "count": 5, "window_seconds": 60, "group_by": "source_ip",
              "severity": "low"}]
    sim = fresh("threshold_rules", rules=rules)
    start = Persona().local(DAY, 9, 0)
    events = [Persona(user_id=f"u{i}").event(API, start + timedelta(seconds=i), source_ip="203.0.113.9")
              for i in range(6)]
    (anomaly,) = sim.feed(events)
    assert anomaly.user_id == "u4" and anomaly.severity is Severity.LOW
    assert anomaly.reason == "rule 'scan': 5 api_call events for address 203.0.113.9 within 1m (limit 5)"


@pytest.mark.parametrize("rule, message", [
    ({"name": "x", "type": "login_failure", "count": 3, "window_seconds": 60, "colour": "red"}, "colour"),
    ({"name": "x", "type": "logon", "count": 3, "window_seconds": 60}, "logon"),
    ({"name": "x", "type": "login_failure", "count": 0, "window_seconds": 60}, "count"),
    ({"name": "x", "type": "login_failure", "count": 3, "window_seconds": 60, "group_by": "city"}, "group_by"),
    ({"name": "x", "type": "login_failure", "count": 3, "window_seconds": 60, "severity": "dire"}, "dire"),
    ({"type": "login_failure", "count": 3, "window_seconds": 60}, "name"),
])
def test_bad_threshold_rules_are_refused_with_their_fault_named(rule, message):
    with pytest.raises(ValueError, match=message):
        REGISTRY.build({"threshold_rules": {"rules": [rule]}})
