"""Weak signals combined per burst of activity (session_risk) and dormant
accounts (dormant_account)."""

import random
from datetime import timedelta

from uba.detectors.engine import DetectionEngine
from uba.detectors.registry import DetectorRegistry
from uba.detectors.session_risk import SessionRiskDetector
from uba.domain.anomalies import Severity
from uba.domain.events import ActivityType
from uba.testing.checks import Simulation, only
from uba.testing.synthetic import Persona, day_after_history, failed_tries, histories, population

LOGIN, API = ActivityType.LOGIN_SUCCESS, ActivityType.API_CALL
FAILURE = ActivityType.LOGIN_FAILURE
REGISTRY = DetectorRegistry(entry_points=False)
DAY = day_after_history()
STRANGER = dict(source_ip="203.0.113.80", device_id="unknown-7731", user_agent="Mozilla/5.0 (X11)")


def learned(*names, days=42, **params):
    alice = Persona()
    config = {n: {"enabled": n in names} for n in REGISTRY.names()}
    for n in names:
        config[n].update(params.get(n, {}))
    sim = Simulation(DetectionEngine(REGISTRY, config))
    sim.feed(alice.history(random.Random(7), days=days))
    return sim, alice


def takeover(alice, at, paths=("/v1/exports/run", "/v1/exports/download")):
    events = [alice.event(LOGIN, at, **STRANGER)]
    for i, path in enumerate(paths):
        events.append(
            alice.api_call(
                at + timedelta(minutes=2 + i),
                random.Random(i),
                api_method="GET",
                api_path=path,
                **STRANGER,
            )
        )
    return events


def test_new_network_device_and_unused_endpoints_in_one_session_are_medium_not_three_lows():
    sim, alice = learned("session_risk", "new_ip", "new_device", "api_new_endpoint")
    found = sim.feed(takeover(alice, alice.local(DAY, 10, 0)))
    lows = {a.detector for a in found if a.severity is Severity.LOW}
    assert lows == {"new_device", "new_ip", "api_new_endpoint"}  # each alone is LOW
    (risk,) = [a for a in found if a.detector == "session_risk"]
    assert risk.severity is Severity.MEDIUM and risk.score == 3.0
    assert "new network, new device, first use of endpoints no peer used in 30 days" in risk.reason
    assert "203.0.113.0/24" in risk.reason and "GET /v1/exports/run" in risk.reason


def test_a_country_peers_work_from_is_half_a_point():
    """Alice, on a trip, picks up a new laptop at the New York office: a
    new device, a network new to her, and a country three engineers work
    from (new_country lowers it to LOW for that). 2.5 points: no takeover
    pattern. The same in a country no peer works from is 3 points: MEDIUM."""
    rng = random.Random(4)
    alice = Persona()
    new_york = dict(
        country_code="US",
        city="New York",
        latitude=40.71,
        longitude=-74.01,
        timezone="America/New_York",
    )
    office = [Persona(user_id=f"ny{i}", source_ip=f"192.0.2.{i + 1}", **new_york) for i in range(3)]
    config = {n: {"enabled": n in ("session_risk", "new_country")} for n in REGISTRY.names()}
    for country, expected in (("US", []), ("CA", [Severity.MEDIUM])):
        sim = Simulation(DetectionEngine(REGISTRY, config))
        sim.feed(histories([alice, *office], rng, days=21))
        trip = dict(new_york, country_code=country)
        at = alice.local(day_after_history(days=21), 16, 0)
        found = sim.feed(
            [alice.event(LOGIN, at, device_id="laptop-alice-2", source_ip="192.0.2.200", **trip)]
        )
        risk = [a for a in found if a.detector == "session_risk"]
        assert [a.severity for a in risk] == expected, [a.reason for a in found]


def test_a_sprays_failed_try_brings_no_signal():
    """A password spray tries Alice's account from abroad (a new network
    and country); an hour later she logs in on a new laptop from her usual
    network. One novelty of hers: no takeover pattern."""
    sim, alice = learned("session_risk")
    at = alice.local(DAY, 9, 0)
    spray = alice.event(
        FAILURE, at, source_ip="203.0.113.77", device_id="", country_code="NL", city="Amsterdam"
    )
    own = alice.event(LOGIN, at + timedelta(hours=1), device_id="laptop-alice-2")
    assert sim.feed([spray, own]) == []


def test_privileged_endpoints_and_a_new_country_raise_it_to_high():
    sim, alice = learned("session_risk")
    events = takeover(alice, alice.local(DAY, 10, 0), paths=("/admin/users", "/admin/keys"))
    events[-1].country_code = "RO"
    found = sim.feed(events)
    assert [a.severity for a in found] == [Severity.MEDIUM, Severity.HIGH]
    assert found[-1].quarantined


