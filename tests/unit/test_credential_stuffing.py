"""credential_stuffing: the organisation's failed logins against its
own usual rate, on a population with morning waves in three time zones."""

import random
from datetime import UTC, datetime, timedelta

import pytest

from uba.detectors.engine import DetectionEngine
from uba.detectors.registry import DetectorRegistry
from uba.domain.anomalies import Severity
from uba.domain.events import ActivityType
from uba.testing.checks import Simulation, only
from uba.testing.synthetic import Persona

LOGIN, FAILURE = ActivityType.LOGIN_SUCCESS, ActivityType.LOGIN_FAILURE
REGISTRY = DetectorRegistry(entry_points=False)
ZONES = ("Europe/Berlin", "America/New_York", "Asia/Tokyo")
START = datetime(2026, 1, 5)  # a Monday
WEEKS = 3
USERS = 300


def people(count=USERS):
    return [
        Persona(
            user_id=f"user{i:04d}",
            timezone=ZONES[i % 3],
            source_ip=f"10.{i // 250}.{i % 250}.7",
            device_id=f"laptop-{i}",
            work_start=7 + i % 3,
        )
        for i in range(count)
    ]


def workday(p: Persona, day: datetime, rng: random.Random, ip=None) -> list:
    """Two to four logins in working hours, a typo (then success) now and then;
    now and then an on-call login at night."""
    if day.weekday() >= 5:
        return []
    events = []
    ip = ip or p.source_ip
    for _ in range(rng.randint(2, 4)):
        at = p.local(
            day, rng.randint(p.work_start, p.work_start + 8), rng.randint(0, 59), rng.randint(0, 59)
        )
        if rng.random() < 0.08:
            events.append(p.event(FAILURE, at - timedelta(seconds=20), source_ip=ip))
        events.append(p.event(LOGIN, at, source_ip=ip))
    if rng.random() < 0.02:  # on call
        at = p.local(day, 3, rng.randint(0, 59))
        events += [
            p.event(FAILURE, at, source_ip=ip),
            p.event(FAILURE, at + timedelta(seconds=15), source_ip=ip),
            p.event(LOGIN, at + timedelta(seconds=40), source_ip=ip),
        ]
    return events


def days(weeks):
    return [START + timedelta(days=d) for d in range(7 * weeks)]


_learned = {}


def learned(**params):
    key = tuple(sorted(params.items()))
    if key not in _learned:
        rng = random.Random(3)
        sim = Simulation(DetectionEngine(REGISTRY, only(REGISTRY, "credential_stuffing", **params)))
        staff = people()
        history = sorted(
            (e for d in days(WEEKS) for p in staff for e in workday(p, d, rng)),
            key=lambda e: e.occurred_at,
        )
        found = sim.feed(history)
        _learned[key] = (sim, staff, found, history)
    sim, staff, found, history = _learned[key]
    return sim.copy(), staff, found, history


def attack_day():
    return START + timedelta(days=7 * WEEKS + 1)  # a Tuesday


def stuffing(staff, rng, start, with_ip=True, successes=3):
    """150 addresses, one or two tries each, against 80 accounts over three
    hours; a few of the tries succeed."""
    victims = rng.sample(staff, 80)
    events = []
    for k in range(150):
        ip = f"203.0.{113 + k // 200}.{k % 200 + 1}" if with_ip else ""
        for _ in range(rng.choice((1, 2))):
            at = start + timedelta(seconds=rng.uniform(0, 3 * 3600))
            events.append(rng.choice(victims).from_address(FAILURE, at, ip))
    events.sort(key=lambda e: e.occurred_at)
    owned = []
    for n in range(successes):
        failure = events[40 + 30 * n]
        victim = next(p for p in staff if p.user_id == failure.user_id)
        owned.append(victim.user_id)
        events.append(
            victim.event(
                LOGIN,
                failure.occurred_at + timedelta(seconds=3),
                source_ip=failure.source_ip,
                device_id="",
            )
        )
    return sorted(events, key=lambda e: e.occurred_at), owned


def with_routine(sim_staff, attack, day, rng):
    routine = [e for p in sim_staff for e in workday(p, day, rng)]
    return sorted(routine + attack, key=lambda e: e.occurred_at)


def test_routine_weeks_with_morning_waves_and_on_call_nights_stay_quiet():
    _, staff, found, history = learned()
    # After the first week's learning, nothing at all on routine days.
    late = [a for a in found if a.occurred_at >= START.replace(tzinfo=UTC) + timedelta(days=7)]
    user_days = USERS * 10
    assert len(late) <= 0.005 * user_days, [a.reason for a in late][:3]
    assert not [a for a in late if a.severity >= Severity.MEDIUM]


