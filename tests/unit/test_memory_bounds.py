"""One setting bounds the users a process keeps in memory (--cached-users):
the baseline cache and every detector's state keyed by user, address or
value hold at most that many, however many users pass through."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from uba.app import build_services
from uba.config import Settings
from uba.detectors.base import STATE_BOUNDS
from uba.detectors.engine import DetectionEngine
from uba.detectors.registry import DetectorRegistry
from uba.domain.events import ActivityEvent, ActivityType
from uba.domain.shared_state import CACHED_USERS, SharedState
from uba.testing.checks import Simulation

REGISTRY = DetectorRegistry(entry_points=False)
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
# Keys per user a structure may hold (two live sessions, four tests' episodes).
# credential_stuffing.targeted: accounts and addresses, one each per user here.
PER_USER = {
    "session_hijack": 2,
    "distribution_shift.episodes": 4,
    "credential_stuffing.targeted": 2,
}


def everything_enabled() -> dict:
    return {name: {"enabled": True} for name, e in REGISTRY.entries.items() if e.available}


def user_events(i: int) -> list[ActivityEvent]:
    """A little of everything per user: login, MFA prompts, API calls,
    logout, a failed login; each user from their own network, device and
    session, first seen two days before (a use vouches for peers only
    from a device the user had 8 hours before)."""
    user, at = f"u{i}", T0 + timedelta(seconds=i)
    common = dict(
        user_id=user,
        source_ip=f"10.{i // 250 % 250}.{i % 250}.9",
        device_id=f"laptop-{i}",
        session_id=f"s{i}",
        country_code=("DE", "FR", "JP")[i % 3],
        timezone="Europe/Berlin",
        peer_group=f"team{i % 7}",
    )
    kinds = [
        ActivityType.LOGIN_SUCCESS,
        ActivityType.MFA_CHALLENGE,
        ActivityType.MFA_DENIED,
        ActivityType.API_CALL,
        ActivityType.API_CALL,
        ActivityType.LOGOUT,
        ActivityType.LOGIN_FAILURE,
    ]
    events = []
    for n, kind in enumerate(kinds):
        api = kind is ActivityType.API_CALL
        events.append(
            ActivityEvent(
                event_id=f"{user}-{n}",
                type=kind,
                occurred_at=at + timedelta(milliseconds=n),
                api_method="GET" if api else "",
                api_path=f"/v1/reports/{i}/rows" if api else "",
                status_code=200 if api else 0,
                bytes_transferred=5000 if api else 0,
                session_duration=timedelta(minutes=30) if kind is ActivityType.LOGOUT else None,
                **common,
            )
        )
    earlier = ActivityEvent(
        event_id=f"{user}-earlier",
        type=ActivityType.LOGIN_SUCCESS,
        occurred_at=at - timedelta(days=2),
        **common,
    )
    return [earlier, *events]


def test_each_structure_holds_at_most_the_cached_users():
    bound, users = 40, 150
    sim = Simulation(
        DetectionEngine(REGISTRY, everything_enabled(), defaults=dict.fromkeys(STATE_BOUNDS, bound))
    )
    for i in range(users):
        sim.feed(user_events(i))
    sizes = {name: len(saved["keys"]) for name, saved in sim.shared.to_dict().items()}
    too_big = {n: s for n, s in sizes.items() if s > bound * PER_USER.get(n, 1)}
    assert too_big == {}, sizes
    # They did fill up: the bound, not a lack of users, is what held them.
    full = {
        "failed_login_burst",
        "mfa_fatigue.challenges",
        "mfa_fatigue.denials",
        "sustained_volume.days",
        "password_spraying",
        "peers.network",
    }
    if "isolation_forest" in {d.name for d in sim.engine.detectors}:
        full |= {"features.ips", "features.devices", "distribution_shift.logins"}
    assert {n: sizes.get(n) for n in full} == dict.fromkeys(full, bound)
    assert sizes["session_hijack"] == 2 * bound


def test_the_most_recently_active_users_are_the_ones_kept():
    sim = Simulation(
        DetectionEngine(REGISTRY, everything_enabled(), defaults=dict.fromkeys(STATE_BOUNDS, 10))
    )
    for i in range(30):
        sim.feed(user_events(i))
    burst = sim.shared.windows("failed_login_burst", 300.0)
    now = (T0 + timedelta(seconds=30)).timestamp()
    assert [u for u in (f"u{i}" for i in range(30)) if burst.count(u, now)] == [
        f"u{i}" for i in range(20, 30)
    ]


def test_windows_restored_from_a_larger_bound_shrink_to_the_new_one():
    before = SharedState()
    windows = before.windows("w", 600.0, max_keys=100)
    for i in range(50):
        windows.add(f"u{i}", 1000.0 + i)
    restored = SharedState.from_dict(json.loads(json.dumps(before.to_dict())))
    assert len(restored.windows("w", 600.0)) == 50  # no bound given: kept as saved
    again = restored.windows("w", 600.0, max_keys=20)
    assert len(again) == 20 and again.max_keys == 20
    assert again.count("u49", 1050.0) == 1 and again.count("u29", 1050.0) == 0


def test_a_detector_configured_bound_wins_over_the_setting():
    engine = DetectionEngine(
        REGISTRY,
        {"session_risk": {"max_users": 7}},
        defaults=dict.fromkeys(STATE_BOUNDS, 100),
    )
    params = {d.name: d.get_params() for d in engine.detectors}
    assert params["session_risk"]["max_users"] == 7
    assert params["session_risk"]["max_values"] == 100
    assert params["failed_login_burst"]["max_users"] == 100
    assert params["password_spraying"]["max_sources"] == 100


def test_the_setting_comes_from_the_flag_then_the_environment_then_the_default():
    assert Settings.load(None, {}).cached_users == CACHED_USERS
    assert Settings.load(None, {"UBA_CACHED_USERS": "5000"}).cached_users == 5000
    import argparse

    parser = argparse.ArgumentParser()
    Settings.add_arguments(parser)
    args = parser.parse_args(["--cached-users", "300"])
    assert Settings.load(args, {"UBA_CACHED_USERS": "5000"}).cached_users == 300


def test_the_server_bounds_its_cache_and_every_detector_by_the_setting(tmp_path):
    settings = Settings(data_dir=str(tmp_path), cached_users=1234)
    services = build_services(settings)
    try:
        assert services.analyzer._cache_size == 1234
        bounded = {
            (d.name, key): value
            for d in services.engine.detectors
            for key, value in d.get_params().items()
            if key in STATE_BOUNDS
        }
        assert bounded and set(bounded.values()) == {1234}
        names = {name for name, _ in bounded}
        assert {"failed_login_burst", "session_hijack", "sustained_volume", "new_ip"} <= names
    finally:
        services.close()


def test_a_bound_below_one_is_refused_naming_the_flag(tmp_path):
    with pytest.raises(SystemExit, match="--cached-users"):
        build_services(Settings(data_dir=str(tmp_path), cached_users=0))


def test_a_full_window_evicts_its_least_recently_touched_keys_a_slice_at_a_time():
    windows = SharedState().windows("w", 600.0, max_keys=6400)
    for i in range(20_000):
        windows.add(f"k{i}", 1000.0 + i / 100)
        windows.add("k0", 1000.0 + i / 100)  # touched all along: never evicted
        assert len(windows) <= 6400
    assert len(windows) >= 6400 - 6400 // 64
    assert windows.count("k0", 1200.0) > 0 and windows.count("k19999", 1200.0) == 1
    assert windows.count("k100", 1200.0) == 0