def test_one_novelty_at_a_time_stays_quiet():
    sim, alice = learned("session_risk")
    at = alice.local(DAY, 10, 0)
    # A new laptop; a hotel network another day; a new endpoint a third day.
    assert sim.feed([alice.event(LOGIN, at, device_id="laptop-alice-2")]) == []
    assert sim.feed([alice.event(LOGIN, at + timedelta(days=1), source_ip="192.0.2.7")]) == []
    assert (
        sim.feed(
            [
                alice.api_call(
                    at + timedelta(days=2),
                    random.Random(1),
                    api_method="GET",
                    api_path="/v1/invoices",
                )
            ]
        )
        == []
    )


def test_a_vpn_change_then_a_laptop_refresh_and_a_rollout_earn_no_alarm():
    """A team moves to a new VPN network on its laptops and starts using a
    new endpoint; two days later it gets new laptops and another new
    endpoint. Each user changes one part of their context at a time: the
    first movers are reported LOW, the rest are the change; no takeover
    pattern."""
    rng = random.Random(4)
    people = list(population(rng, 10))
    # The novelty detectors keep the counts of who uses what.
    sim = Simulation(
        DetectionEngine(
            REGISTRY,
            only(REGISTRY, "session_risk")
            | {
                "new_ip": {"enabled": True},
                "new_device": {"enabled": True},
                "api_new_endpoint": {"enabled": True},
            },
        )
    )
    sim.feed(histories(people, rng, days=21))
    found = []
    day = day_after_history(days=21)
    for step, (device, path) in enumerate(
        ((None, "/v2/timesheets"), ("new-laptop", "/v2/expenses"))
    ):
        for i, p in enumerate(people):
            at = p.local(day + timedelta(days=2 * step), 9, i)
            place = {"source_ip": f"192.0.2.{i + 1}"}
            if device:
                place["device_id"] = f"{device}-{i}"
            found += sim.feed(
                [p.event(LOGIN, at, **place)]
                + [
                    p.api_call(
                        at + timedelta(minutes=1), rng, api_method="POST", api_path=path, **place
                    )
                ]
            )
    assert [a.reason for a in found if a.detector == "session_risk"] == []
    for detector in ("new_ip", "new_device"):
        assert 1 <= len([a for a in found if a.detector == detector]) <= 3, detector


def test_points_rule():
    assert SessionRiskDetector.points(0b0000111) == 3.0
    assert SessionRiskDetector.points(0b0111000) == 2.0  # the strongest endpoint signal only


def test_dormant_account_with_a_new_device_and_admin_endpoints():
    sim, alice = learned("dormant_account")
    back = DAY + timedelta(days=20)
    found = sim.feed([alice.event(LOGIN, alice.local(back, 10, 0))])
    (a,) = found
    assert (
        a.severity is Severity.LOW
        and "active again after 2" in a.reason
        and "usual gaps" in a.reason
    )
    sim2, alice = learned("dormant_account")
    found = sim2.feed(
        [
            alice.event(LOGIN, alice.local(back, 10, 0), device_id="unknown-7731"),
            alice.api_call(
                alice.local(back, 10, 4),
                random.Random(1),
                api_method="GET",
                api_path="/admin/users",
                device_id="unknown-7731",
            ),
        ]
    )
    assert [x.severity for x in found] == [Severity.MEDIUM, Severity.HIGH]
    assert "privileged endpoints" in found[-1].reason


def test_failed_tries_on_a_silent_account_do_not_end_its_silence():
    """A stuffing wave tries the silent account twice; two days later the
    attacker gets in from a new device: still a dormant account active
    again (MEDIUM), and the tries themselves are not "active again"."""
    sim, alice = learned("dormant_account")
    assert sim.feed(failed_tries([alice, alice], DAY + timedelta(days=18))) == []
    back = DAY + timedelta(days=20)
    (a,) = sim.feed([alice.event(LOGIN, alice.local(back, 10, 0), device_id="unknown-7731")])
    assert a.severity is Severity.MEDIUM and "active again after 2" in a.reason


def test_usual_gaps_are_not_dormancy():
    sim, alice = learned("dormant_account")
    # A long weekend and a week of holiday are within what a user does.
    assert sim.feed([alice.event(LOGIN, alice.local(DAY + timedelta(days=9), 10, 0))]) == []


def test_dormant_return_counts_in_session_risk():
    sim, alice = learned("session_risk")
    back = DAY + timedelta(days=20)
    found = sim.feed(
        [
            alice.event(LOGIN, alice.local(back, 10, 0), device_id="unknown-7731"),
            alice.api_call(
                alice.local(back, 10, 4),
                random.Random(1),
                api_method="GET",
                api_path="/admin/users",
                device_id="unknown-7731",
            ),
        ]
    )
    assert found and found[-1].severity is Severity.HIGH and "dormant" in found[-1].reason