def test_a_vpn_change_day_is_not_an_attack():
    sim, staff, _, _ = learned()
    rng = random.Random(11)
    day = attack_day()
    events = sorted(
        (e for p in staff for e in workday(p, day, rng, ip=f"100.64.{hash(p.user_id) % 200}.9")),
        key=lambda e: e.occurred_at,
    )
    assert sim.feed(events) == []


@pytest.mark.parametrize("with_ip", [True, False])
@pytest.mark.parametrize("seed", [5, 7])
def test_credential_stuffing_is_flagged_within_minutes_and_successes_are_high(with_ip, seed):
    sim, staff, _, _ = learned()
    rng = random.Random(seed)
    day = attack_day()
    start = datetime(
        day.year, day.month, day.day, 13, 0, tzinfo=UTC
    )  # afternoon in Berlin, morning in NY
    attack, owned = stuffing(staff, rng, start, with_ip=with_ip)
    found = sim.feed(with_routine(staff, attack, day, rng))
    waves = [
        a for a in found if a.observed.startswith(tuple("0123456789")) and "failures" in a.observed
    ]
    assert waves, "the wave was not flagged"
    first = min(waves, key=lambda a: a.occurred_at)
    assert first.severity >= Severity.MEDIUM
    assert first.occurred_at - start <= timedelta(minutes=30), first.occurred_at - start
    assert "T1110" in first.reason and "Accounts: " in first.reason
    if with_ip:
        assert "203.0.113." in first.reason  # names the sources
    # Each account that then let the attacker in: its own HIGH finding.
    successes = [
        a
        for a in found
        if a.observed == "success after 1 failures in an attack wave"
        or a.observed.startswith("success after")
    ]
    assert {a.user_id for a in successes} == set(owned)
    assert all(a.severity is Severity.HIGH and a.quarantined for a in successes)
    # Routine users who typed a password wrong during the wave are not among them.
    assert len(successes) == len(owned)


def test_slow_spraying_from_three_addresses_below_the_per_address_limit_is_flagged():
    """Three addresses, each trying six accounts per ten minutes (under
    password_spraying's ten), one password per account, for an hour."""
    sim, staff, _, _ = learned()
    rng = random.Random(8)
    day = attack_day()
    start = datetime(day.year, day.month, day.day, 15, 0, tzinfo=UTC)
    targets = iter(rng.sample(staff, 108))
    spray = [
        next(targets).event(
            FAILURE, start + timedelta(seconds=100 * i + k), source_ip=f"192.0.2.{k + 1}"
        )
        for i in range(36)
        for k in range(3)
    ]
    found = sim.feed(with_routine(staff, spray, day, rng))
    waves = [a for a in found if "accounts" in a.observed]
    assert waves and waves[0].occurred_at - start <= timedelta(minutes=30)
    assert "192.0.2." in waves[0].reason


def test_one_account_failing_from_many_addresses_is_reported_and_escalates():
    sim, staff, _, _ = learned()
    victim = staff[17]
    day = attack_day()
    start = datetime(day.year, day.month, day.day, 15, 0, tzinfo=UTC)
    # One try a minute, each from another address: under failed_login_burst's 10 in 5 minutes.
    tries = [
        victim.event(FAILURE, start + timedelta(minutes=i), source_ip=f"198.18.0.{i + 1}")
        for i in range(12)
    ]
    found = sim.feed(tries)
    assert [(a.severity, a.observed) for a in found] == [
        (Severity.LOW, "5 addresses in 1h 00m"),
        (Severity.MEDIUM, "10 addresses in 1h 00m"),
    ]
    assert all(a.user_id == victim.user_id for a in found)
    # A user retrying from the two addresses of a roaming phone: nothing.
    other = staff[18]
    assert (
        sim.feed(
            [
                other.event(FAILURE, start + timedelta(minutes=i), source_ip=f"198.18.1.{i % 2}")
                for i in range(8)
            ]
        )
        == []
    )


