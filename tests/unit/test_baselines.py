import json
import random
import statistics
from datetime import UTC, datetime, timedelta

import pytest

from uba.domain.event_keys import normalize_endpoint
from uba.domain.events import ActivityEvent, ActivityType
from uba.domain.priors import PriorBaselines
from uba.domain.stats import KnownValues, RunningStats
from uba.domain.user_baseline import UserBaseline
from uba.testing.synthetic import Persona, population

UTC = UTC
T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)  # a Monday


def ev(kind=ActivityType.LOGIN_SUCCESS, at=T0, n=[0], **kw):  # noqa: B006 - n counts ids across calls
    n[0] += 1
    return ActivityEvent(event_id=f"e{n[0]}", user_id="alice", type=kind, occurred_at=at, **kw)


def test_hour_of_week_uses_the_event_timezone_else_utc():
    b = UserBaseline("alice")
    # Monday 23:30 UTC is Tuesday 00:30 in Berlin: index 24.
    b.learn(ev(at=datetime(2026, 1, 5, 23, 30, tzinfo=UTC), timezone="Europe/Berlin"))
    assert b.login_hour_of_week[24] == 1
    assert b.timezone == "Europe/Berlin"
    # No zone on the event: the learned one applies.
    b.learn(ev(at=datetime(2026, 1, 12, 7, 0, tzinfo=UTC)))
    assert b.login_hour_of_week[8] == 1
    # An unknown zone falls back to UTC and is not learned.
    other = UserBaseline("bob")
    other.learn(ev(at=datetime(2026, 1, 11, 23, 0, tzinfo=UTC), timezone="Mars/Olympus"))
    assert other.login_hour_of_week[6 * 24 + 23] == 1
    assert other.timezone == ""
    assert sum(b.login_hour_of_day) == b.login_count == 2


def test_naive_time_is_refused():
    with pytest.raises(ValueError):
        UserBaseline("alice").learn(ev(at=datetime(2026, 1, 5, 9, 0)))


def test_logins_per_day_closes_the_day_when_a_later_day_starts():
    b = UserBaseline("alice")
    for day, logins in enumerate([2, 3, 4]):
        for i in range(logins):
            b.learn(ev(at=T0 + timedelta(days=day, minutes=i)))
    assert b.logins_per_day.count == 2  # the third day is still open
    assert b.day.logins == 4
    b.learn(ev(ActivityType.API_CALL, at=T0 + timedelta(days=3)))
    assert b.logins_per_day.count == 3 and b.logins_per_day.mean == pytest.approx(3.0)
    assert b.days_covered == 4


def test_hourly_api_bytes_errors_and_failures():
    b = UserBaseline("alice")
    for i in range(10):
        b.learn(
            ev(
                ActivityType.API_CALL,
                at=T0 + timedelta(minutes=i),
                api_method="get",
                api_path=f"/v1/x/{i}",
                status_code=500 if i < 2 else 200,
                bytes_transferred=1000,
            )
        )
    b.learn(ev(ActivityType.LOGIN_FAILURE, at=T0 + timedelta(minutes=30)))
    b.learn(ev(ActivityType.LOGIN_FAILURE, at=T0 + timedelta(minutes=31)))
    b.learn(
        ev(ActivityType.API_CALL, at=T0 + timedelta(hours=1), api_method="GET", api_path="/v1/x/1")
    )
    assert (b.api_calls_per_hour.count, b.api_calls_per_hour.mean) == (1, 10)
    assert b.bytes_per_hour.mean == 10_000
    assert b.failed_logins_per_hour.mean == 2
    assert b.api_error_share == pytest.approx(2 / 11)
    assert list(b.endpoints.entries) == ["GET /v1/x/{id}"]
    assert b.endpoints.count_of("GET /v1/x/{id}") == 11


def test_session_duration_is_learned_on_log_scale():
    b = UserBaseline("alice")
    b.learn(ev(ActivityType.LOGOUT, session_duration=timedelta(hours=1)))
    assert b.log_session_seconds.mean == pytest.approx(8.188, abs=1e-3)


def test_known_values_are_capped_evicting_the_least_recently_seen():
    values = KnownValues(cap=3)
    for i, value in enumerate(["a", "b", "c", "a", "d"]):
        values.touch(value, float(i))
    assert list(values.entries) == ["c", "a", "d"]  # "b" was least recently seen
    assert values.entries["a"] == [2, 0.0, 3.0]
    assert [v.value for v in values.seen()] == ["d", "a", "c"]


def test_endpoint_normalisation():
    assert normalize_endpoint("get", "/v1/customers/42?x=1") == "GET /v1/customers/{id}"
    assert (
        normalize_endpoint("GET", "/v1/orders/0b9c2a3e-77d1-4f4b-a0a4-123456789abc")
        == "GET /v1/orders/{id}"
    )
    assert normalize_endpoint("POST", "/v1/orders") == "POST /v1/orders"


