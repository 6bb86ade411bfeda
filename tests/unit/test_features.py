"""Engineered features (stdlib only): each column means what FEATURES says."""

import math
import random
import statistics
from datetime import timedelta

import pytest

from uba.detectors.features import FEATURE_NAMES, FEATURES, Z_CLIP, _z, event_features, observe
from uba.domain.events import ActivityType
from uba.domain.shared_state import SharedState
from uba.domain.stats import RunningStats
from uba.domain.user_baseline import UserBaseline
from uba.testing.synthetic import Persona, day_after_history

LOGIN, FAILURE, LOGOUT, API = (
    ActivityType.LOGIN_SUCCESS,
    ActivityType.LOGIN_FAILURE,
    ActivityType.LOGOUT,
    ActivityType.API_CALL,
)
DAY = day_after_history()
COLUMN = {name: i for i, name in enumerate(FEATURE_NAMES)}

_learned: dict = {}


def learned(
    persona: Persona | None = None, seed: int = 7
) -> tuple[UserBaseline, SharedState, Persona]:
    """The persona's six weeks learned into a baseline and the windows
    (fresh copies each call)."""
    import copy

    persona = persona or Persona()
    key = (persona.user_id, persona.work_start, seed)
    if key not in _learned:
        baseline, shared = UserBaseline(persona.user_id), SharedState()
        for event in persona.history(random.Random(seed)):
            baseline.learn(event)
            observe(event, shared)
        _learned[key] = (baseline, shared)
    baseline, shared = _learned[key]
    return copy.deepcopy(baseline), copy.deepcopy(shared), persona


def features(event, baseline, shared) -> dict[str, float]:
    return dict(zip(FEATURE_NAMES, event_features(event, baseline, shared), strict=True))


def test_the_table_names_every_column_with_a_unit():
    assert len(FEATURES) == len(set(FEATURE_NAMES)) == len(FEATURE_NAMES)
    for spec in FEATURES:
        assert spec.name.isidentifier() and spec.unit and spec.description


def test_rows_have_a_fixed_length_of_finite_floats_for_every_event_type():
    baseline, shared, alice = learned()
    for kind in ActivityType:
        row = event_features(alice.event(kind, alice.local(DAY, 10)), baseline, shared)
        assert len(row) == len(FEATURE_NAMES)
        assert all(isinstance(v, float) and math.isfinite(v) for v in row), (kind, row)
    fresh = UserBaseline("nobody")
    row = event_features(
        Persona(user_id="nobody").event(LOGIN, alice.local(DAY, 10)), fresh, SharedState()
    )
    assert all(math.isfinite(v) for v in row)


def test_the_hour_is_cyclic():
    baseline, shared, alice = learned()
    late = features(alice.event(LOGIN, alice.local(DAY, 23, 30)), baseline, shared)
    early = features(
        alice.event(LOGIN, alice.local(DAY + timedelta(days=1), 0, 30)), baseline, shared
    )
    noon = features(alice.event(LOGIN, alice.local(DAY, 12, 0)), baseline, shared)
    gap = math.dist((late["hour_sin"], late["hour_cos"]), (early["hour_sin"], early["hour_cos"]))
    assert gap < 0.3  # an hour apart, across midnight
    assert noon["hour_sin"] == pytest.approx(0, abs=1e-9) and noon["hour_cos"] == pytest.approx(-1)


def test_hour_surprise_is_relative_to_the_user():
    baseline, shared, alice = learned()
    usual = features(alice.event(LOGIN, alice.local(DAY, 10, 0)), baseline, shared)["hour_surprise"]
    night = features(alice.event(LOGIN, alice.local(DAY, 3, 0)), baseline, shared)["hour_surprise"]
    assert usual < 3 < 6 < night
    # A night worker: 03:00 is their usual, 10:00 their odd hour.
    owl_baseline, owl_shared, owl = learned(Persona(user_id="owl", work_start=1, work_end=7))
    assert (
        features(owl.event(LOGIN, owl.local(DAY, 3, 0)), owl_baseline, owl_shared)["hour_surprise"]
        < 3
    )
    assert (
        features(owl.event(LOGIN, owl.local(DAY, 10, 0)), owl_baseline, owl_shared)["hour_surprise"]
        > 6
    )


def test_novelty_is_zero_for_known_values_and_grows_with_history():
    baseline, shared, alice = learned()
    known = features(alice.event(LOGIN, alice.local(DAY, 10)), baseline, shared)
    new = features(
        alice.event(
            LOGIN,
            alice.local(DAY, 10),
            device_id="unknown-77",
            source_ip="203.0.113.5",
            country_code="BR",
        ),
        baseline,
        shared,
    )
    assert known["device_surprise"] == pytest.approx(0, abs=0.01) and known["ip_surprise"] < 0.01
    events_seen = baseline.devices.count_of(alice.device_id)
    assert new["device_surprise"] == pytest.approx(math.log(events_seen + 1))
    assert new["country_surprise"] == pytest.approx(math.log(baseline.countries.count_of("DE") + 1))
    # No history: everything is new, nothing is surprising.
    first = features(
        Persona(user_id="bob").event(LOGIN, alice.local(DAY, 10)),
        UserBaseline("bob"),
        SharedState(),
    )
    assert first["device_surprise"] == first["ip_surprise"] == first["country_surprise"] == 0.0


