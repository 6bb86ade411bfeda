"""Per-detector behaviour on deterministic synthetic data (seeded)."""

import random
from datetime import timedelta

import pytest

from uba.detectors.engine import DetectionEngine
from uba.detectors.registry import DetectorRegistry
from uba.domain.anomalies import Severity, echoed_detectors
from uba.domain.events import ActivityType
from uba.domain.priors import PriorBaselines
from uba.domain.user_baseline import UserBaseline
from uba.testing.checks import Simulation, only
from uba.testing.synthetic import (
    HISTORY_START,
    JAKARTA,
    SYDNEY,
    Persona,
    day_after_history,
    failed_tries,
    histories,
    population,
)

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
    assert (
        "peer group engineering" in anomaly.reason and "user baseline not mature" in anomaly.reason
    )


# -- login frequency ---------------------------------------------------------------


def test_login_frequency_reports_at_the_threshold_and_each_doubling_only():
    sim, alice = simulation("login_frequency")
    found = sim.feed(
        [alice.event(LOGIN, alice.local(DAY, 8, 0) + timedelta(minutes=5 * i)) for i in range(40)]
    )
    assert [a.observed for a in found] == ["8", "15", "29"]
    assert [a.severity for a in found] == [Severity.LOW, Severity.MEDIUM, Severity.HIGH]
    assert "logins today; usual 3.0" in found[0].reason


def test_login_frequency_cold_start_has_no_statistics_to_judge():
    sim = fresh("login_frequency")
    alice = Persona()
    assert (
        sim.feed(
            [alice.event(LOGIN, alice.local(DAY, 8, 0) + timedelta(minutes=i)) for i in range(50)]
        )
        == []
    )


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


def test_slow_password_spraying_from_addresses_that_log_nobody_in():
    """A spray paced under the fast tier (three addresses, one account each
    every six minutes) is MEDIUM within half an hour; a shared egress whose
    users mistype their passwords among their successful logins is not."""
    sim = fresh("password_spraying")
    start = Persona().local(DAY, 9, 0)

    def at(user, minutes, ip, kind=FAILURE):
        return Persona(user_id=user).event(kind, start + timedelta(minutes=minutes), source_ip=ip)

    office = []
    for i in range(12):  # twelve colleagues, one typo each, all behind the office NAT
        office += [
            at(f"staff{i}", 4 * i, "192.0.2.10"),
            at(f"staff{i}", 4 * i + 0.5, "192.0.2.10", LOGIN),
        ]
    assert [a for a in sim.feed(office) if a.severity >= Severity.MEDIUM] == []
    spray = [at(f"acct{n}", 6 * n + k * 0.3, f"203.0.113.{k}") for n in range(20) for k in range(3)]
    found = [
        a
        for a in sim.feed(sorted(spray, key=lambda e: e.occurred_at))
        if a.severity >= Severity.MEDIUM
    ]
    first = min(found, key=lambda a: a.occurred_at)
    assert first.occurred_at - start <= timedelta(minutes=30) and "slow spraying" in first.reason
    assert {a.severity for a in found} <= {Severity.MEDIUM, Severity.HIGH}


# -- session duration ----------------------------------------------------------------


def test_session_duration_flags_long_and_short_sessions():
    sim, alice = simulation("session_duration")
    rng = random.Random(1)
    assert sim.copy().feed(alice.session(alice.local(DAY, 10, 0), rng, 2, 70)) == []
    (long,) = sim.copy().feed(alice.session(alice.local(DAY, 10, 0), rng, 2, 14 * 60))
    assert "unusually long" in long.reason and long.observed == "14h 00m"
    # Short sessions: routine on the usual laptop (they were most of the
    # false MEDIUMs), LOW at most from a device the user never used.
    assert sim.copy().feed(alice.session(alice.local(DAY, 10, 0), rng, 0, 0.1)) == []
    stranger = Persona(device_id="kiosk-3")
    (short,) = sim.copy().feed(
        [
            stranger.event(
                ActivityType.LOGOUT, alice.local(DAY, 10, 0), session_duration=timedelta(seconds=6)
            )
        ]
    )
    assert "unusually short" in short.reason and short.severity is Severity.LOW


def test_session_duration_judged_by_part_of_the_day():
    """Alice's evening sessions are short check-ins; a long one is not."""
    sim, alice = simulation("session_duration")
    rng = random.Random(4)
    evenings = []
    for d in range(10):
        at = alice.local(DAY + timedelta(days=d), 20, 0)
        evenings += alice.session(at, rng, 1, 8)
    assert sim.feed(evenings) == []
    baseline = sim.baseline("alice")
    assert baseline.log_session_seconds_by_part[3].count == 10
    (long,) = sim.feed(alice.session(alice.local(DAY + timedelta(days=11), 20, 0), rng, 1, 90))
    assert "evening sessions" in long.reason and "unusually long" in long.reason


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


def test_api_new_endpoint_first_use_nobody_made_and_learning():
    sim, alice = simulation("api_new_endpoint")
    rng = random.Random(2)
    at = alice.local(DAY, 10, 0)
    assert (
        sim.copy().feed(
            [alice.api_call(at, rng, api_method="GET", api_path="/v1/customers/123456")]
        )
        == []
    )
    # Nobody in the organisation (here: alice alone) ever called it.
    (report,) = sim.copy().feed(
        [alice.api_call(at, rng, api_method="GET", api_path="/v1/reports/yearly")]
    )
    assert report.observed == "GET /v1/reports/yearly" and report.severity is Severity.LOW
    assert "no one in the organisation used it in 30 days" in report.reason
    (anomaly,) = sim.feed([alice.api_call(at, rng, api_method="DELETE", api_path="/admin/users/5")])
    assert anomaly.observed == "DELETE /admin/users/{id}" and anomaly.severity is Severity.HIGH
    assert anomaly.quarantined and "privileged" in anomaly.reason
    # Quarantined: still not learned.
    assert sim.feed([alice.api_call(at, rng, api_method="DELETE", api_path="/admin/users/6")])
    cold = fresh("api_new_endpoint")
    assert (
        cold.feed([alice.api_call(at, rng, api_method="DELETE", api_path="/admin/users/5")]) == []
    )


def _team(sim, rng, sales=6, it=3, days=21):
    """A sales team and an IT team (who administer), three weeks of routine."""
    people = []
    for i in range(sales):
        people.append(
            Persona(
                user_id=f"sales{i}",
                peer_group="sales",
                source_ip=f"198.51.100.{i + 1}",
                device_id=f"laptop-s{i}",
                endpoints=(("GET", "/v1/customers"), ("GET", "/v1/orders"), ("POST", "/v1/orders")),
            )
        )
    for i in range(it):
        people.append(
            Persona(
                user_id=f"it{i}",
                peer_group="it",
                source_ip=f"198.51.100.{50 + i}",
                device_id=f"laptop-i{i}",
                endpoints=(
                    ("GET", "/admin/users"),
                    ("GET", "/v1/orders"),
                    ("POST", "/admin/users/{n}/roles"),
                ),
            )
        )
    sim.feed(histories(people, rng, days=days))
    return people


