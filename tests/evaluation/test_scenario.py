"""The scenario generator: seeded, DST-correct, labelled (pure, no server)."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest

from uba.domain.events import ActivityType
from uba.evaluation import generate
from uba.evaluation.attacks import BLATANT, REALISTIC
from uba.evaluation.scenario import DEFAULT_END, zone

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def scenario():
    return generate(users=60, days=42, seed=11)


def _fingerprint(sc):
    return [
        (
            e.event_id,
            e.user_id,
            e.type,
            e.occurred_at,
            e.source_ip,
            e.device_id,
            e.api_path,
            e.bytes_transferred,
        )
        for e in sc.events
    ]


def test_same_arguments_same_events_other_seed_other_events():
    a, b = generate(users=20, days=14, seed=5), generate(users=20, days=14, seed=5)
    assert _fingerprint(a) == _fingerprint(b)
    assert [(lb.kind, lb.start, lb.event_ids) for lb in a.labels] == [
        (lb.kind, lb.start, lb.event_ids) for lb in b.labels
    ]
    c = generate(users=20, days=14, seed=6)
    assert _fingerprint(a) != _fingerprint(c)


def test_events_are_ordered_unique_and_inside_the_window(scenario):
    times = [e.occurred_at for e in scenario.events]
    assert times == sorted(times)
    assert scenario.start <= times[0] and times[-1] <= scenario.end == DEFAULT_END
    assert len({e.event_id for e in scenario.events}) == len(scenario.events)
    assert all(e.occurred_at.tzinfo is not None for e in scenario.events)


def test_population_is_spread_over_zones_groups_and_habits(scenario):
    people = scenario.people
    zones = {u.timezone for u in people}
    assert len(zones) >= 6
    assert {"Europe/Berlin", "America/New_York"} <= zones
    assert len({u.group for u in people}) >= 5
    assert (
        any(u.weekend_worker for u in people)
        and sum(u.weekend_worker for u in people) < len(people) / 3
    )
    assert any(u.single_session for u in people) and not all(u.single_session for u in people)
    kinds = Counter(e.type for e in scenario.events)
    assert (
        kinds[ActivityType.API_CALL]
        > kinds[ActivityType.LOGIN_SUCCESS]
        > kinds[ActivityType.LOGIN_FAILURE]
        > 0
    )
    logouts = [e for e in scenario.events if e.type is ActivityType.LOGOUT]
    assert logouts and all(e.session_duration and e.session_id for e in logouts)
    # Once-a-day people resume their session after lunch.
    logins = {e.session_id for e in scenario.events if e.type is ActivityType.LOGIN_SUCCESS}
    resumed = [
        e
        for e in scenario.events
        if e.type is ActivityType.SESSION_START
        and e.occurred_at > scenario.start + timedelta(days=1)
    ]  # logged in before the window
    assert resumed and all(e.session_id in logins for e in resumed)
    # Each peer group keeps to its own endpoints.
    paths = defaultdict(set)
    attacks = {i for lb in scenario.attacks for i in lb.event_ids}
    for e in scenario.events:
        if e.type is ActivityType.API_CALL and e.peer_group and e.event_id not in attacks:
            paths[e.peer_group].add(
                e.api_path.split("/")[2] if e.api_path.startswith("/v") else e.api_path[:6]
            )
    assert paths["sales"].isdisjoint(paths["engineering"] - {"orders"})


def test_local_working_hours_survive_the_dst_change(scenario):
    """Berliners start work at the same local time before and after
    25 October; in UTC their day starts an hour later."""
    change = datetime(2026, 10, 25, 1, tzinfo=UTC)
    tz = zone("Europe/Berlin")
    firsts = defaultdict(dict)
    on_call = {
        lb.users[0] for lb in scenario.confounders if lb.kind in ("on_call", "business_trip")
    }
    attacks = {i for lb in scenario.attacks for i in lb.event_ids}
    for e in scenario.events:
        if (
            e.type is ActivityType.LOGIN_SUCCESS
            and e.timezone == "Europe/Berlin"
            and e.user_id not in on_call
            and not e.device_id.startswith("PH-")
            and e.event_id not in attacks
        ):
            day = e.occurred_at.astimezone(tz).date()
            if day.weekday() < 5:
                firsts[e.user_id].setdefault(day, e.occurred_at)

    def local(ts):
        return statistics.mean(t.astimezone(tz).hour + t.astimezone(tz).minute / 60 for t in ts)

    def utc(ts):
        return statistics.mean(t.hour + t.minute / 60 for t in ts)

    checked = 0
    for user, days in firsts.items():
        before = [t for d, t in days.items() if t < change]
        after = [t for d, t in days.items() if t > change]
        if len(before) < 8 or len(after) < 8:
            continue
        assert abs(local(before) - local(after)) < 0.4, user
        assert 0.6 < utc(after) - utc(before) < 1.4, user
        checked += 1
    assert checked >= 3
    assert {
        lb.description.split(" in ")[1].split(" on ")[0]
        for lb in scenario.confounders
        if lb.kind == "dst_change"
    } >= {"Europe/Berlin", "America/New_York"}


def test_every_attack_is_labelled_with_events_that_exist(scenario):
    ids = {e.event_id: e for e in scenario.events}
    kinds = [lb.kind for lb in scenario.attacks]
    assert sorted(kinds) == sorted(REALISTIC + tuple(BLATANT))
    for lb in scenario.attacks:
        assert lb.event_ids and all(i in ids for i in lb.event_ids), lb.kind
        assert lb.start <= lb.end and scenario.train_at <= lb.start <= scenario.end, lb.kind
        assert set(ids[i].user_id for i in lb.event_ids) <= set(lb.users), lb.kind
    by_kind = {lb.kind: lb for lb in scenario.attacks}
    stuffing = by_kind["credential_stuffing"]
    failures = [ids[i] for i in stuffing.event_ids if ids[i].type is ActivityType.LOGIN_FAILURE]
    per_source = Counter(e.source_ip for e in failures)
    assert len(per_source) == len(stuffing.sources) == 150 and set(per_source.values()) <= {
        1,
        2,
        3,
        4,
    }
    assert len(stuffing.users) == 80 and stuffing.end - stuffing.start <= timedelta(hours=3)
    assert any(ids[i].type is ActivityType.LOGIN_SUCCESS for i in stuffing.event_ids)
    mfa = [ids[i].type for i in by_kind["mfa_fatigue"].event_ids]
    assert mfa.count(ActivityType.MFA_CHALLENGE) > 10 and ActivityType.MFA_DENIED in mfa
    assert mfa.index(ActivityType.MFA_APPROVED) < mfa.index(ActivityType.LOGIN_SUCCESS)
    # The hijacker continues the victim's session from elsewhere.
    hijack = [ids[i] for i in by_kind["session_hijack"].event_ids]
    victim_session = [
        e
        for e in scenario.events
        if e.session_id == hijack[0].session_id
        and e.event_id not in by_kind["session_hijack"].event_ids
    ]
    assert victim_session and {e.country_code for e in hijack}.isdisjoint(
        {e.country_code for e in victim_session}
    )
    assert {e.device_id for e in hijack}.isdisjoint({e.device_id for e in victim_session})
    # The dormant account said nothing for weeks before.
    dormant = by_kind["dormant_account_reuse"]
    before = [
        e.occurred_at
        for e in scenario.events
        if e.user_id == dormant.users[0] and e.occurred_at < dormant.start
    ]
    assert before and dormant.start - max(before) >= timedelta(days=20)
    # Low and slow: five working days of extra volume, each far below a blatant dump.
    exfil = [ids[i] for i in by_kind["low_and_slow_exfiltration"].event_ids]
    tz = zone(scenario.user(exfil[0].user_id).timezone)
    days = defaultdict(list)
    for e in exfil:
        days[e.occurred_at.astimezone(tz).date()].append(e.occurred_at)
    assert len(days) == 5 and max(e.bytes_transferred for e in exfil) < 50_000_000
    assert all(
        len(set(ts)) == 10 and max(ts) - min(ts) > timedelta(hours=4) for ts in days.values()
    )


def test_benign_confounders_are_present_and_do_what_they_say(scenario):
    kinds = Counter(lb.kind for lb in scenario.confounders)
    assert set(kinds) >= {
        "on_call",
        "business_trip",
        "vpn_change",
        "laptop_refresh",
        "feature_rollout",
        "dst_change",
        "mobile_network",
    }
    by_kind = {lb.kind: lb for lb in scenario.confounders}
    change = by_kind["vpn_change"].start + timedelta(hours=14)
    vpn = [e for e in scenario.events if e.source_ip.startswith("172.")]
    assert vpn and all(
        e.source_ip.startswith("172.16.") for e in vpn if e.occurred_at < change - timedelta(days=1)
    )
    assert all(
        e.source_ip.startswith("172.22.") for e in vpn if e.occurred_at > change + timedelta(days=1)
    )
    refresh = by_kind["laptop_refresh"]
    team_devices = {
        e.device_id
        for e in scenario.events
        if e.user_id in refresh.users
        and e.occurred_at > refresh.end
        and not e.device_id.startswith("PH-")
        and not any(e.event_id in a.event_ids for a in scenario.attacks)
    }
    assert team_devices and all(d.startswith("LT2-") for d in team_devices)
    # On call: nights or weekends.
    ids = {e.event_id: e for e in scenario.events}
    for lb in (x for x in scenario.confounders if x.kind == "on_call"):
        user = scenario.user(lb.users[0])
        local = [ids[i].occurred_at.astimezone(zone(user.timezone)) for i in lb.event_ids]
        assert all(t.weekday() >= 5 or t.hour < 6 or t.hour >= 19 for t in local)
    # Trips: another office, the own laptop, a day off to fly there.
    for lb in (x for x in scenario.confounders if x.kind == "business_trip"):
        user = scenario.user(lb.users[0])
        away = [
            e
            for e in scenario.events
            if e.user_id == user.user_id
            and e.city != user.office.city
            and not e.device_id.startswith("PH-")
            and lb.start <= e.occurred_at <= lb.end
        ]
        assert away and all(e.device_id.startswith("LT") for e in away)


def test_several_instances_of_each_realistic_attack_hit_different_victims():
    sc = generate(users=60, days=42, seed=11, instances=3)
    kinds = Counter(lb.kind for lb in sc.attacks)
    assert all(kinds[k] == 3 for k in REALISTIC) and all(kinds[k] == 1 for k in BLATANT)
    for kind in ("account_takeover", "dormant_account_reuse", "session_hijack"):
        assert len({lb.users for lb in sc.attacks if lb.kind == kind}) == 3, kind
    stuffing = [set(lb.sources) for lb in sc.attacks if lb.kind == "credential_stuffing"]
    assert len(stuffing[0] | stuffing[1] | stuffing[2]) > 300  # another botnet each time


def test_small_and_odd_sizes_work():
    for users, days in ((1, 3), (5, 10), (16, 21)):
        sc = generate(users=users, days=days, seed=1)
        assert all(sc.start <= e.occurred_at <= sc.end for e in sc.events)
    with pytest.raises(ValueError):
        generate(users=0, days=5)


def test_other_attack_shapes_stage_every_class_another_way():
    """`--attack-shapes other` stages the same classes, each in another
    shape than the scenario's: detection must not fit one way of staging."""
    sc = generate(users=60, days=42, seed=11, attack_shapes="other")
    ids = {e.event_id: e for e in sc.events}
    assert sorted(lb.kind for lb in sc.attacks) == sorted(REALISTIC + tuple(BLATANT))
    by_kind = {lb.kind: lb for lb in sc.attacks}
    events = {k: [ids[i] for i in lb.event_ids] for k, lb in by_kind.items()}
    stuffing = by_kind["credential_stuffing"]
    assert len(stuffing.sources) == 60 and len(stuffing.users) == 40
    assert sum(e.type is ActivityType.LOGIN_SUCCESS for e in events["credential_stuffing"]) == 1
    spray = by_kind["password_spraying_slow"]
    assert len(spray.sources) == 2 and len(spray.users) == 30
    assert spray.end - spray.start > timedelta(hours=2.5)
    prompts = [e.type for e in events["mfa_fatigue"]].count(ActivityType.MFA_CHALLENGE)
    assert prompts == 8
    victim = sc.user(by_kind["session_hijack"].users[0])
    assert {e.country_code for e in events["session_hijack"]} == {victim.office.country_code}
    assert sc.user(by_kind["privilege_misuse"].users[0]).group in ("finance", "support")
    assert len(events["account_takeover"]) == 1 + 8 + 1  # login, calls, logout
    night = events["weekend_night_login"][0]
    local = night.occurred_at.astimezone(zone(sc.user(night.user_id).timezone))
    assert (local.weekday(), local.hour) in ((5, 23), (6, 0))
    with pytest.raises(ValueError, match="attack_shapes"):
        generate(users=5, days=10, attack_shapes="nastier")