def test_window_counts_include_the_event_and_forget_after_an_hour():
    baseline, shared, alice = learned()
    at = alice.local(DAY, 10)
    for i, ip in enumerate(("203.0.113.1", "203.0.113.2")):
        event = alice.event(LOGIN, at + timedelta(minutes=i), source_ip=ip, device_id=f"d{i}")
        observe(event, shared)
    now = features(
        alice.event(API, at + timedelta(minutes=5), source_ip="203.0.113.3"), baseline, shared
    )
    assert (
        now["distinct_ips"] == 3 and now["distinct_devices"] == 3 and now["distinct_countries"] == 1
    )
    later = features(alice.event(API, at + timedelta(minutes=70)), baseline, shared)
    assert later["distinct_ips"] == 1 and later["distinct_devices"] == 1


def test_failure_share_counts_failed_logins_and_api_errors():
    baseline, shared, alice = learned()
    at = alice.local(DAY, 10)
    for i in range(3):
        baseline.learn(alice.event(FAILURE, at + timedelta(seconds=i)))
    baseline.learn(alice.api_call(at + timedelta(seconds=5), random.Random(1), status_code=500))
    baseline.learn(alice.api_call(at + timedelta(seconds=6), random.Random(1), status_code=200))
    row = features(alice.event(FAILURE, at + timedelta(seconds=9)), baseline, shared)
    assert row["failure_share"] == pytest.approx(5 / 7)  # 5 failed of 6, plus one pseudo-success
    # Alice's history holds one hour with failures: too little to judge by.
    assert baseline.failed_logins_per_hour.count == 1 and row["failed_logins_z"] == 0.0


def test_rates_are_normalised_per_user():
    """Ten calls in an hour is a spike for a light user and quiet for a
    heavy one: the z-scores say so, the raw count does not."""
    rng = random.Random(3)
    light, heavy = Persona(user_id="light"), Persona(user_id="heavy")
    baselines = {"light": UserBaseline("light"), "heavy": UserBaseline("heavy")}
    shared = SharedState()
    start = DAY - timedelta(days=30)
    for day in range(28):
        for persona, calls in ((light, 2), (heavy, 40)):
            at = persona.local(start + timedelta(days=day), 10)
            for i in range(calls + rng.randint(0, calls // 2)):
                event = persona.api_call(at + timedelta(seconds=30 * i), rng)
                baselines[persona.user_id].learn(event)
                observe(event, shared)
    rows = {}
    for persona in (light, heavy):
        at = persona.local(DAY, 10)
        for i in range(9):
            event = persona.api_call(at + timedelta(seconds=30 * i), rng)
            baselines[persona.user_id].learn(event)
        rows[persona.user_id] = features(
            persona.api_call(at + timedelta(seconds=300), rng), baselines[persona.user_id], shared
        )
    assert (
        rows["light"]["api_calls_hour_log"]
        == rows["heavy"]["api_calls_hour_log"]
        == pytest.approx(math.log(11))
    )
    assert rows["light"]["api_rate_z"] > 5 and rows["heavy"]["api_rate_z"] < -3


def test_sessions_distance_and_bytes():
    baseline, shared, alice = learned()
    login_at = alice.local(DAY, 10)
    baseline.learn(alice.event(LOGIN, login_at))
    logout = features(
        alice.event(LOGOUT, login_at + timedelta(hours=8), session_duration=timedelta(hours=8)),
        baseline,
        shared,
    )
    assert logout["log_session_s"] == pytest.approx(math.log(8 * 3600))
    assert logout["session_z"] > 3  # usual sessions last about an hour
    mid = features(
        alice.api_call(login_at + timedelta(minutes=30), random.Random(1), bytes_transferred=1000),
        baseline,
        shared,
    )
    assert mid["log_session_s"] == pytest.approx(math.log(1800))
    assert mid["bytes_hour_log"] == pytest.approx(math.log1p(1000))
    munich = features(
        alice.event(
            LOGIN, login_at + timedelta(hours=3), city="Munich", latitude=48.14, longitude=11.58
        ),
        baseline,
        shared,
    )
    assert munich["distance_log_km"] == pytest.approx(math.log1p(504), abs=0.01)
    assert munich["log_session_s"] == 0.0  # a login starts a session


@pytest.mark.parametrize(
    "values",
    [
        [],
        [5.0],
        [3.0, 3.0, 3.0],
        [1.0, 2.0, 4.0, 8.0],
        [100.0, 120.0, 80.0],
        [0.001, 0.002],
        [-4.0, -6.0, -5.0],
    ],
)
def test_z_scores_use_the_spread_floors_and_the_clip(values):
    """The z-score as its docstring states it: 0 under two values, spread
    max(stddev, floor, 10% of |mean| for counts), clipped to +-Z_CLIP."""
    stats = RunningStats()
    for v in values:
        stats.add(v)
    for min_std in (0.25, 1.0, 1000.0):
        for relative in (True, False):
            for x in (-1e9, -50.0, -1.0, 0.0, 2.5, 7.0, 130.0, 1e9):
                if len(values) < 2:
                    expected = 0.0
                else:
                    spread = max(
                        statistics.stdev(values),
                        min_std,
                        0.1 * abs(statistics.fmean(values)) if relative else 0.0,
                    )
                    expected = max(-Z_CLIP, min(Z_CLIP, (x - statistics.fmean(values)) / spread))
                assert _z(x, stats, min_std, relative) == pytest.approx(
                    expected, rel=1e-9, abs=1e-12
                )
    if len(values) >= 2:
        assert _z(math.nan, stats, 1.0) == Z_CLIP  # as max(-Z, min(Z, nan)) gives