def test_api_new_endpoint_privileged_use_against_the_peer_group():
    """A sales user calling /admin at normal hours from the usual device:
    no one in sales ever does (IT does): MEDIUM, not LOW."""
    rng = random.Random(3)
    sim = fresh("api_new_endpoint")
    people = _team(sim, rng)
    day = day_after_history(days=21)
    seller, admin = people[0], people[-1]
    (a,) = sim.copy().feed(
        [seller.api_call(seller.local(day, 11, 0), rng, api_method="GET", api_path="/admin/users")]
    )
    assert (
        a.severity is Severity.MEDIUM and "privileged, and no peer used it in 30 days" in a.reason
    )
    assert "0 of 6 in peer group sales" in a.reason
    # The same first use by another IT person is common in their team: LOW.
    newcomer = Persona(user_id="it9", peer_group="it", endpoints=(("GET", "/v1/orders"),))
    sim.feed(newcomer.history(rng, start=day - timedelta(days=14), days=14))
    (b,) = sim.feed(
        [
            newcomer.api_call(
                newcomer.local(day, 11, 0), rng, api_method="GET", api_path="/admin/users"
            )
        ]
    )
    assert b.severity is Severity.LOW and "common in peer group" in b.reason
    assert admin.peer_group == "it"


def test_api_new_endpoint_in_a_new_deployment_is_low_until_someone_is_mature():
    """On a deployment's second day an admin's first /admin call, which no
    one made yet, says little of "30 days": LOW while nobody's baseline is
    mature (no prior yet), saying so; MEDIUM once the organisation has
    mature users (the user's own history still immature)."""
    rng = random.Random(4)
    admin = Persona(user_id="ada", peer_group="admins")
    history = [e for e in admin.history(rng, days=2) if e.type is not API or rng.random() < 0.5]
    call = admin.api_call(
        history[-1].occurred_at + timedelta(minutes=5),
        rng,
        api_method="GET",
        api_path="/admin/settings",
    )
    new = fresh("api_new_endpoint")
    new.feed(history)
    assert not new.baseline("ada").mature_for("api")
    (young,) = new.feed([call])
    assert young.severity is Severity.LOW
    assert "no one's baseline is mature yet" in young.reason
    known = fresh("api_new_endpoint", prior=prior_from_population())
    known.feed(history)
    (older,) = known.feed([call])
    assert older.severity is Severity.MEDIUM and "not mature" in older.reason


def test_api_new_endpoint_rollout_to_a_team_is_low_with_the_reason():
    rng = random.Random(3)
    sim = fresh("api_new_endpoint")
    people = _team(sim, rng)
    day = day_after_history(days=21)
    found = []
    for i, p in enumerate(people[:6]):
        found += sim.feed(
            [p.api_call(p.local(day, 9, 10 + i), rng, api_method="POST", api_path="/v2/quotes")]
        )
    assert all(a.severity is Severity.LOW for a in found)
    assert "rolled out" in found[-1].reason or "common in peer group" in found[-1].reason


def test_learned_peer_groups_when_callers_send_none():
    rng = random.Random(3)
    sim = fresh("api_new_endpoint")
    people = _team(sim, rng)
    for p in people:
        p.peer_group = ""
    sim2 = fresh("api_new_endpoint")
    sim2.feed(histories(people, rng, days=21))
    groups = {p.user_id: sim2.baseline(p.user_id).learned_peer_group for p in people}
    assert (
        len({groups[f"sales{i}"] for i in range(6)}) == 1
        and len({groups[f"it{i}"] for i in range(3)}) == 1
    )
    assert groups["sales0"] != groups["it0"] and groups["sales0"].startswith("learned-")
    day = day_after_history(days=21)
    (a,) = sim2.feed(
        [
            people[0].api_call(
                people[0].local(day, 11, 0), rng, api_method="GET", api_path="/admin/users"
            )
        ]
    )
    assert a.severity is Severity.MEDIUM and f"peer group {groups['sales0']}" in a.reason


def test_data_volume_spike_is_critical_quarantined_and_not_learned():
    sim, alice = simulation("data_volume")
    rng = random.Random(2)
    start = alice.local(DAY, 10, 0)
    spike = [
        alice.api_call(start + timedelta(minutes=i), rng, bytes_transferred=200_000_000)
        for i in range(3)
    ]
    found = sim.feed(spike[:1])
    (first,) = found
    assert first.severity is Severity.CRITICAL and first.quarantined
    assert first.reason.startswith("200.0 MB transferred this hour; usual ")
    learned_hours = sim.baseline("alice").bytes_per_hour.count
    # 400 MB is the next doubling of the level; 600 MB is not.
    assert [a.observed for a in sim.feed(spike[1:])] == ["400.0 MB"]
    sim.feed([alice.api_call(start + timedelta(hours=2), rng)])
    assert (
        sim.baseline("alice").bytes_per_hour.count == learned_hours
    )  # the tainted hour was dropped
    # The next day the attacker does it again: the spike was not learned.
    again = sim.feed(
        [alice.api_call(start + timedelta(days=1), rng, bytes_transferred=200_000_000)]
    )
    assert again and again[0].severity is Severity.CRITICAL


def test_api_error_rate_reports_once_per_hour():
    sim, alice = simulation("api_error_rate")
    rng = random.Random(2)
    start = alice.local(DAY, 10, 0)
    found = sim.feed(
        [alice.api_call(start + timedelta(seconds=20 * i), rng, status_code=403) for i in range(60)]
    )
    assert len(found) == 1
    assert found[0].reason.startswith("20 of 20 API calls failed this hour (100%)")
    assert (
        sim.feed(
            [
                alice.api_call(start + timedelta(hours=1, seconds=i), rng, status_code=200)
                for i in range(30)
            ]
        )
        == []
    )


