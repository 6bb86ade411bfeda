"""sustained_volume: daily totals accumulated over days (CUSUM)."""

import random
from dataclasses import replace
from datetime import timedelta

from uba.detectors.engine import DetectionEngine
from uba.detectors.registry import DetectorRegistry
from uba.domain.anomalies import Severity
from uba.domain.events import ActivityType
from uba.testing.checks import Simulation, only
from uba.testing.synthetic import HISTORY_START, Persona, histories

REGISTRY = DetectorRegistry(entry_points=False)
HISTORY = 42


def engine(**params):
    return DetectionEngine(REGISTRY, only(REGISTRY, "sustained_volume", **params))


def big_day(p: Persona, day, rng, factor):
    """A normal day, plus (factor - 1) times its bytes in extra calls spread
    evenly over working hours."""
    events = p.workday(day, rng)
    if not events:
        return events
    calls = [e for e in events if e.type is ActivityType.API_CALL]
    extra = sum(e.bytes_transferred for e in calls) * (factor - 1)
    n = 40
    for i in range(n):
        at = p.local(day, p.work_start + i * (p.work_end - p.work_start) // n, (i * 7) % 60)
        events.append(
            p.api_call(
                at,
                rng,
                bytes_transferred=int(extra / n),
                api_method="GET",
                api_path="/v1/customers",
            )
        )
    return sorted(events, key=lambda e: e.occurred_at)


def learned(seed=7):
    rng = random.Random(seed)
    alice = Persona(timezone="America/New_York")
    sim = Simulation(engine())
    assert sim.feed(alice.history(rng, days=HISTORY)) == []
    return sim, alice, rng


def test_three_times_the_daily_volume_over_working_hours_is_medium_by_the_third_day():
    sim, alice, rng = learned()
    start = HISTORY_START + timedelta(days=HISTORY)  # a Monday
    by_day = []
    for d in range(5):
        found = sim.feed(big_day(alice, start + timedelta(days=d), rng, 3))
        by_day.append(found)
    assert not [a for a in by_day[0] if a.severity >= Severity.MEDIUM]
    assert [a for a in by_day[0] + by_day[1]], "nothing by the second day"
    medium = [a for a in by_day[0] + by_day[1] + by_day[2] if a.severity >= Severity.MEDIUM]
    assert medium, [(a.severity, a.observed) for d in by_day for a in d]
    a = medium[0]
    assert "CUSUM" in a.reason and "x the usual" in a.reason and a.baseline_mature
    assert "so far today" in a.observed and a.expected.endswith("a day")
    # Each level once per episode, not once per event or per day.
    severities = [a.severity for d in by_day for a in d]
    assert len(severities) == len(set(severities))


def test_the_excess_is_kept_out_of_the_usual_day():
    sim, alice, rng = learned()
    start = HISTORY_START + timedelta(days=HISTORY)
    for d in range(12):  # weekdays and weekends
        sim.feed(big_day(alice, start + timedelta(days=d), rng, 3))
    record = sim.shared.windows("sustained_volume.days", 0)._records["alice"]
    usual_bytes = record[7][0]
    normal = [e.bytes_transferred for e in alice.history(random.Random(1), days=14)]
    per_day = sum(normal) / 10
    assert usual_bytes < 1.5 * per_day


def test_a_single_big_day_and_ordinary_weeks_stay_below_medium():
    rng = random.Random(3)
    found = []
    user_days = 0
    for i in range(30):
        p = Persona(
            user_id=f"u{i}", timezone=("Europe/Berlin", "America/New_York", "Asia/Tokyo")[i % 3]
        )
        sim = Simulation(engine())
        for d in range(70):
            day = HISTORY_START + timedelta(days=d)
            # Now and then a day with twice or three times the usual work.
            events = (
                big_day(p, day, rng, rng.choice((2, 3)))
                if rng.random() < 0.05
                else p.workday(day, rng)
            )
            found += sim.feed(events)
            user_days += day.weekday() < 5
    medium = [a for a in found if a.severity >= Severity.MEDIUM]
    assert len(medium) <= 0.005 * user_days, (
        len(medium),
        user_days,
        [a.observed for a in medium][:3],
    )


def test_quarantined_events_count_but_are_not_learned():
    sim, alice, rng = learned()
    start = HISTORY_START + timedelta(days=HISTORY)
    record = sim.shared.windows("sustained_volume.days", 0)._records["alice"]
    usual = record[7][0]
    # The engine marks a day with quarantined events; simulate by a high-severity
    # detector is not enabled here, so check the day mark after a flagged episode.
    for d in range(3):
        sim.feed(big_day(alice, start + timedelta(days=d), rng, 4))
    sim.feed(alice.workday(start + timedelta(days=3), rng))
    kept_out = [h for h in record[8] if h[3]]
    assert kept_out, record[8][-5:]
    assert record[7][0] <= usual * 1.3


def test_checkpoint_round_trip_keeps_the_days():
    from uba.domain.shared_state import SharedState

    sim, alice, rng = learned()
    restored = SharedState.from_dict(sim.shared.to_dict())
    from uba.detectors.records import records

    store = records(restored, "sustained_volume.days", 100_000)
    assert store.get("alice") == sim.shared.windows("sustained_volume.days", 0).get("alice")


def test_a_team_whose_volume_rises_together_is_low_and_a_lone_rise_is_not():
    """A rollout: four people of one team each move three times their usual
    bytes from the same Monday. Their rises are reported, but once two
    others of the team rose within the week a MEDIUM or HIGH one is LOW; a
    member of another team rising alone the same week keeps MEDIUM."""
    rng = random.Random(11)
    team = [Persona(user_id=f"sales{i}", peer_group="sales") for i in range(4)]
    loner = Persona(user_id="ops0", peer_group="ops")
    sim = Simulation(engine())
    history = histories([*team, loner], rng, days=HISTORY)
    assert sim.feed(history) == []
    start = HISTORY_START + timedelta(days=HISTORY)
    found = []
    for d in range(5):
        day = start + timedelta(days=d)
        events = [e for p in [*team, loner] for e in big_day(p, day, rng, 3)]
        found += sim.feed(sorted(events, key=lambda e: e.occurred_at))
    team_medium = [
        a for a in found if a.user_id.startswith("sales") and a.severity >= Severity.MEDIUM
    ]
    lowered = [a for a in found if "team-wide change" in a.reason]
    assert lowered and all(a.user_id.startswith("sales") for a in lowered)
    assert len(team_medium) <= 2  # at most the first two to rise, before the rest followed
    assert [a for a in found if a.user_id == "ops0" and a.severity >= Severity.MEDIUM]


def test_three_accounts_exfiltrating_in_one_large_team_do_not_excuse_each_other():
    """Three of a team of fifteen pull three times their usual bytes in the
    same week (three victims of one attacker, or three insiders): three of
    fifteen is no team-wide change, so each rise reaches MEDIUM. Before, two
    others rising was enough, whatever the size of the team, and the third
    was LOW ("a team-wide change")."""
    rng = random.Random(11)
    team = [Persona(user_id=f"sales{i:02d}", peer_group="sales") for i in range(15)]
    sim = Simulation(engine())
    history = histories(team, rng, days=HISTORY)
    sim.feed(history)
    start = HISTORY_START + timedelta(days=HISTORY)
    found = []
    for d in range(5):
        day = start + timedelta(days=d)
        events = [
            e
            for i, p in enumerate(team)
            for e in (big_day(p, day, rng, 3) if i < 3 else p.workday(day, rng))
        ]
        found += sim.feed(sorted(events, key=lambda e: e.occurred_at))
    assert [a.reason for a in found if "team-wide change" in a.reason] == []
    alarmed = {a.user_id for a in found if a.severity >= Severity.MEDIUM}
    assert {"sales00", "sales01", "sales02"} <= alarmed


def test_a_mild_steady_rise_accumulates_but_is_low_without_twice_the_volume():
    """1.5 times the usual volume, day after day, adds up past the MEDIUM
    sum (the user is regular, so the spread is narrow), but busier weeks are
    not exfiltration: LOW. Without the effect floor the same days are
    MEDIUM. Three times the volume is MEDIUM by its third day (test above)."""

    def run(**params) -> list:
        rng = random.Random(7)
        alice = Persona(timezone="America/New_York")

        def regular_day(day, factor=1.0):
            """Four sessions of twelve calls, each call moving `factor` times its bytes."""
            return [
                replace(e, bytes_transferred=int(factor * e.bytes_transferred))
                for e in alice.workday(day, rng, sessions=(4, 4), calls=(12, 12))
            ]

        sim = Simulation(engine(**params))
        for d in range(HISTORY):
            sim.feed(regular_day(HISTORY_START + timedelta(days=d)))
        start = HISTORY_START + timedelta(days=HISTORY)
        found = []
        for d in range(10):
            found += sim.feed(regular_day(start + timedelta(days=d), 1.5))
        return found

    unfloored = run(min_ratio=1.0)
    assert [a for a in unfloored if a.severity >= Severity.MEDIUM]
    found = run()
    assert found and all(a.severity is Severity.LOW for a in found), [a.reason for a in found]
    assert "1.4x the usual" in found[0].reason or "1.5x the usual" in found[0].reason


def _day(p: Persona, day, total: int, rng) -> list:
    """`total` bytes in 20 calls over the working day."""
    return [
        p.api_call(
            p.local(day, p.work_start + i * (p.work_end - p.work_start) // 20, 5),
            rng,
            bytes_transferred=total // 20,
            api_method="GET",
            api_path="/v1/customers",
        )
        for i in range(20)
    ]


def _rises(factors, seed):
    """Findings of a user whose weekdays moved about 1 MB each (+-25%) for
    six weeks, on further weekdays at these multiples of 1 MB."""
    rng = random.Random(seed)
    alice = Persona(timezone="Europe/Berlin")
    sim = Simulation(engine())
    usual = [int(1_000_000 * rng.uniform(0.75, 1.25)) for _ in range(HISTORY)]
    day, found = HISTORY_START, []
    for total in usual + [int(1_000_000 * f) for f in factors]:
        while day.weekday() >= 5:
            day += timedelta(days=1)
        found += sim.feed(_day(alice, day, total, rng))
        day += timedelta(days=1)
    return found


def test_one_busy_day_after_busy_days_with_ordinary_ones_between_is_not_a_sustained_rise():
    """2.5x, 1x, 2.5x, 1x, 2.5x, 1x, 2.2x: the sum carries over the ordinary
    days and the last day alone is twice the usual, but the days it
    accumulated over are under twice the usual day: LOW. An attacker who
    alternates four times the usual with ordinary days shows in the whole
    stretch: MEDIUM. Three days in a row at 2.5x are MEDIUM as before."""
    for seed in (7, 8, 9):
        busy = _rises((2.5, 1, 2.5, 1, 2.5, 1, 2.2), seed)
        assert busy and max(a.severity for a in busy) == Severity.LOW, [
            (a.severity, a.observed) for a in busy
        ]
        alternating = _rises((4, 1, 4, 1, 4, 1, 4), seed)
        assert max(a.severity for a in alternating) >= Severity.MEDIUM, [
            (a.severity, a.observed) for a in alternating
        ]
        steady = _rises((2.5, 2.5, 2.5), seed)
        assert max(a.severity for a in steady) >= Severity.MEDIUM
