"""Distribution shift detector: the tests, their guards, and the evidence
that it finds gradual changes no basic detector reports (printed, pytest -s)."""

import collections
import math
import random
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

pytest.importorskip("numpy")
pytest.importorskip("scipy")

from uba.detectors.distribution_shift import DistributionShiftDetector, chi_square  # noqa: E402
from uba.detectors.engine import DetectionEngine  # noqa: E402
from uba.detectors.registry import ENHANCED_DETECTORS, DetectorRegistry  # noqa: E402
from uba.domain.anomalies import Severity  # noqa: E402
from uba.domain.events import ActivityType  # noqa: E402
from uba.testing import checks  # noqa: E402
from uba.testing.checks import Simulation  # noqa: E402
from uba.testing.synthetic import HISTORY_START, Persona, population  # noqa: E402

LOGIN_FAILURE = ActivityType.LOGIN_FAILURE

NAME = "distribution_shift"
REGISTRY = DetectorRegistry(entry_points=False)
TZ = ZoneInfo("Europe/Berlin")


def engine(**params) -> DetectionEngine:
    return DetectionEngine(REGISTRY, {NAME: {"enabled": True, **params}})


def drifted_days(
    persona: Persona, start, days: int, rng: random.Random, *, earlier_by=1, sessions=6, longer=2.2
):
    """Every day (weekends too) from `earlier_by` hours before the usual
    start, `sessions` sessions `longer` times the usual length: each day
    slightly off, none far enough for a basic detector."""
    events = []
    first = persona.work_start - earlier_by
    slot = (persona.work_end - first) * 60 / sessions
    for d in range(days):
        day = start + timedelta(days=d)
        for i in range(sessions):
            begin = first * 60 + i * slot + rng.uniform(0, slot / 3)
            minutes = min(longer * math.exp(rng.gauss(math.log(60), 0.3)), slot * 0.9)
            at = persona.local(day, int(begin // 60), int(begin % 60), rng.randint(0, 59))
            events += persona.session(at, rng, rng.randint(5, 15), minutes)
    return events


def test_conformance():
    checks.check_attributes(DistributionShiftDetector)
    checks.check_params_round_trip(DistributionShiftDetector)
    checks.check_params_round_trip(DistributionShiftDetector, {"alpha": 0.01, "recent_days": 3.0})
    with pytest.raises(ValueError, match="history_days"):
        DistributionShiftDetector(recent_days=30.0, history_days=20.0).check_params()


def test_chi_square_is_asymptotic_for_large_counts_and_simulated_for_small():
    from scipy.stats import chi2_contingency

    recent, reference = [0] * 24, [0] * 24
    for hour, a, b in ((8, 60, 300), (9, 80, 420), (13, 50, 310), (14, 45, 200)):
        recent[hour], reference[hour] = a, b
    statistic, p = chi_square(recent, reference, 0.001)
    expected = chi2_contingency([[60, 80, 50, 45], [300, 420, 310, 200]], correction=False)
    assert statistic == pytest.approx(expected.statistic) and p == pytest.approx(expected.pvalue)
    # Small counts: 5 of 20 recent logins at an hour none of 94 earlier ones used.
    recent, reference = [0] * 24, [0] * 24
    for hour, a, b in ((2, 5, 0), (8, 5, 30), (10, 3, 20), (13, 4, 25), (15, 3, 19)):
        recent[hour], reference[hour] = a, b
    statistic, p = chi_square(recent, reference, 0.001)
    assert p < 0.001 and chi_square(recent, reference, 0.001) == (statistic, p)  # seeded
    recent[2] = 0
    recent[8] = 10
    assert chi_square(recent, reference, 0.001)[1] > 0.01


def exact_p(recent: list[int], reference: list[int]) -> float:
    """The permutation p-value the simulation estimates, by enumeration: the
    probability, with both margins fixed, of a table whose chi-square
    statistic is at least the observed one."""
    columns = [i for i in range(len(recent)) if recent[i] + reference[i]]
    totals = [recent[i] + reference[i] for i in columns]
    n, total = sum(recent), sum(totals)
    expected = [t * n / total for t in totals]

    def statistic(row):
        return sum(
            (x - e) ** 2 * (1 / e + 1 / (t - e))
            for x, e, t in zip(row, expected, totals, strict=True)
        )

    observed = statistic([recent[i] for i in columns])
    p = 0.0

    def walk(j, left, row, weight):
        nonlocal p
        if j == len(totals) - 1:
            if left <= totals[j]:
                full = row + [left]
                if statistic(full) >= observed * (1 - 1e-12):
                    p += weight * math.comb(totals[j], left)
            return
        for x in range(min(left, totals[j]) + 1):
            walk(j + 1, left - x, row + [x], weight * math.comb(totals[j], x))

    walk(0, n, [], 1)
    return p / math.comb(total, n)


def test_sparse_chi_square_p_is_the_permutation_p_and_not_the_asymptotic_one():
    """On tables too sparse for the chi-square distribution, p is simulated:
    below the threshold from all the draws, close to the exact permutation
    p-value; above it, possibly from fewer draws, but still the verdict
    (and roughly the value) of the exact test."""
    from scipy.stats import chi2

    # 6 of 18 recent logins at 03:00, an hour none of 75 earlier ones used.
    recent, reference = [0] * 24, [0] * 24
    for hour, a, b in ((3, 6, 0), (8, 5, 30), (10, 3, 20), (13, 4, 25)):
        recent[hour], reference[hour] = a, b
    threshold = 1e-4
    statistic, p = chi_square(recent, reference, threshold)
    exact = exact_p(recent, reference)
    draws = 50_000  # 5 / threshold
    assert exact < threshold and p < threshold
    assert (1 + draws) * p == pytest.approx(round((1 + draws) * p))  # a count over all the draws
    assert p == pytest.approx(exact, abs=4 * math.sqrt(exact / draws) + 1 / draws)
    assert chi2.sf(statistic, 3) < exact / 3  # the chi-square distribution overstates the evidence
    # An ordinary week: the verdict is known after a few tables.
    recent[3], recent[8] = 0, 11
    statistic, p = chi_square(recent, reference, threshold)
    exact = exact_p(recent, reference)
    assert p >= threshold and exact > 0.1 and p == pytest.approx(exact, abs=0.2)
    assert chi_square(recent, reference, threshold) == (statistic, p)  # seeded


def test_stopping_early_keeps_the_verdicts_of_the_full_simulation(monkeypatch):
    """Random sparse weeks against random histories: the verdict at the
    threshold is the exact test's, with the early stop as without it,
    whenever the exact p is clearly off the threshold. (Closer, any
    simulation of 5 / threshold tables may go either way: at a fifth of the
    threshold, one table as extreme is expected, and 5 put p above it.)"""
    from uba.detectors import distribution_shift

    rng = random.Random(5)
    threshold, cases = 0.001, []
    for _ in range(60):
        hours = rng.sample(range(24), rng.randint(3, 6))
        recent, reference = [0] * 24, [0] * 24
        for h in hours:
            reference[h] = rng.randint(0, 30)
            recent[h] = rng.randint(0, 6)
        if sum(recent) < 3 or sum(1 for h in hours if recent[h] + reference[h]) < 2:
            continue
        exact = exact_p(recent, reference)
        if threshold / 20 < exact < threshold * 3:
            continue
        cases.append((recent, reference, exact))
    assert len(cases) >= 20 and any(exact < threshold for *_, exact in cases)
    stopped = [chi_square(r, ref, threshold)[1] < threshold for r, ref, _ in cases]
    monkeypatch.setattr(distribution_shift, "_FIRST_DRAWS", 10**9)  # one round of every draw
    full = [chi_square(r, ref, threshold)[1] < threshold for r, ref, _ in cases]
    assert stopped == full == [exact < threshold for *_, exact in cases]


def test_a_week_of_night_logins_shifts_the_hour_histogram():
    rng = random.Random(3)
    alice = Persona()
    sim = Simulation(engine())
    sim.feed(alice.history(rng))
    start = HISTORY_START + timedelta(days=42)
    nights = []  # a week of ordinary days, each with a session at night
    for d in range(7):
        nights += alice.session(alice.local(start + timedelta(days=d), 2, 30), rng, 5, 50)
        nights += alice.workday(start + timedelta(days=d), rng)
    nights += alice.workday(start + timedelta(days=8), rng)
    found = [a for a in sim.feed(sorted(nights, key=lambda e: e.occurred_at)) if a.detector == NAME]
    hours = [a for a in found if a.features[0].name == "hours_statistic"]
    assert hours, [a.reason for a in found]
    anomaly = hours[0]
    statistic, p, tests = (f.value for f in anomaly.features)
    assert p * tests < 0.001 and anomaly.score == pytest.approx(-math.log10(p * tests))
    assert "login hours over the last 7 days differ" in anomaly.reason and "p " in anomaly.reason
    assert f"/{int(tests)} test" in anomaly.reason and anomaly.severity <= Severity.MEDIUM


def test_young_users_are_not_tested():
    rng = random.Random(4)
    bob = Persona(user_id="bob")
    sim = Simulation(engine())
    # Eight days of history, then eight days far off: too little history
    # before the recent week for any test (the basic detectors see it).
    events = bob.history(rng, days=8) + drifted_days(
        bob, HISTORY_START + timedelta(days=8), 8, rng, earlier_by=5, sessions=8
    )
    found = sim.feed(sorted(events, key=lambda e: e.occurred_at))
    assert sim.baseline("bob").mature
    assert not [a.reason for a in found if a.detector == NAME]


def test_each_user_is_tested_once_per_interval():
    rng = random.Random(5)
    alice = Persona()
    sim = Simulation(engine())
    sim.feed(alice.history(rng))
    found = [
        a
        for a in sim.feed(drifted_days(alice, HISTORY_START + timedelta(days=42), 10, rng))
        if a.detector == NAME
    ]
    assert found
    per_day = collections.Counter(
        (a.occurred_at.astimezone(TZ).date(), a.features[0].name) for a in found
    )
    assert max(per_day.values()) == 1


def test_evidence_gradual_drift_recall_and_false_alerts():
    """60 office workers learn six weeks; then for three weeks 15 of them
    drift (every day, an hour earlier, six sessions twice as long). Which
    drifted users are reported, how soon, and how many false user-days."""
    rng = random.Random(5)
    people = list(population(rng, 60))
    drifted = {p.user_id for p in people[:15]}
    start = HISTORY_START + timedelta(days=42)
    events = []
    for persona in people:
        events += persona.history(rng)
        if persona.user_id in drifted:
            events += drifted_days(persona, start, 21, rng)
        else:
            events += [
                e for d in range(21) for e in persona.workday(start + timedelta(days=d), rng)
            ]
    events.sort(key=lambda e: e.occurred_at)
    sim = Simulation(DetectionEngine(REGISTRY, {NAME: {"enabled": True}}))
    found = sim.feed(events)
    assert not sim.engine.failures
    start_at = start.replace(tzinfo=TZ)
    test_days = {
        (e.user_id, e.occurred_at.astimezone(TZ).date())
        for e in events
        if e.occurred_at >= start_at
    }
    normal_days = {k for k in test_days if k[0] not in drifted}
    history_findings = [a for a in found if a.detector == NAME and a.occurred_at < start_at]
    # sustained_volume (basic, but over days) sees the drift's doubled sessions
    # as volume: shown on its own; "basic" below is the per-event detectors.
    volume_users = {
        a.user_id for a in found if a.detector == "sustained_volume" and a.occurred_at >= start_at
    }
    print(
        f"\nsustained_volume reported {len(volume_users & drifted)}/{len(drifted)} drifted users "
        f"and {len(volume_users - drifted)} others"
    )
    found = [a for a in found if a.detector != "sustained_volume"]
    summary = {}
    # login_time judges the hour of the week: that the drifted users now also
    # work weekends it reports, rightly; the claim here is about the slow
    # drift of their weekday hours and session lengths.
    for label, keep in (
        (
            "basic",
            lambda a: (
                a.detector not in ENHANCED_DETECTORS
                and not (a.detector == "login_time" and a.observed[:3] in ("Sat", "Sun"))
            ),
        ),
        ("distribution_shift", lambda a: a.detector == NAME),
    ):
        chosen = [a for a in found if keep(a) and a.occurred_at >= start_at]
        first: dict = {}
        for a in chosen:
            if a.user_id in drifted:
                first[a.user_id] = min(first.get(a.user_id, a.occurred_at), a.occurred_at)
        delays = sorted((t - start_at).days for t in first.values())
        false_days = {
            (a.user_id, a.occurred_at.astimezone(TZ).date()) for a in chosen
        } & normal_days
        tests = collections.Counter(
            a.features[0].name.removesuffix("_statistic") for a in chosen if a.detector == NAME
        )
        summary[label] = (len(first), len(false_days))
        print(
            f"\n{label:20s} drifted users reported {len(first)}/{len(drifted)} (days to first: "
            f"{delays}); false alerts {len(false_days)}/{len(normal_days)} user-days"
            + (f"; findings by test {dict(tests)}" if tests else "")
        )
    print(
        "distribution_shift findings during the six weeks of ordinary history: "
        f"{len(history_findings)}"
    )
    assert summary["basic"][0] <= 2
    assert summary["distribution_shift"][0] >= 13
    assert (
        summary["distribution_shift"][1] <= 0.01 * len(normal_days) and len(history_findings) <= 3
    )


def test_one_finding_per_shift_not_one_per_day():
    """Three weeks of drift: each test reports its shift once (or again only
    at a higher severity); after the user is back to normal for longer than
    the re-arm time, a new drift is reported again."""
    rng = random.Random(5)
    alice = Persona()
    sim = Simulation(engine())
    sim.feed(alice.history(rng))
    start = HISTORY_START + timedelta(days=42)
    found = [a for a in sim.feed(drifted_days(alice, start, 21, rng)) if a.detector == NAME]
    assert found
    by_test = collections.defaultdict(list)
    for a in found:
        by_test[a.features[0].name].append(a.severity)
    for test, severities in by_test.items():
        assert severities == sorted(set(severities)), (test, severities)
    # Three weeks as usual: the drift leaves the recent window and the re-arm
    # time passes. (The return itself may show as a change of session
    # lengths against a sample that holds the drift: a change, once.)
    back = start + timedelta(days=21)
    quiet = [
        a
        for a in sim.feed(
            [e for d in range(21) for e in alice.workday(back + timedelta(days=d), rng)]
        )
        if a.detector == NAME
    ]
    assert not [a for a in quiet if a.features[0].name in ("hours_statistic", "logins_statistic")]
    assert len(quiet) <= 1
    # The next drift is a new episode, reported again.
    again = [
        a
        for a in sim.feed(drifted_days(alice, back + timedelta(days=21), 10, rng, earlier_by=3))
        if a.detector == NAME
    ]
    assert {"hours_statistic", "logins_statistic"} & {a.features[0].name for a in again}


def never_failed(rng: random.Random) -> tuple[Persona, Simulation, datetime]:
    """Alice's six weeks without a failed login: her, the simulation, and
    the day after them."""
    alice = Persona()
    sim = Simulation(engine())
    sim.feed([e for e in alice.history(rng) if e.type.value != "login_failure"])
    return alice, sim, HISTORY_START + timedelta(days=42)


def failure_findings(sim: Simulation, events: list) -> list:
    return [
        a
        for a in sim.feed(sorted(events, key=lambda e: e.occurred_at))
        if a.detector == NAME and a.features[0].name == "failures_statistic"
    ]


def test_a_user_who_never_failed_gets_a_finite_statistic_and_an_explanation():
    rng = random.Random(6)
    alice, sim, start = never_failed(rng)
    events = []
    for d in range(7):
        day = start + timedelta(days=d)
        events += alice.workday(day, rng)
        at = alice.local(day, 12, 0)
        events += [alice.event(LOGIN_FAILURE, at + timedelta(minutes=20 * i)) for i in range(3)]
    found = [
        a
        for a in sim.feed(
            [
                e
                for e in sorted(events, key=lambda e: e.occurred_at)
                if e.type.value != "login_failure" or e.occurred_at.hour >= 10
            ]
        )
        if a.detector == NAME and a.features[0].name == "failures_statistic"
    ]
    assert found, "no failure-rate finding"
    a = found[0]
    statistic = a.features[0].value
    assert math.isfinite(statistic) and statistic < 1e6 and math.isfinite(a.score)
    assert a.features[1].value > 0
    assert "none in" in a.reason and "expected from" in a.reason and "3e+10" not in a.reason


def test_a_trickle_of_failures_is_reported_on_the_failure_that_makes_it():
    """An attack's failures against one account (a stuffing wave's tries
    among many accounts: one or two a day from addresses the user never
    used) are reported on the attack's own failure, while it happens, not
    on the user's next ordinary login, days later (one finding)."""
    rng = random.Random(6)
    alice, sim, start = never_failed(rng)
    attack_ids = set()
    events = []
    for d in range(7):
        day = start + timedelta(days=d)
        events += alice.workday(day, rng)
        if d in (1, 3):
            for k in range(3):
                failure = alice.from_address(
                    LOGIN_FAILURE, alice.local(day, 2, 10 * k), f"203.0.113.{10 * d + k}"
                )
                attack_ids.add(failure.event_id)
                events.append(failure)
    found = failure_findings(sim, events)
    assert len(found) == 1, [a.reason for a in found]
    assert found[0].event_ids[0] in attack_ids
    assert "failed logins over the last 7 days" in found[0].reason


def test_a_users_own_typo_after_an_attacks_tries_is_low():
    """A stuffing wave tried the account three times from addresses the
    user never used; two days later the user mistypes their password twice
    on their own laptop, and a typo makes the week's failures significant:
    LOW (it would be MEDIUM on an attack's failure), saying how many
    failures were not the user's."""
    rng = random.Random(6)
    alice, sim, start = never_failed(rng)
    events = []
    for d in range(5):
        events += alice.workday(start + timedelta(days=d), rng)
    tries_at = start + timedelta(days=1)
    events += [
        alice.from_address(LOGIN_FAILURE, alice.local(tries_at, 2, 10 * k), f"203.0.113.{k + 1}")
        for k in range(3)
    ]
    typo_at = alice.local(start + timedelta(days=3), 12, 0)
    typos = [alice.event(LOGIN_FAILURE, typo_at + timedelta(seconds=20 * i)) for i in range(2)]
    found = failure_findings(sim, events + typos)
    assert len(found) == 1, [a.reason for a in found]
    (finding,) = found
    assert finding.event_ids[0] in {e.event_id for e in typos}
    assert finding.severity is Severity.LOW, finding.reason
    assert "3 from devices and networks not the user's" in finding.reason
    assert "the user's own" in finding.reason


def test_longer_sessions_alone_are_low_however_significant():
    """Ten days of sessions twice as long as usual: the sessions test goes
    far beyond alpha (MEDIUM, were it allowed), but a week of longer days
    is no alarm on its own: LOW."""

    def session_findings(**params):
        rng = random.Random(5)
        alice = Persona()
        sim = Simulation(engine(**params))
        sim.feed(alice.history(rng))
        days = drifted_days(
            alice, HISTORY_START + timedelta(days=42), 10, rng, earlier_by=0, sessions=4
        )
        return [
            a
            for a in sim.feed(days)
            if a.detector == NAME and a.features[0].name == "sessions_statistic"
        ]

    assert Severity.MEDIUM in {a.severity for a in session_findings(session_severity="medium")}
    found = session_findings()
    assert found, "no session-length finding"
    assert all(a.severity is Severity.LOW for a in found), [a.reason for a in found]