# -- novelty ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, change",
    [
        ("new_country", {"country_code": "BR", "city": "São Paulo"}),
        ("new_device", {"device_id": "phone-x"}),
        ("new_ip", {"source_ip": "203.0.113.80"}),
    ],
)
def test_novelty_on_mature_and_immature_baselines(name, change):
    sim, alice = simulation(name)
    at = alice.local(DAY, 10, 0)
    assert sim.copy().feed([alice.event(LOGIN, at)]) == []
    (anomaly,) = sim.feed([alice.event(LOGIN, at, **change)])
    assert anomaly.baseline_mature and anomaly.reason.startswith("first login from new ")
    assert sim.feed([alice.event(LOGIN, at + timedelta(hours=1), **change)]) == []  # learned
    # A user still being learned is judged against the organisation, and
    # the reason says so (it used to be silent until 30 logins).
    cold = fresh(name)
    newbie = Persona(user_id="newbie")
    assert cold.feed([newbie.event(LOGIN, at + timedelta(days=i)) for i in range(3)]) == []
    (early,) = cold.feed([newbie.event(LOGIN, at + timedelta(days=4), **change)])
    assert not early.baseline_mature and early.severity is Severity.LOW
    assert "user baseline not mature (3 of 5 active days" in early.reason


@pytest.mark.parametrize(
    "name, change",
    [
        ("new_country", {"country_code": "BR", "city": "São Paulo"}),
        ("new_device", {"device_id": "phone-x"}),
        ("new_ip", {"source_ip": "203.0.113.80"}),
    ],
)
def test_novelty_is_judged_on_every_event_type_carrying_the_field(name, change):
    sim, alice = simulation(name)
    (anomaly,) = sim.feed([alice.api_call(alice.local(DAY, 10, 0), random.Random(1), **change)])
    assert anomaly.reason.startswith("first API call from new ")


def test_new_ip_is_judged_by_network_not_address():
    sim, alice = simulation("new_ip")
    at = alice.local(DAY, 10, 0)
    assert sim.feed([alice.event(LOGIN, at, source_ip="198.51.100.201")]) == []  # same /24
    (anomaly,) = sim.feed([alice.event(LOGIN, at, source_ip="198.51.101.5")])
    assert anomaly.observed == "198.51.101.0/24"
    v6 = [
        alice.event(LOGIN, at + timedelta(minutes=i), source_ip=f"2001:db8:5:{i}::1")
        for i in range(1, 4)
    ]
    assert len(sim.feed(v6)) == 1  # one new /48


def test_new_country_lowered_for_plausible_travel_and_kept_when_device_is_new():
    sim, alice = simulation("new_country")
    # Lisbon the next morning on the known laptop: 2,300 km overnight.
    lisbon = dict(
        country_code="PT", city="Lisbon", latitude=38.72, longitude=-9.14, source_ip="203.0.113.80"
    )
    (trip,) = sim.copy().feed([alice.event(LOGIN, alice.local(DAY, 10, 0), **lisbon)])
    assert trip.severity is Severity.LOW and "plausible travel" in trip.reason
    (odd,) = sim.copy().feed(
        [alice.event(LOGIN, alice.local(DAY, 10, 0), device_id="unknown-42", **lisbon)]
    )
    assert odd.severity is Severity.MEDIUM
    # The same attempt failing: the account is targeted, nobody got in.
    (attempt,) = sim.copy().feed(
        [
            alice.event(
                ActivityType.LOGIN_FAILURE,
                alice.local(DAY, 10, 0),
                device_id="unknown-42",
                **lisbon,
            )
        ]
    )
    assert attempt.severity is Severity.LOW and "a failed login" in attempt.reason


def test_a_stuffing_waves_failed_tries_from_a_country_do_not_make_it_familiar():
    """Failed tries from Romania against every account of a team (a
    stuffing wave) make Romania neither the victims' country nor a country
    their peers "use": the attacker's success from there afterwards is a
    new country (MEDIUM), not an organisation-wide change."""
    rng = random.Random(4)
    people = list(population(rng, 10))
    sim = fresh("new_country")
    sim.feed(histories(people, rng, days=21))
    day = day_after_history(days=21)
    romania = dict(country_code="RO", city="Bucharest", latitude=44.43, longitude=26.10)
    sim.feed(failed_tries(people, day, **romania))
    victim = people[0]
    (success,) = sim.feed(
        [
            victim.event(
                LOGIN, victim.local(day, 3, 30), source_ip="203.0.113.1", device_id="", **romania
            )
        ]
    )
    assert success.severity is Severity.MEDIUM, success.reason
    assert "used by 0 of" in success.reason


def test_organisation_wide_move_to_a_new_network_is_not_an_individual_anomaly():
    """A VPN change: a whole team appears from one new network in a day."""
    rng = random.Random(4)
    people = list(population(rng, 10))
    sim = fresh("new_ip")
    sim.feed(histories(people, rng, days=14))
    moved = [
        p.event(LOGIN, p.local(DAY, 9, i), source_ip=f"192.0.2.{i + 1}")
        for i, p in enumerate(people)
    ]
    found = sim.feed(moved)
    # The first few movers are reported; once three have adopted it (20% of
    # the team), the rest are recognised as the same change.
    assert 1 <= len(found) <= 3 and all(a.severity is Severity.LOW for a in found)


def test_one_attacker_taking_over_a_team_is_not_an_organisation_wide_change():
    """One attacker takes over five accounts of a team of ten, an hour
    apart, each from its network on its own laptop, calling endpoints the
    victims never used. Adopters of a VPN change keep their devices; the
    attacker brings a new network and a new device at once, so nobody
    adopts its network: every takeover is counted in full (MEDIUM+), the
    fifth as much as the first."""
    rng = random.Random(4)
    team = list(population(rng, 10))
    config = only(REGISTRY, "session_risk")
    for name in ("new_ip", "new_device", "api_new_endpoint"):
        config[name] = {"enabled": True}
    sim = Simulation(DetectionEngine(REGISTRY, config))
    sim.feed(histories(team, rng, days=21))
    day = day_after_history(days=21)
    attacker = dict(
        source_ip="203.0.113.45",
        device_id="attacker-laptop",
        user_agent="Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0 Safari/537.36",
    )
    for k, victim in enumerate(team[:5]):
        at = victim.local(day, 10 + k, 0)
        found = sim.feed(
            [victim.event(LOGIN, at, **attacker)]
            + [
                victim.api_call(
                    at + timedelta(minutes=1 + i), rng, api_method="GET", api_path=path, **attacker
                )
                for i, path in enumerate(("/v1/payroll", "/v1/payroll/export"))
            ]
        )
        risk = [a for a in found if a.detector == "session_risk"]
        assert risk and risk[-1].severity >= Severity.MEDIUM, (k, [a.reason for a in found])
        assert "not counted" not in risk[-1].reason
        assert any(a.detector == "new_ip" for a in found), (k, [a.reason for a in found])


# A fleet refresh's new Macs, and an attacker's Mac of the same kind.
NEW_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 15_1) Version/18.1 Safari/605.1.15"
OLDER_MAC = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_4) Version/17.4 Safari/605.1.15"