def test_maturity_needs_logins_and_days():
    b = UserBaseline("alice")
    for i in range(40):
        b.learn(ev(at=T0 + timedelta(minutes=i)))
    assert not b.mature  # 40 logins on one day
    for day in range(1, 7):
        b.learn(ev(at=T0 + timedelta(days=day)))
    assert b.days_covered == 7 and b.mature


def test_running_stats_match_statistics_and_merge():
    rng = random.Random(1)
    xs = [rng.gauss(10, 3) for _ in range(500)]
    whole, left, right = RunningStats(), RunningStats(), RunningStats()
    for i, x in enumerate(xs):
        whole.add(x)
        (left if i % 3 else right).add(x)
    assert whole.mean == pytest.approx(statistics.fmean(xs))
    assert whole.stddev == pytest.approx(statistics.stdev(xs))
    left.merge(right)
    assert left.count == 500
    assert left.mean == pytest.approx(whole.mean) and left.stddev == pytest.approx(whole.stddev)
    assert (left.min, left.max) == (min(xs), max(xs))


def mature_baseline(seed=3) -> UserBaseline:
    alice = Persona()
    b = UserBaseline("alice")
    for e in alice.history(random.Random(seed)):
        b.learn(e)
    return b


def test_to_dict_from_dict_round_trips_exactly_through_json():
    b = mature_baseline()
    assert b.mature
    text = json.dumps(b.to_dict())
    restored = UserBaseline.from_dict(json.loads(text))
    assert restored == b
    assert json.dumps(restored.to_dict()) == text
    assert restored.mature and restored.login_hour_of_day == b.login_hour_of_day
    # Both go on learning the same way.
    more = Persona().session(datetime(2026, 3, 3, 9, 0, tzinfo=UTC), random.Random(5), 5, 30)
    for e in more:
        b.learn(e)
        restored.learn(e)
    assert restored == b


def test_the_last_logins_device_is_kept_beside_what_older_servers_read():
    b = mature_baseline()
    data = json.loads(json.dumps(b.to_dict()))
    assert b.last_login.device_id == "laptop-alice"
    assert len(data["last_login"]) == 7 and data["last_login_device"] == "laptop-alice"
    del data["last_login_device"]  # saved by an older server
    restored = UserBaseline.from_dict(data)
    assert restored.last_login.device_id == "" and restored.last_login.city == b.last_login.city


def test_a_quarantined_login_from_a_stranger_is_the_last_login_and_round_trips():
    b = mature_baseline()
    login = Persona().event(
        ActivityType.LOGIN_SUCCESS,
        datetime(2026, 3, 3, 9, 0, tzinfo=UTC),
        country_code="AU",
        city="Sydney",
        device_id="",
        source_ip="203.0.113.9",
    )
    b.note_quarantined(login)
    assert b.last_login.city == "Sydney" and b.last_login.stranger
    assert "AU" not in b.countries
    restored = UserBaseline.from_dict(json.loads(json.dumps(b.to_dict())))
    assert restored == b and restored.last_login.stranger


def test_from_dict_refuses_unknown_schema():
    data = UserBaseline("alice").to_dict()
    data["schema"] = 99
    with pytest.raises(ValueError, match="schema"):
        UserBaseline.from_dict(data)


def test_late_event_is_learned_but_not_counted_in_a_closed_day():
    b = UserBaseline("alice")
    b.learn(ev(at=T0 + timedelta(days=1)))
    b.learn(ev(at=T0))  # a day late
    assert b.day.logins == 1 and b.login_count == 2
    assert b.logins_so_far(b.clock(ev(at=T0))) is None


def test_quarantined_event_is_counted_in_the_open_hour_but_the_hour_is_not_learned():
    b = UserBaseline("alice")
    b.learn(ev(ActivityType.API_CALL, at=T0, bytes_transferred=10))
    b.note_quarantined(
        ev(ActivityType.API_CALL, at=T0 + timedelta(minutes=5), bytes_transferred=10**9)
    )
    assert b.hour.api_calls == 2 and b.hour.bytes == 10**9 + 10 and b.hour.tainted
    assert b.api_call_count == 1 and b.observation_count == 1
    b.learn(ev(ActivityType.API_CALL, at=T0 + timedelta(hours=1), bytes_transferred=10))
    assert b.bytes_per_hour.count == 0  # the tainted hour was dropped


def test_priors_pool_mature_baselines_by_peer_group():
    rng = random.Random(11)
    baselines = []
    for persona in population(rng, 6):
        b = UserBaseline(persona.user_id)
        for e in persona.history(rng, days=21):
            b.learn(e)
        baselines.append(b)
    immature = UserBaseline("new")
    priors = PriorBaselines.build(baselines + [immature])
    assert priors.population.user_count == 6
    prior, label = priors.select("engineering")
    assert label == "peer group engineering" and prior is priors.groups["engineering"]
    assert priors.select("sales") == (priors.population, "population")
    assert sum(prior.hour_of_day_share) == pytest.approx(1.0)
    assert prior.hour_of_day_share[3] < 0.001 < prior.hour_of_day_share[10]
    assert PriorBaselines.from_dict(json.loads(json.dumps(priors.to_dict()))) == priors
    assert PriorBaselines().select("engineering") == (None, "no prior")


