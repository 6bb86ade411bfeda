"""Engineered features of one event, for the enhanced (learned) detectors.

Each event becomes a fixed-order row of floats (`FEATURE_NAMES`): what the
event is (its local hour, session length, distance from the last login)
together with what its user has done in the last hour (API rate, failure
share, distinct addresses, devices and countries, bytes). Most features
also come normalised against the user's own baseline (z-scores from the
baseline's running statistics, surprise in nats from its histograms and
maps of known values), so that one model serves users with different
habits: 40 API calls an hour is normal for one user and a spike for another.

The row is computed before the event is learned, like every detector's
score: against the baseline and the windows as they were. `observe` then
adds the event to the one-hour windows (in the shared detector state);
training replays history through the same two functions, so a model sees
features exactly as the live detector computes them.

Standard library only: importing this module must not import numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from uba.detectors.state import KeyedWindows, SharedState
from uba.detectors.travel import haversine_km
from uba.domain.baselines import EventClock, HourBucket, KnownValues, RunningStats, UserBaseline
from uba.domain.events import ActivityEvent, ActivityType

# The per-user window the distinct-count features look back over. Rates
# come from the baseline's open UTC hour instead.
WINDOW_SECONDS = 3600.0
# A window keeps one entry per distinct value (see `observe`), so a few
# entries per active user; users beyond the cap go least recently seen first.
WINDOW_MAX_EVENTS = 200
WINDOW_MAX_USERS = 100_000
# z-scores are clipped: beyond this a value is simply "far off", and the
# model must not be dominated by one astronomically large number.
Z_CLIP = 20.0
# Longer than this since the last login, an event is not in that session.
MAX_SESSION_SECONDS = 12 * 3600.0
_TWO_PI = 2 * math.pi
_NO_HOUR = HourBucket()  # never mutated

_LOGIN = ActivityType.LOGIN_SUCCESS
_FAILURE = ActivityType.LOGIN_FAILURE
_LOGOUT = ActivityType.LOGOUT
_API_CALL = ActivityType.API_CALL


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One column of the feature row."""

    name: str
    unit: str
    description: str


FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec("hour_sin", "unitless", "sine of the local hour of day (cyclic encoding: 23:30 is next to 00:30)"),
    FeatureSpec("hour_cos", "unitless", "cosine of the local hour of day"),
    FeatureSpec("hour_surprise", "nats",
                "-ln of the user's share of logins in this local hour (smoothed): high at hours the user never works"),
    FeatureSpec("log_session_s", "ln s",
                "session length for a logout; for other events the time since the user's last login if under "
                "12 h (session age), else 0 (a login starts a session)"),
    FeatureSpec("session_z", "sd", "log_session_s as a z-score of the user's log session lengths"),
    FeatureSpec("api_calls_hour_log", "ln(1+calls)", "API calls of the user in the current UTC hour, this one included"),
    FeatureSpec("api_rate_z", "sd", "API calls this hour as a z-score of the user's calls per active hour"),
    FeatureSpec("failure_share", "fraction",
                "failed logins and API errors (status >= 400) among the user's failed logins and API calls in "
                "the current UTC hour, this event included, plus one successful pseudo-event"),
    FeatureSpec("failed_logins_z", "sd",
                "failed logins this hour as a z-score of the user's failed logins per hour with failures"),
    FeatureSpec("distinct_ips", "count", "distinct source addresses of the user in the last hour, this event included"),
    FeatureSpec("distinct_devices", "count", "distinct device ids of the user in the last hour, this event included"),
    FeatureSpec("distinct_countries", "count", "distinct countries of the user in the last hour, this event included"),
    FeatureSpec("ip_surprise", "nats", "-ln of the user's (smoothed) share of events from this source address"),
    FeatureSpec("device_surprise", "nats", "-ln of the user's (smoothed) share of events from this device"),
    FeatureSpec("country_surprise", "nats", "-ln of the user's (smoothed) share of logins from the event's country"),
    FeatureSpec("bytes_hour_log", "ln(1+bytes)", "bytes the user transferred in the current UTC hour, this event included"),
    FeatureSpec("bytes_z", "sd", "bytes this hour as a z-score of the user's bytes per active hour"),
    FeatureSpec("distance_log_km", "ln(1+km)", "great-circle distance from the place of the user's last login"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
# Version of the feature definitions; a model trained on other features
# must be retrained (models record the names; this catches changed meaning).
FEATURES_VERSION = "1"

# Names of the windows in the shared detector state.
_IPS, _DEVICES, _COUNTRIES = "features.ips", "features.devices", "features.countries"


def _window(shared: SharedState, name: str) -> KeyedWindows:
    return shared.windows(name, WINDOW_SECONDS, WINDOW_MAX_USERS, WINDOW_MAX_EVENTS)


def _z(value: float, stats: RunningStats, min_std: float, relative: bool = True) -> float:
    """z-score against the user's statistics; 0 while they hold fewer than
    two values (no evidence either way). The spread has a floor (absolute,
    and for counts 10% of the mean) so a very regular user is not
    infinitely surprised."""
    if stats.count < 2:
        return 0.0
    z = (value - stats.mean) / max(stats.stddev, min_std, 0.1 * abs(stats.mean) if relative else 0.0)
    return max(-Z_CLIP, min(Z_CLIP, z))


def _surprise(known: KnownValues, value: str) -> float:
    """-ln of the value's share among the user's known values, with one
    pseudo-observation for "something new": 0 for a user with no history
    (everything is new, nothing is surprising), ln(n+1) for a new value
    after n observations. Known maps hold few entries (devices, countries;
    at most a couple of hundred addresses), so summing them is cheap."""
    if not value:
        return 0.0
    total = 0
    for entry in known.entries.values():
        total += entry[0]
    return math.log((total + 1) / (known.count_of(value) + 1))


def _hour_surprise(baseline: UserBaseline, hour: int) -> float:
    """-ln of the share of the user's logins at this local hour, the
    neighbouring hours counting half (07:50 is not alarming for someone who
    starts at 08:00), with one uniform pseudo-login."""
    counts = baseline.login_hour_of_day
    smoothed = 0.25 * counts[(hour - 1) % 24] + 0.5 * counts[hour] + 0.25 * counts[(hour + 1) % 24]
    return -math.log((smoothed + 1 / 24) / (baseline.login_count + 1))


def _distinct_with(windows: KeyedWindows, key: str, value: str, ts: float) -> float:
    distinct = windows.distinct(key, ts)
    if value and not windows.has_value(key, value, ts):
        distinct += 1
    return float(distinct)


def is_failure(event: ActivityEvent) -> bool:
    return event.type is _FAILURE or (event.type is _API_CALL and event.status_code >= 400)


def event_features(event: ActivityEvent, baseline: UserBaseline, shared: SharedState,
                   clock: EventClock | None = None) -> list[float]:
    """The event's feature row, in the order of `FEATURE_NAMES`, judged
    against `baseline` and the windows before the event is learned. Pass
    the event's clock when you have it (saves recomputing the local time)."""
    c = clock or baseline.clock(event)
    ts = c.ts
    user = event.user_id
    kind = event.type

    hour_fraction = c.local.hour + c.local.minute / 60
    angle = _TWO_PI * hour_fraction / 24

    # A logout carries its session's length; other events the age of the
    # session they belong to (time since the last login, if recent enough
    # to be the same session; a login starts one).
    session_seconds = 0.0
    if kind is _LOGOUT and event.session_duration is not None:
        session_seconds = event.session_duration.total_seconds()
    elif kind is not _LOGIN and kind is not _FAILURE and baseline.last_login is not None:
        age = ts - baseline.last_login.ts
        if age <= MAX_SESSION_SECONDS:
            session_seconds = age
    log_session = math.log(min(max(session_seconds, 1.0), MAX_SESSION_SECONDS))

    # The open hour's counts before this event; for a late event (its hour
    # has closed) its own contribution only.
    hour = baseline.hour_so_far(c) or _NO_HOUR
    api_calls = hour.api_calls + (1 if kind is _API_CALL else 0)
    failed_logins = hour.failures + (1 if kind is _FAILURE else 0)
    bytes_hour = hour.bytes + max(event.bytes_transferred, 0)
    failed = hour.failures + hour.api_errors + (1 if is_failure(event) else 0)

    distance = 0.0
    last = baseline.last_login
    if (last is not None and last.latitude is not None and last.longitude is not None
            and event.latitude is not None and event.longitude is not None
            and -90 <= event.latitude <= 90 and -180 <= event.longitude <= 180):
        distance = haversine_km(last.latitude, last.longitude, event.latitude, event.longitude)

    return [
        math.sin(angle),
        math.cos(angle),
        _hour_surprise(baseline, c.local.hour),
        log_session,
        _z(log_session, baseline.log_session_seconds, 0.25, relative=False),
        math.log1p(api_calls),
        _z(api_calls, baseline.api_calls_per_hour, 1.0),
        # One pseudo-event that succeeded: a lone typo is not a 100% failure share.
        failed / (api_calls + failed_logins + 1),
        _z(failed_logins, baseline.failed_logins_per_hour, 1.0),
        _distinct_with(_window(shared, _IPS), user, event.source_ip, ts),
        _distinct_with(_window(shared, _DEVICES), user, event.device_id, ts),
        _distinct_with(_window(shared, _COUNTRIES), user, event.country_code, ts),
        _surprise(baseline.source_ips, event.source_ip),
        _surprise(baseline.devices, event.device_id),
        _surprise(baseline.countries, event.country_code),
        math.log1p(bytes_hour),
        _z(bytes_hour, baseline.bytes_per_hour, 1000.0),
        math.log1p(distance),
    ]


def observe(event: ActivityEvent, shared: SharedState, clock: EventClock | None = None) -> None:
    """Adds the event's address, device and country to the one-hour windows
    the features read. Called once per event after scoring, quarantined or
    not (the windows count what happened, attack included).

    A value already in the user's window is not added again, so a window
    holds one entry per distinct value, not one per event: memory stays a
    few entries per user however busy. The price: a value counts from its
    first sighting in the window, so one used throughout drops out an hour
    after that sighting until its next use (at most one too few)."""
    ts = clock.ts if clock is not None else event.occurred_at.timestamp()
    user = event.user_id
    for name, value in ((_IPS, event.source_ip), (_DEVICES, event.device_id), (_COUNTRIES, event.country_code)):
        if value:
            windows = _window(shared, name)
            if not windows.has_value(user, value, ts):
                windows.add(user, ts, value)