def _laptop_team(group: str, prefix: str, size: int = 10) -> list[Persona]:
    return [
        Persona(user_id=f"{prefix}{i}", peer_group=group, device_id=f"laptop-{prefix}{i}")
        for i in range(size)
    ]


def _mac_refresh(sim: Simulation, people: list[Persona]) -> None:
    """`people` log in on new Macs from where they work, on DAY."""
    refresh = [
        p.event(LOGIN, p.local(DAY, 9, i), device_id=f"mac-{i}", user_agent=NEW_MAC)
        for i, p in enumerate(people)
    ]
    assert len(sim.feed(refresh)) <= 3  # the first adopters, then the change is recognised


def test_one_teams_laptop_refresh_is_no_change_for_another_team():
    """Half of sales moves to new laptops of one kind in a day (a refresh,
    recognised); the next day an engineer logs in from a new device of that
    kind (an attacker's common browser): not the refresh, reported."""
    rng = random.Random(4)
    sales = _laptop_team("sales", "s")
    engineers = _laptop_team("engineering", "e")
    sim = fresh("new_device")
    sim.feed(histories(sales + engineers, rng, days=14))
    _mac_refresh(sim, sales[:5])
    engineer = engineers[0]
    (found,) = sim.feed(
        [
            engineer.event(
                LOGIN,
                engineer.local(DAY + timedelta(days=1), 10, 0),
                device_id="unknown-7731",
                user_agent=OLDER_MAC,
            )
        ]
    )
    assert "unknown-7731" in found.reason


def test_a_refresh_excuses_new_laptops_on_known_networks_only():
    """Half of engineering moves to new Macs in a day, from the networks it
    works from (recognised: not reported). The next day an attacker logs
    into another engineer's account from its own network on a Mac of the
    same kind: the refresh does not excuse it (a change brings one new
    thing at a time), and the takeover pattern counts the device."""
    rng = random.Random(4)
    engineers = _laptop_team("engineering", "e")
    sim = Simulation(
        DetectionEngine(
            REGISTRY,
            only(REGISTRY, "new_device")
            | {"new_ip": {"enabled": True}, "session_risk": {"enabled": True}},
        )
    )
    sim.feed(histories(engineers, rng, days=14))
    _mac_refresh(sim, engineers[:5])
    victim = engineers[7]
    at = victim.local(DAY + timedelta(days=1), 10, 0)
    where = dict(device_id="mac-attacker", user_agent=OLDER_MAC, source_ip="192.0.2.77")
    found = sim.feed(
        [victim.event(LOGIN, at, **where)]
        + [
            victim.api_call(
                at + timedelta(minutes=k + 1), rng, api_method="GET", api_path=path, **where
            )
            for k, path in enumerate(("/v1/ledger/7", "/v1/employees"))
        ]
    )
    device = [a for a in found if a.detector == "new_device"]
    assert device and "not excused by the change" in device[0].reason, [a.reason for a in found]
    assert "the network is new to the user too" in device[0].reason
    risk = [a for a in found if a.detector == "session_risk"]
    assert risk and "device not counted" not in risk[-1].reason, [a.reason for a in found]


# -- impossible travel -----------------------------------------------------------------


def test_impossible_travel():
    sim = fresh("impossible_travel")  # needs no mature baseline, only the last login
    alice = Persona()
    start = alice.local(DAY, 9, 0)
    assert sim.feed([alice.event(LOGIN, start)]) == []
    # Munich two hours later: 500 km, 250 km/h.
    assert (
        sim.feed(
            [
                alice.event(
                    LOGIN,
                    start + timedelta(hours=2),
                    city="Munich",
                    latitude=48.14,
                    longitude=11.58,
                )
            ]
        )
        == []
    )
    # Geo-IP jitter: 150 km within a minute is ignored (below min_distance_km).
    assert (
        sim.feed(
            [
                alice.event(
                    LOGIN, start + timedelta(hours=2, minutes=1), latitude=49.0, longitude=12.9
                )
            ]
        )
        == []
    )
    (anomaly,) = sim.feed(
        [
            alice.event(
                LOGIN,
                start + timedelta(hours=2, minutes=20),
                country_code="AU",
                city="Sydney",
                latitude=-33.87,
                longitude=151.21,
            )
        ]
    )
    assert anomaly.severity is Severity.HIGH and anomaly.quarantined
    assert len(anomaly.event_ids) == 2 and "Sydney, AU" in anomaly.reason
    # Missing coordinates: nothing to judge.
    assert (
        sim.feed([alice.event(LOGIN, start + timedelta(hours=3), latitude=None, longitude=None)])
        == []
    )


def test_impossible_travel_is_told_once_when_the_user_logs_in_again_at_home():
    """A login from Jakarta the morning after one in Berlin could be a
    flight, and is learned; the user's own login in Berlin two hours later
    is impossible travel (HIGH, quarantined). Their next login there, three
    hours on, is judged against that one, the last login, not against
    Jakarta: it says nothing new."""
    sim = fresh("impossible_travel")
    alice = Persona()
    evening = alice.local(DAY, 18, 0) - timedelta(days=1)
    assert sim.feed([alice.event(LOGIN, evening)]) == []
    morning = evening + timedelta(hours=15)
    assert sim.feed([alice.from_place(LOGIN, morning, "203.0.113.80", JAKARTA)]) == []
    (back,) = sim.feed([alice.event(LOGIN, morning + timedelta(hours=2))])
    assert back.severity is Severity.HIGH and back.quarantined and "Jakarta" in back.reason
    assert sim.feed([alice.event(LOGIN, morning + timedelta(hours=5))]) == []


def test_impossible_travel_after_an_alarm_is_not_repeated_by_the_user_back_at_work():
    """A login from Sydney twenty minutes after one in Berlin is HIGH and
    quarantined, and is the last login: the user's own login in Berlin
    three hours later, on the laptop and network they have had for a day,
    is the user back at work after that alarm. A login in Berlin from a
    device and network new to the user is still judged against Sydney."""
    sim = fresh("impossible_travel")
    alice = Persona()
    start = alice.local(DAY, 9, 0)
    assert sim.feed([alice.event(LOGIN, start - timedelta(days=1))]) == []
    assert sim.feed([alice.event(LOGIN, start)]) == []
    (attacker,) = sim.feed(
        [alice.from_place(LOGIN, start + timedelta(minutes=20), "203.0.113.9", SYDNEY)]
    )
    assert attacker.severity is Severity.HIGH and attacker.quarantined
    elsewhere = sim.copy()
    assert sim.feed([alice.event(LOGIN, start + timedelta(hours=3))]) == []
    (stranger,) = elsewhere.feed(
        [alice.event(LOGIN, start + timedelta(hours=3), device_id="pc-x", source_ip="192.0.2.44")]
    )
    assert stranger.severity is Severity.HIGH and "Sydney" in stranger.reason