def test_a_weekly_brute_force_on_one_account_does_not_hide_a_wave_at_that_hour():
    """Every Tuesday at 13:00 UTC for three weeks, 30 failed tries against
    one account in three minutes (failed_login_burst's to report). The
    organisation's usual rate for that hour of the week counts that account
    as one account failing, not 30 failures, so a stuffing wave at that
    hour on the fourth Tuesday is still flagged within minutes."""
    rng = random.Random(3)
    sim = Simulation(DetectionEngine(REGISTRY, only(REGISTRY, "credential_stuffing")))
    staff = people()
    target = staff[7]
    history = [e for d in days(WEEKS) for p in staff for e in workday(p, d, rng)]
    for d in days(WEEKS):
        if d.weekday() == 1:
            burst = datetime(d.year, d.month, d.day, 13, 0, tzinfo=UTC)
            history += [
                target.event(FAILURE, burst + timedelta(seconds=6 * k), source_ip="198.51.100.66")
                for k in range(30)
            ]
    sim.feed(sorted(history, key=lambda e: e.occurred_at))
    day = attack_day()
    start = datetime(day.year, day.month, day.day, 13, 0, tzinfo=UTC)
    attack, _ = stuffing(staff, rng, start)
    found = sim.feed(with_routine(staff, attack, day, rng))
    waves = [a for a in found if "failures" in a.observed and a.severity >= Severity.MEDIUM]
    assert waves, "the wave was not flagged"
    first = min(a.occurred_at for a in waves)
    assert first - start <= timedelta(minutes=30), first - start


def test_a_targeted_users_own_login_from_the_company_vpn_is_low_the_attackers_stay_high():
    """The company VPN moved everyone to 172.22.1.0/24 the day before. During
    the wave, an account the attack tried logs in from a VPN address new to
    it, which failed nowhere: its owner, LOW, saying why. The accounts that
    let the attacker in (from the attack's addresses) stay HIGH."""
    sim, staff, _, _ = learned()
    rng = random.Random(9)
    day = attack_day()
    vpn = {p.user_id: f"172.22.1.{k + 1}" for k, p in enumerate(staff[:40])}
    before = sorted(
        (
            e
            for p in staff[:40]
            for e in workday(p, day - timedelta(days=1), rng, ip=vpn[p.user_id])
        ),
        key=lambda e: e.occurred_at,
    )
    sim.feed(before)
    start = datetime(day.year, day.month, day.day, 13, 0, tzinfo=UTC)
    attack, owned = stuffing(staff, rng, start)
    tried = {
        e.user_id
        for e in attack
        if e.type is FAILURE and e.occurred_at < start + timedelta(hours=1)
    }
    owner = next(p for p in staff if p.user_id in tried and p.user_id not in owned)
    own_login = owner.event(LOGIN, start + timedelta(hours=1, minutes=30), source_ip="172.22.1.250")
    found = sim.feed(sorted(attack + [own_login], key=lambda e: e.occurred_at))
    successes = {a.user_id: a for a in found if a.observed.startswith("success after")}
    assert successes[owner.user_id].severity is Severity.LOW
    assert "its network 172.22.1.0/24" in successes[owner.user_id].reason
    assert all(successes[u].severity is Severity.HIGH for u in owned), [
        successes[u].reason for u in owned
    ]


def test_a_users_own_typos_then_login_from_a_new_address_during_a_wave_is_no_finding():
    """During a wave, a user the wave never tried mistypes twice on a phone
    from a carrier address new to them, then logs in from it: their
    account's only failures came from where they logged in, which tried
    no other account. That is a typo, not the wave's success (it was
    HIGH). The accounts that let the attacker in stay HIGH."""
    sim, staff, _, _ = learned()
    rng = random.Random(9)
    day = attack_day()
    start = datetime(day.year, day.month, day.day, 13, 0, tzinfo=UTC)
    attack, owned = stuffing(staff, rng, start)
    tried = {e.user_id for e in attack}
    user = next(p for p in staff if p.user_id not in tried)
    phone = start + timedelta(hours=1, minutes=30)
    own = [
        user.event(FAILURE, phone, source_ip="100.95.44.185", device_id="phone"),
        user.event(FAILURE, phone + timedelta(seconds=20), source_ip="100.95.44.185"),
        user.event(LOGIN, phone + timedelta(seconds=45), source_ip="100.95.44.185"),
    ]
    found = sim.feed(sorted(attack + own, key=lambda e: e.occurred_at))
    assert not [a for a in found if a.user_id == user.user_id], [
        a.reason for a in found if a.user_id == user.user_id
    ]
    successes = {a.user_id: a for a in found if a.observed.startswith("success after")}
    assert set(owned) <= set(successes) and all(
        successes[u].severity is Severity.HIGH for u in owned
    )