def test_maturity_comes_from_active_days_not_thirty_logins():
    """A user who logs in once a day (and resumes sessions without a new
    login) never reached 30 logins in six weeks: after ten active days with
    200 events the baseline is mature; each kind of evidence earlier."""
    b = UserBaseline("alice")

    def day(n):
        b.learn(ev(at=T0 + timedelta(days=n)))
        for i in range(20):
            b.learn(
                ev(
                    ActivityType.API_CALL,
                    at=T0 + timedelta(days=n, minutes=5 + i),
                    api_method="GET",
                    api_path="/v1/orders",
                )
            )

    for n in range(4):
        day(n)
    assert not b.mature and not b.mature_for("api") and not b.mature_for("logins")
    assert "4 of 5 active days" in b.maturity_note()
    day(4)
    assert b.login_count == 5 and not b.mature
    assert b.mature_for("logins") and b.mature_for("api") and b.mature_for("places")
    assert not b.mature_for("sessions")
    for n in range(5, 9):
        day(n)
    assert not b.mature  # nine days
    day(9)
    assert b.login_count == 10 and b.observation_count == 210 and b.mature


def test_networks_addresses_in_one_slash24_or_slash48_are_one_network():
    from uba.domain.event_keys import network_of, wide_network_of

    assert network_of("198.51.100.7") == network_of("198.51.100.200") == "198.51.100.0/24"
    assert network_of("198.51.101.7") != network_of("198.51.100.7")
    assert network_of("2001:db8:1:2::1") == network_of("2001:db8:1:ffff::9") == "2001:db8:1::/48"
    assert network_of("::ffff:198.51.100.7") == "198.51.100.0/24"
    assert wide_network_of("198.51.100.7") == wide_network_of("198.51.7.1") == "198.51.0.0/16"
    b = UserBaseline("alice")
    b.learn(ev(ActivityType.API_CALL, source_ip="198.51.100.7", device_id="d1", country_code="DE"))
    assert "198.51.100.0/24" in b.networks and "DE" in b.countries and "d1" in b.devices


def test_gaps_between_active_days_and_sessions_by_part_of_day():
    b = UserBaseline("alice", timezone="UTC")
    for day in (0, 1, 4, 5):
        b.learn(ev(at=T0 + timedelta(days=day)))
    assert b.active_day_gaps.count == 3 and b.active_day_gaps.max == 3
    b.learn(
        ev(
            ActivityType.LOGOUT,
            at=T0.replace(hour=20) + timedelta(days=5),
            session_duration=timedelta(minutes=30),
        )
    )
    assert b.log_session_seconds_by_part[3].count == 1  # evening


def test_a_schema_1_baseline_stored_by_the_previous_release_loads():
    """Stored baselines of the previous layout (schema 1) keep working: the
    networks are rebuilt from the known addresses, the rest starts empty."""
    from pathlib import Path

    data = json.loads((Path(__file__).parent / "baseline_schema1.json").read_text())
    assert data["schema"] == 1
    b = UserBaseline.from_dict(data)
    assert b.login_count == 24 and b.days_covered == 8 and not b.mature and b.mature_for("logins")
    assert list(b.networks.entries) == ["198.51.100.0/24"]
    assert b.networks.count_of("198.51.100.0/24") == sum(e[0] for e in data["source_ips"].values())
    again = UserBaseline.from_dict(json.loads(json.dumps(b.to_dict())))
    assert again == b and again.to_dict()["schema"] == 2
    # It keeps learning.
    b.learn(ev(at=T0 + timedelta(days=30), source_ip="203.0.113.5"))
    assert "203.0.113.0/24" in b.networks and b.active_day_gaps.count == 1


def test_failed_logins_and_mfa_prompts_do_not_make_a_place_or_device_known():
    """Anyone can fail a login as anyone from anywhere: a stuffing wave's
    tries from Romania must not make the attacker's later success from there
    a familiar country, address or device."""
    b = mature_baseline()
    at = datetime(2026, 3, 3, 3, 0, tzinfo=UTC)
    tried = dict(source_ip="203.0.113.50", device_id="bot-1", country_code="RO", city="Bucharest")
    for kind in (ActivityType.LOGIN_FAILURE, ActivityType.MFA_CHALLENGE, ActivityType.MFA_DENIED):
        b.learn(Persona().event(kind, at, **tried))
    assert "RO" not in b.countries and "bot-1" not in b.devices
    assert "203.0.113.50" not in b.source_ips
    b.learn(Persona().event(ActivityType.LOGIN_SUCCESS, at, **tried))
    assert "RO" in b.countries and "bot-1" in b.devices