def test_impossible_travel_by_two_devices_in_known_countries_is_low():
    """A phone whose carrier places it 500 km away, ten minutes after the
    laptop's login, is two devices, not a traveller: LOW; nothing when the
    user has had the phone for a week. The same device there, or another
    device in a country new to the user, stays HIGH."""
    alice = Persona()
    start = alice.local(DAY, 9, 0)
    munich = dict(city="Munich", latitude=48.14, longitude=11.58)
    sim = fresh("impossible_travel")
    sim.feed([alice.event(LOGIN, start)])
    (phone,) = sim.copy().feed(
        [alice.event(LOGIN, start + timedelta(minutes=10), device_id="phone-alice", **munich)]
    )
    assert phone.severity is Severity.LOW and not phone.quarantined
    assert "two devices, not one traveller" in phone.reason
    # It repeats new_device (when the phone is new): an incident counts it once.
    travel = next(d for d in sim.engine.detectors if d.name == "impossible_travel")
    assert echoed_detectors(phone.features, travel.echoes) == ("new_device",)
    # A phone the user has had for a week: their own two devices, nothing to say.
    known = fresh("impossible_travel")
    known.feed([alice.event(LOGIN, start - timedelta(days=7), device_id="phone-alice")])
    known.feed([alice.event(LOGIN, start)])
    assert (
        known.feed(
            [alice.event(LOGIN, start + timedelta(minutes=10), device_id="phone-alice", **munich)]
        )
        == []
    )
    (same,) = sim.copy().feed([alice.event(LOGIN, start + timedelta(minutes=10), **munich)])
    assert same.severity is Severity.HIGH
    assert echoed_detectors(same.features, travel.echoes) == ()
    (abroad,) = sim.copy().feed(
        [
            alice.event(
                LOGIN,
                start + timedelta(minutes=10),
                device_id="phone-alice",
                country_code="AT",
                city="Vienna",
                latitude=48.21,
                longitude=16.37,
            )
        ]
    )
    assert abroad.severity is Severity.HIGH


def test_impossible_travel_respects_the_configured_speed():
    sim = fresh("impossible_travel", max_speed_kmh=5000.0)
    alice = Persona()
    start = alice.local(DAY, 9, 0)
    # Berlin to New York (6,400 km) in 2 hours: 3,200 km/h, under the limit.
    assert (
        sim.feed(
            [
                alice.event(LOGIN, start),
                alice.event(LOGIN, start + timedelta(hours=2), latitude=40.71, longitude=-74.0),
            ]
        )
        == []
    )


# -- threshold rules --------------------------------------------------------------------


def test_threshold_rule_by_source_address_across_users():
    rules = [
        {
            "name": "scan",
            "type": "api_call",
            "count": 5,
            "window_seconds": 60,
            "group_by": "source_ip",
            "severity": "low",
        }
    ]
    sim = fresh("threshold_rules", rules=rules)
    start = Persona().local(DAY, 9, 0)
    events = [
        Persona(user_id=f"u{i}").event(API, start + timedelta(seconds=i), source_ip="203.0.113.9")
        for i in range(6)
    ]
    (anomaly,) = sim.feed(events)
    assert anomaly.user_id == "u4" and anomaly.severity is Severity.LOW
    assert (
        anomaly.reason
        == "rule 'scan': 5 api_call events for address 203.0.113.9 within 1m (limit 5)"
    )


@pytest.mark.parametrize(
    "rule, message",
    [
        (
            {
                "name": "x",
                "type": "login_failure",
                "count": 3,
                "window_seconds": 60,
                "colour": "red",
            },
            "colour",
        ),
        ({"name": "x", "type": "logon", "count": 3, "window_seconds": 60}, "logon"),
        ({"name": "x", "type": "login_failure", "count": 0, "window_seconds": 60}, "count"),
        (
            {
                "name": "x",
                "type": "login_failure",
                "count": 3,
                "window_seconds": 60,
                "group_by": "city",
            },
            "group_by",
        ),
        (
            {
                "name": "x",
                "type": "login_failure",
                "count": 3,
                "window_seconds": 60,
                "severity": "dire",
            },
            "dire",
        ),
        ({"type": "login_failure", "count": 3, "window_seconds": 60}, "name"),
    ],
)
def test_bad_threshold_rules_are_refused_with_their_fault_named(rule, message):
    with pytest.raises(ValueError, match=message):
        REGISTRY.build({"threshold_rules": {"rules": [rule]}})


def test_sales_users_misusing_admin_one_after_the_other_do_not_excuse_each_other():
    """Three sales users misusing admin endpoints on consecutive days: each
    is MEDIUM with no peer use behind it, since an alarm vouches for no
    one; a user's later admin calls on the same day are not excused by the
    first one either. An ordinary (LOW) first use does count for peers."""
    rng = random.Random(3)
    sim = fresh("api_new_endpoint")
    people = _team(sim, rng)
    day = day_after_history(days=21)
    first = people[0]
    found = sim.feed(
        [
            first.api_call(first.local(day, 11, 0), rng, api_method="GET", api_path="/admin/users"),
            first.api_call(
                first.local(day, 11, 5), rng, api_method="POST", api_path="/admin/users/7/roles"
            ),
            first.api_call(first.local(day, 11, 9), rng, api_method="GET", api_path="/v1/exports"),
        ]
    )
    assert [a.severity for a in found] == [Severity.MEDIUM, Severity.MEDIUM, Severity.LOW]
    for k, other in enumerate(people[1:3], start=1):
        (b,) = [
            a
            for a in sim.feed(
                [
                    other.api_call(
                        other.local(day + timedelta(days=k), 11, 0),
                        rng,
                        api_method="GET",
                        api_path="/admin/users",
                    )
                ]
            )
        ]
        assert b.severity is Severity.MEDIUM and "no peer used it in 30 days" in b.reason
    second = people[1]
    (c,) = sim.feed(
        [
            second.api_call(
                second.local(day + timedelta(days=3), 11, 0),
                rng,
                api_method="GET",
                api_path="/v1/exports",
            )
        ]
    )
    assert "endpoint used by 1 of" in c.reason


def test_login_time_is_medium_only_in_the_users_night():
    """Alice's day starts at 08:00: her night is 23:00-07:00. A first
    evening login (on call, a look at the mail) is LOW; one at 03:00 is
    MEDIUM; one at 06:00, in her night but close to her usual start, LOW."""
    sim, alice = simulation("login_time")
    (evening,) = sim.copy().feed([alice.event(LOGIN, alice.local(DAY, 20, 30))])
    assert evening.severity is Severity.LOW
    assert "lowered: not in the user's night 23-07" in evening.reason
    (night,) = sim.copy().feed([alice.event(LOGIN, alice.local(DAY, 3, 0))])
    assert night.severity is Severity.MEDIUM and "in the user's night 23-07" in night.reason
    (early,) = sim.copy().feed([alice.event(LOGIN, alice.local(DAY, 6, 0))])
    assert early.severity is Severity.LOW
    assert "within two hours of this time of day" in early.reason


def test_login_time_a_login_in_the_users_day_under_way_is_not_judged():
    """Alice's 20:30 login alone is LOW (an evening); six hours after her
    14:00 login the same day it continues her day (a phone, a new session)
    and is not judged; twelve hours after her 08:30 login it is again, and
    so is one 22 minutes after a login at 02:50 (no usual hour)."""
    sim, alice = simulation("login_time")
    (evening,) = sim.copy().feed([alice.event(LOGIN, alice.local(DAY, 20, 30))])
    assert evening.severity is Severity.LOW
    day = [
        alice.event(LOGIN, alice.local(DAY, 14, 0)),
        alice.event(LOGIN, alice.local(DAY, 20, 30)),
    ]
    assert sim.copy().feed(day) == []
    long_day = [
        alice.event(LOGIN, alice.local(DAY, 8, 30)),
        alice.event(LOGIN, alice.local(DAY, 20, 30)),
    ]
    assert [a.severity for a in sim.copy().feed(long_day)] == [Severity.LOW]
    # A day that began at night is no day under way: both logins are judged.
    night = [
        alice.event(LOGIN, alice.local(DAY, 2, 50)),
        alice.event(LOGIN, alice.local(DAY, 3, 12)),
    ]
    first, second = sim.copy().feed(night)
    assert first.severity is Severity.MEDIUM and second.detector == "login_time"


def test_login_time_the_users_own_never_outweighs_the_priors_night():
    """The prior (peers' and the population's habits) weighs as many
    pseudo-logins as `prior_strength`; when it outweighs a user's own
    history, a 03:30 login in the user's night at a time of day they never
    logged in is still MEDIUM: the prior may vouch for an hour only through
    peers who logged in then, not by diluting the user's own evidence. A
    login at 06:30, near the user's usual start, is not MEDIUM."""
    rng = random.Random(7)
    alice = Persona()
    sim = fresh(
        "login_time", prior=prior_from_population(), prior_strength=2000, min_probability=0.0005
    )
    sim.feed(alice.history(rng))
    (night,) = sim.copy().feed([alice.event(LOGIN, alice.local(DAY, 3, 30))])
    assert night.severity is Severity.MEDIUM and "in the user's night" in night.reason, night.reason
    early = sim.copy().feed([alice.event(LOGIN, alice.local(DAY, 6, 30))])
    assert not [a for a in early if a.severity >= Severity.MEDIUM]


def test_login_time_a_peers_alarm_does_not_vouch_for_the_hour():
    """Three sales users log in at 03:00 on a Sunday, a week apart: each is
    MEDIUM. Had the first two counted as peers' evidence, the third would
    have been LOW ("peers logged in at this time of day")."""
    rng = random.Random(4)
    team = [Persona(user_id=f"s{i}", peer_group="sales") for i in range(3)]
    sim = Simulation(DetectionEngine(REGISTRY, only(REGISTRY, "login_time")))
    sim.feed(histories(team, rng))
    sunday = DAY + timedelta(days=(6 - DAY.weekday()) % 7)
    for k, person in enumerate(team):
        (found,) = sim.feed([person.event(LOGIN, person.local(sunday + timedelta(days=7 * k), 3))])
        assert found.severity is Severity.MEDIUM, found.reason
        assert "peers" not in found.reason


def test_login_time_a_few_peers_pages_do_not_make_a_big_teams_hour():
    """In a support team of thirty, two members were paged on a Saturday
    and again on the Sunday night at 01:xx in the last weeks (their second
    nights LOW, so peers' evidence): a member who never works weekends
    logging in on Sunday at 01:30 stays MEDIUM. Had four of them (more than
    a tenth of the team) been up at that hour, it would be the team's: LOW."""
    rng = random.Random(4)
    team = [Persona(user_id=f"s{i}", peer_group="support") for i in range(30)]
    sim = Simulation(DetectionEngine(REGISTRY, only(REGISTRY, "login_time")))
    sim.feed(histories(team, rng))
    sunday = DAY + timedelta(days=(6 - DAY.weekday()) % 7)
    weeks = [
        e for day in range(21) for p in team for e in p.workday(DAY + timedelta(days=day), rng)
    ]
    user = team[-1]
    at = user.local(sunday + timedelta(days=14), 1, 30)

    def pages(members: int) -> Simulation:
        paged = sim.copy()
        nights = []
        for k, person in enumerate(team[:members]):
            night = sunday + timedelta(days=7 * (k % 2))
            nights.append(person.event(LOGIN, person.local(night - timedelta(days=1), 1, 5)))
            nights.append(person.event(LOGIN, person.local(night, 1, 10 + k)))
        paged.feed(sorted(weeks + nights, key=lambda e: e.occurred_at))
        return paged

    (few,) = pages(2).feed([user.event(LOGIN, at)])
    assert few.severity is Severity.MEDIUM, few.reason
    (many,) = pages(4).feed([user.event(LOGIN, at)])
    assert many.severity is Severity.LOW and "lowered: peers in support" in many.reason, many.reason
    assert "of 30 active" in many.reason


def test_victims_of_one_attacker_do_not_excuse_each_other_with_their_country():
    """One attacker takes over three accounts of a team, a day apart, from
    Lagos on its own laptop: each is MEDIUM. Had the first two alarms counted
    as peers' use, the third would have been "lowered: 2 peers work from NG"."""
    rng = random.Random(4)
    team = list(population(rng, 8))
    sim = fresh("new_country")
    sim.feed(histories(team, rng, days=21))
    day = day_after_history(days=21)
    lagos = dict(country_code="NG", city="Lagos", latitude=6.52, longitude=3.38)
    for k, victim in enumerate(team[:3]):
        at = victim.local(day + timedelta(days=k), 11, 0)
        (found,) = sim.feed(
            [victim.event(LOGIN, at, source_ip="203.0.113.7", device_id="attacker", **lagos)]
        )
        assert found.severity is Severity.MEDIUM, found.reason
        assert "used by 0 of" in found.reason


def test_an_event_another_detector_alarmed_on_vouches_for_no_ones_hour():
    """Two sales users log in from Lisbon at 03:00 on a Sunday: on a
    known laptop after a day's travel (new_country: plausible, LOW) but in
    their night (login_time: MEDIUM). Neither login is a peer's evidence
    for anything: a third user's login from Lisbon on an unknown device is
    a new country (MEDIUM), not "2 peers work from PT"."""
    rng = random.Random(4)
    team = [Persona(user_id=f"s{i}", peer_group="sales") for i in range(3)]
    config = only(REGISTRY, "login_time")
    config["new_country"] = {"enabled": True}
    sim = Simulation(DetectionEngine(REGISTRY, config))
    sim.feed(histories(team, rng))
    sunday = DAY + timedelta(days=(6 - DAY.weekday()) % 7)
    lisbon = dict(
        country_code="PT", city="Lisbon", latitude=38.72, longitude=-9.14, source_ip="203.0.113.80"
    )
    for k, person in enumerate(team[:2]):
        found = sim.feed(
            [person.event(LOGIN, person.local(sunday + timedelta(days=7 * k), 3), **lisbon)]
        )
        assert {a.detector: a.severity for a in found} == {
            "login_time": Severity.MEDIUM,
            "new_country": Severity.LOW,
        }, [a.reason for a in found]
    third = team[2]
    at = third.local(sunday + timedelta(days=8), 11)
    (found,) = sim.feed([third.event(LOGIN, at, device_id="unknown-42", **lisbon)])
    assert found.detector == "new_country" and found.severity is Severity.MEDIUM, found.reason


def test_login_time_night_follows_the_users_own_day():
    """The night is the user's own: for someone whose day starts at 12:00
    it is 03:00-11:00, so 04:00 is MEDIUM and 23:30 (their evening) LOW."""
    late = Persona(user_id="late", work_start=12, work_end=20)
    sim = Simulation(DetectionEngine(REGISTRY, only(REGISTRY, "login_time")))
    sim.feed(late.history(random.Random(3)))
    (night,) = sim.copy().feed([late.event(LOGIN, late.local(DAY, 4, 0))])
    assert night.severity is Severity.MEDIUM and "night 03-11" in night.reason, night.reason
    (evening,) = sim.copy().feed([late.event(LOGIN, late.local(DAY, 23, 30))])
    assert evening.severity is Severity.LOW and "not in the user's night" in evening.reason


def _ops_on_call(weeks: int):
    """Seven ops users' routine, then `weeks` weeks of a night rota after it:
    the week's member is paged on Tuesday and Wednesday at 01:xx and on
    Saturday at 03:xx. Returns the simulation, the team and the first
    rota week's Monday."""
    rng = random.Random(4)
    team = [Persona(user_id=f"ops{i}", peer_group="ops") for i in range(7)]
    sim = Simulation(DetectionEngine(REGISTRY, only(REGISTRY, "login_time")))
    sim.feed(histories(team, rng))
    monday = DAY - timedelta(days=DAY.weekday())
    for week in range(weeks):
        holder, start = team[week % len(team)], monday + timedelta(days=7 * week)
        sim.feed(
            [
                holder.event(LOGIN, holder.local(start + timedelta(days=day), hour, 10 * day))
                for day, hour in ((1, 1), (2, 1), (5, 3))
            ]
        )
    return sim, team, monday


def test_login_time_a_team_on_call_covers_nights_one_member_a_week():
    """Ops covers nights on a rota, one member a week. In the fourth week
    the new on-call member's first page, at an hour no peer logged in before,
    is LOW (the team covers nights every week, no other member this week); a
    member not on call who logs in on that Saturday night is MEDIUM, although
    earlier holders logged in on Saturday nights at that hour: this week's
    nights are covered by someone else already."""
    sim, team, monday = _ops_on_call(weeks=3)
    fourth = monday + timedelta(days=21)
    on_call, not_on_call = team[3], team[4]
    (page,) = sim.feed([on_call.event(LOGIN, on_call.local(fourth, 4, 30))])
    assert page.severity is Severity.LOW and "the team covers nights" in page.reason, page.reason
    assert "in 3 of the last 4 weeks" in page.reason, page.reason
    saturday = fourth + timedelta(days=5)
    (night,) = sim.feed([not_on_call.event(LOGIN, not_on_call.local(saturday, 3, 5))])
    assert night.severity is Severity.MEDIUM, night.reason
    assert "1 other up at an hour unusual for them this week" in night.reason, night.reason


def test_login_time_an_evening_page_takes_the_weeks_place():
    """In the rota's fourth week the on-call member has only been paged in
    the evening (LOW: not their night) when another member logs in on
    Saturday night: MEDIUM. Someone up at an hour unusual for them holds
    this week's place, though no one has been up at night yet; regular
    evening work is no finding and takes no place."""
    sim, team, monday = _ops_on_call(weeks=3)
    fourth = monday + timedelta(days=21)
    on_call, not_on_call = team[3], team[4]
    (evening,) = sim.feed([on_call.event(LOGIN, on_call.local(fourth + timedelta(days=1), 21, 40))])
    assert evening.severity is Severity.LOW, evening.reason
    saturday = fourth + timedelta(days=5)
    (night,) = sim.feed([not_on_call.event(LOGIN, not_on_call.local(saturday, 3, 5))])
    assert night.severity is Severity.MEDIUM, night.reason
    assert "not lowered by peers" in night.reason, night.reason


def test_login_time_victims_of_one_night_are_no_rota_of_several():
    """In the rota's third week an attacker logs into two ops accounts on
    Saturday night (MEDIUM: the week's member was up already). How many
    members cover nights at once is the usual week's count, not the
    busiest's: had that week counted, the team would seem to cover nights
    three at a time, and the next week's victim would be LOW."""
    sim, team, monday = _ops_on_call(weeks=3)
    third_saturday = monday + timedelta(days=19)
    for victim in team[3:5]:
        (found,) = sim.feed([victim.event(LOGIN, victim.local(third_saturday, 3, 40))])
        assert found.severity is Severity.MEDIUM, found.reason
    fourth_holder = team[5]
    sim.feed([fourth_holder.event(LOGIN, fourth_holder.local(monday + timedelta(days=22), 1, 5))])
    victim = team[6]
    (found,) = sim.feed([victim.event(LOGIN, victim.local(monday + timedelta(days=26), 3, 40))])
    assert found.severity is Severity.MEDIUM, found.reason
    assert "usually 1 in a week" in found.reason, found.reason


def test_login_time_first_pages_of_a_rota_count_for_it():
    """Ops covers nights on a rota from its first week, and no peer logged
    in at the hours of the pages: every first page is MEDIUM. Those nights
    are the rota all the same (each week's member, on their own device):
    in the fourth week the member on call is LOW."""
    rng = random.Random(5)
    team = [Persona(user_id=f"ops{i}", peer_group="ops") for i in range(7)]
    sim = Simulation(DetectionEngine(REGISTRY, only(REGISTRY, "login_time")))
    sim.feed(histories(team, rng))
    monday = DAY - timedelta(days=DAY.weekday())
    for week, hour in enumerate((0, 2, 4)):  # hours two apart: no peer vouches
        holder = team[week]
        (page,) = sim.feed(
            [holder.event(LOGIN, holder.local(monday + timedelta(days=7 * week + 1), hour, 15))]
        )
        assert page.severity is Severity.MEDIUM, page.reason
    holder = team[3]
    (page,) = sim.feed([holder.event(LOGIN, holder.local(monday + timedelta(days=22), 2, 15))])
    assert page.severity is Severity.LOW and "the team covers nights" in page.reason, page.reason


def test_login_time_a_rota_in_every_week_seen_is_a_rota():
    """A deployment two weeks old: ops members were up at night in both
    weeks it has seen (a first page each, at hours no peer vouches for).
    In the third week the next member's first page is LOW: a rota in every
    week seen (two at least) is as strong as three of four. Finance, with
    a night in one of its two weeks, is no rota."""
    rng = random.Random(7)
    ops = [Persona(user_id=f"ops{i}", peer_group="ops") for i in range(5)]
    sim = Simulation(DetectionEngine(REGISTRY, only(REGISTRY, "login_time")))
    sim.feed(histories(ops, rng, days=14))
    start = HISTORY_START
    first, second, third = ops[:3]
    for holder, day, hour in ((first, 6, 0), (second, 8, 4)):  # a Sunday, a Tuesday
        (page,) = sim.feed(
            [holder.event(LOGIN, holder.local(start + timedelta(days=day), hour, 20))]
        )
        assert page.severity is Severity.MEDIUM, page.reason
    (page,) = sim.feed([third.event(LOGIN, third.local(start + timedelta(days=15), 2, 10))])
    assert page.severity is Severity.LOW and "the team covers nights" in page.reason, page.reason
    assert "in 2 of the last 4 weeks" in page.reason, page.reason

    finance = [Persona(user_id=f"fin{i}", peer_group="finance") for i in range(5)]
    sim = Simulation(DetectionEngine(REGISTRY, only(REGISTRY, "login_time")))
    sim.feed(histories(finance, rng, days=14))
    for person, hour in ((finance[0], 0), (finance[1], 4)):  # one deadline, in the second week
        sim.feed([person.event(LOGIN, person.local(start + timedelta(days=9), hour, 20))])
    (night,) = sim.feed(
        [finance[2].event(LOGIN, finance[2].local(start + timedelta(days=15), 2, 10))]
    )
    assert night.severity is Severity.MEDIUM, night.reason
    assert "in 1 of the last 4 weeks" in night.reason, night.reason


def test_login_time_second_night_of_a_week_on_call_is_low():
    """The week's first page is MEDIUM (no rota seen yet); the same
    member's next night that week, from their own device, is LOW and says
    why; another member's night that week stays MEDIUM."""
    rng = random.Random(6)
    team = [Persona(user_id=f"ops{i}", peer_group="ops") for i in range(5)]
    sim = Simulation(DetectionEngine(REGISTRY, only(REGISTRY, "login_time")))
    sim.feed(histories(team, rng))
    monday = DAY - timedelta(days=DAY.weekday())
    holder, other = team[0], team[1]
    (first,) = sim.feed([holder.event(LOGIN, holder.local(monday + timedelta(days=1), 1, 10))])
    assert first.severity is Severity.MEDIUM, first.reason
    (second,) = sim.feed([holder.event(LOGIN, holder.local(monday + timedelta(days=3), 4, 20))])
    assert second.severity is Severity.LOW, second.reason
    assert "up in their night earlier this week too" in second.reason, second.reason
    (theirs,) = sim.feed([other.event(LOGIN, other.local(monday + timedelta(days=5), 3, 0))])
    assert theirs.severity is Severity.MEDIUM, theirs.reason


def test_login_time_a_late_starters_first_page_is_a_night_of_the_rota():
    """An ops engineer who joined two weeks ago and starts at 10:00, in a
    team that starts at 08:00: his own night begins at 01:00, but his first
    page at 00:41 is MEDIUM, in his night as the detector judges it (his
    hours and his peers'). It is a night of his week on call all the same:
    his next one is LOW."""
    rng = random.Random(8)
    team = [Persona(user_id=f"ops{i}", peer_group="ops") for i in range(5)]
    late = Persona(user_id="late", peer_group="ops", work_start=10, work_end=17)
    sim = Simulation(DetectionEngine(REGISTRY, only(REGISTRY, "login_time")))
    # He joined two weeks ago: his peers' hours still weigh in his prior.
    joined = HISTORY_START + timedelta(days=28)
    sim.feed(
        sorted(
            histories(team, rng) + late.history(rng, start=joined, days=14),
            key=lambda e: e.occurred_at,
        )
    )
    monday = DAY - timedelta(days=DAY.weekday())
    (first,) = sim.feed([late.event(LOGIN, late.local(monday + timedelta(days=1), 0, 41))])
    assert first.severity is Severity.MEDIUM, first.reason
    (second,) = sim.feed([late.event(LOGIN, late.local(monday + timedelta(days=3), 3, 30))])
    assert second.severity is Severity.LOW, second.reason
    assert "up in their night earlier this week too" in second.reason, second.reason


def test_login_time_a_few_nights_in_a_team_are_no_rota():
    """Two finance users worked into one night (a deadline: logins at 00:20
    and 01:40 on a Tuesday); two weeks later a third logs in on a Saturday
    at 03:00: MEDIUM. A team covers nights when its members are up at
    night in three of four weeks, not after one busy night."""
    rng = random.Random(4)
    team = [Persona(user_id=f"fin{i}", peer_group="finance") for i in range(5)]
    sim = Simulation(DetectionEngine(REGISTRY, only(REGISTRY, "login_time")))
    sim.feed(histories(team, rng))
    tuesday = DAY - timedelta(days=DAY.weekday() - 1)
    sim.feed(
        [
            p.event(LOGIN, p.local(tuesday, hour, minute))
            for p in team[:2]
            for hour, minute in ((0, 20), (1, 40))
        ]
    )
    saturday = tuesday + timedelta(days=11)
    (found,) = sim.feed([team[2].event(LOGIN, team[2].local(saturday, 3, 0))])
    assert found.severity is Severity.MEDIUM, found.reason
    assert "covers nights" not in found.reason
