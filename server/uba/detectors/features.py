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

from uba.detectors.travel import haversine_km
from uba.domain.clock import EventClock
from uba.domain.events import ActivityEvent, ActivityType
from uba.domain.shared_state import KeyedWindows, SharedState
from uba.domain.stats import HourBucket, KnownValues, RunningStats
from uba.domain.user_baseline import UserBaseline

# The per-user window the distinct-count features look back over. Rates
# come from the baseline's open UTC hour instead.
WINDOW_SECONDS = 3600.0
# A window keeps one entry per distinct value (see `observe`), so a few
# entries per active user; users beyond the cap go least recently seen first.
# The live detector gives its own cap (its `max_users`); this one is for
# training's replay, which sees every user of the history in one process.
WINDOW_MAX_EVENTS = 200
WINDOW_MAX_USERS = 100_000
# z-scores are clipped: beyond this a value is simply "far off", and the
# model must not be dominated by one astronomically large number.
Z_CLIP = 20.0
# Longer than this since the last login, an event is not in that session.
MAX_SESSION_SECONDS = 12 * 3600.0
_TWO_PI = 2 * math.pi
_NO_HOUR = HourBucket()  # never mutated
_log, _log1p, _sqrt = math.log, math.log1p, math.sqrt

_LOGIN = ActivityType.LOGIN_SUCCESS
_FAILURE = ActivityType.LOGIN_FAILURE
# Events that start a session: their session length is 0, whoever sends
# them, so on them the session features say nothing about the user.
STARTS_SESSION = frozenset({_LOGIN, _FAILURE})
SESSION_FEATURES = frozenset({"log_session_s", "session_z"})
_LOGOUT = ActivityType.LOGOUT
_API_CALL = ActivityType.API_CALL


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """One column of the feature row."""

    name: str
    unit: str
    description: str


FEATURES: tuple[FeatureSpec, ...] = (
    FeatureSpec(
        "hour_sin",
        "unitless",
        "sine of the local hour of day (cyclic encoding: 23:30 is next to 00:30)",
    ),
    FeatureSpec("hour_cos", "unitless", "cosine of the local hour of day"),
    FeatureSpec(
        "hour_surprise",
        "nats",
        "-ln of the user's share of logins in this local hour (smoothed): high at hours the user "
        "never works",
    ),
    FeatureSpec(
        "log_session_s",
        "ln s",
        "session length for a logout; for other events the time since the user's last login if "
        "under 12 h (session age), else 0 (a login starts a session)",
    ),
    FeatureSpec("session_z", "sd", "log_session_s as a z-score of the user's log session lengths"),
    FeatureSpec(
        "api_calls_hour_log",
        "ln(1+calls)",
        "API calls of the user in the current UTC hour, this one included",
    ),
    FeatureSpec(
        "api_rate_z", "sd", "API calls this hour as a z-score of the user's calls per active hour"
    ),
    FeatureSpec(
        "failure_share",
        "fraction",
        "failed logins and API errors (status >= 400) among the user's failed logins and API calls "
        "in the current UTC hour, this event included, plus one successful pseudo-event",
    ),
    FeatureSpec(
        "failed_logins_z",
        "sd",
        "failed logins this hour as a z-score of the user's failed logins per hour with failures",
    ),
    FeatureSpec(
        "distinct_ips",
        "count",
        "distinct source addresses of the user in the last hour, this event included",
    ),
    FeatureSpec(
        "distinct_devices",
        "count",
        "distinct device ids of the user in the last hour, this event included",
    ),
    FeatureSpec(
        "distinct_countries",
        "count",
        "distinct countries of the user in the last hour, this event included",
    ),
    FeatureSpec(
        "ip_surprise",
        "nats",
        "-ln of the user's (smoothed) share of events from this source address",
    ),
    FeatureSpec(
        "device_surprise", "nats", "-ln of the user's (smoothed) share of events from this device"
    ),
    FeatureSpec(
        "country_surprise",
        "nats",
        "-ln of the user's (smoothed) share of logins from the event's country",
    ),
    FeatureSpec(
        "bytes_hour_log",
        "ln(1+bytes)",
        "bytes the user transferred in the current UTC hour, this event included",
    ),
    FeatureSpec(
        "bytes_z", "sd", "bytes this hour as a z-score of the user's bytes per active hour"
    ),
    FeatureSpec(
        "distance_log_km",
        "ln(1+km)",
        "great-circle distance from the place of the user's last login",
    ),
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
# Version of the feature definitions; a model trained on other features
# must be retrained (models record the names; this catches changed meaning).
FEATURES_VERSION = "1"

# Names of the windows in the shared detector state.
_IPS, _DEVICES, _COUNTRIES = "features.ips", "features.devices", "features.countries"


def _windows(
    shared: SharedState, max_users: int = WINDOW_MAX_USERS
) -> tuple[KeyedWindows, KeyedWindows, KeyedWindows]:
    """The address, device and country windows, in that order."""
    return (
        shared.windows(_IPS, WINDOW_SECONDS, max_users, WINDOW_MAX_EVENTS),
        shared.windows(_DEVICES, WINDOW_SECONDS, max_users, WINDOW_MAX_EVENTS),
        shared.windows(_COUNTRIES, WINDOW_SECONDS, max_users, WINDOW_MAX_EVENTS),
    )


def _z(value: float, stats: RunningStats, min_std: float, relative: bool = True) -> float:
    """z-score against the user's statistics; 0 while they hold fewer than
    two values (no evidence either way). The spread has a floor (absolute,
    and for counts 10% of the mean) so a very regular user is not
    infinitely surprised: max(stddev, min_std, 0.1 |mean|), then the score
    is clipped to +-Z_CLIP.

    Called four times per scored event, so the builtin max/min (and the
    stddev property) are written out as the comparisons they make: the
    same numbers, NaN included."""
    count = stats.count
    if count < 2:
        return 0.0
    mean = stats.mean
    variance = stats.m2 / (count - 1)
    spread = _sqrt(0.0 if 0.0 > variance else variance)
    if min_std > spread:
        spread = min_std
    if relative:
        floor = 0.1 * abs(mean)
        if floor > spread:
            spread = floor
    z = (value - mean) / spread
    if not z < Z_CLIP:
        z = Z_CLIP
    return z if z > -Z_CLIP else -Z_CLIP


def _surprise(known: KnownValues, value: str) -> float:
    """-ln of the value's share among the user's known values, with one
    pseudo-observation for "something new": 0 for a user with no history
    (everything is new, nothing is surprising), ln(n+1) for a new value
    after n observations. Known maps hold few entries (devices, countries;
    at most a couple of hundred addresses), so summing them is cheap."""
    if not value:
        return 0.0
    entries = known.entries
    total = 0
    for seen in entries.values():
        total += seen[0]
    entry = entries.get(value)
    return _log((total + 1) / ((entry[0] if entry else 0) + 1))


def _hour_surprise(baseline: UserBaseline, hour: int) -> float:
    """-ln of the share of the user's logins at this local hour, the
    neighbouring hours counting half (07:50 is not alarming for someone who
    starts at 08:00), with one uniform pseudo-login."""
    counts = baseline.login_hour_of_day
    smoothed = 0.25 * counts[(hour - 1) % 24] + 0.5 * counts[hour] + 0.25 * counts[(hour + 1) % 24]
    return -_log((smoothed + 1 / 24) / (baseline.login_count + 1))


def _distinct_with(windows: KeyedWindows, key: str, value: str, ts: float) -> float:
    """Distinct values of `key` in the window, `value` included: as
    `windows.distinct` plus one unless `windows.has_value`, with one
    lookup of the window instead of two."""
    window = windows._current(key, ts)
    if window is None:
        return 1.0 if value else 0.0
    values = window.values
    return float(len(values) + 1 if value and value not in values else len(values))


def is_failure(event: ActivityEvent) -> bool:
    return event.type is _FAILURE or (event.type is _API_CALL and event.status_code >= 400)


def _angles() -> tuple[tuple[float, float], ...]:
    """(sin, cos) of the hour angle for each minute of the day (the row's
    hour is the local hour and minute, so 1440 values in all), computed
    once by the same expression a per-event computation would use, so the
    values are the same to the bit."""
    table = []
    for hour in range(24):
        for minute in range(60):
            angle = _TWO_PI * (hour + minute / 60) / 24
            table.append((math.sin(angle), math.cos(angle)))
    return tuple(table)


_HOUR_ANGLES = _angles()


def event_features(
    event: ActivityEvent,
    baseline: UserBaseline,
    shared: SharedState,
    clock: EventClock | None = None,
    max_users: int = WINDOW_MAX_USERS,
) -> list[float]:
    """The event's feature row, in the order of `FEATURE_NAMES`, judged
    against `baseline` and the windows before the event is learned. Pass
    the event's clock when you have it (saves recomputing the local time),
    and the detector's bound on users kept in the windows.

    This runs for every event the Isolation Forest scores, most of that
    detector's cost, hence the table of hour angles and builtin min/max
    written as the comparisons they make (the same numbers, NaN included)."""
    c = clock or baseline.clock(event)
    ts = c.ts
    user = event.user_id
    kind = event.type
    local = c.local
    local_hour = local.hour
    hour_sin, hour_cos = _HOUR_ANGLES[local_hour * 60 + local.minute]

    # A logout carries its session's length; other events the age of the
    # session they belong to (time since the last login, if recent enough
    # to be the same session; a login starts one).
    session_seconds = 0.0
    last = baseline.last_login
    if kind is _LOGOUT and event.session_duration is not None:
        session_seconds = event.session_duration.total_seconds()
    elif kind is not _LOGIN and kind is not _FAILURE and last is not None:
        age = ts - last.ts
        if age <= MAX_SESSION_SECONDS:
            session_seconds = age
    # log(min(max(session_seconds, 1.0), MAX_SESSION_SECONDS))
    if 1.0 > session_seconds:
        session_seconds = 1.0
    if session_seconds > MAX_SESSION_SECONDS:
        session_seconds = MAX_SESSION_SECONDS
    log_session = _log(session_seconds)

    # The open hour's counts before this event; for a late event (its hour
    # has closed) its own contribution only.
    hour = baseline.hour_so_far(c) or _NO_HOUR
    is_api = kind is _API_CALL
    api_calls = hour.api_calls + (1 if is_api else 0)
    failed_logins = hour.failures + (1 if kind is _FAILURE else 0)
    transferred = event.bytes_transferred
    bytes_hour = hour.bytes + (0 if 0 > transferred else transferred)  # max(transferred, 0)
    failed = (
        hour.failures
        + hour.api_errors
        + (1 if kind is _FAILURE or (is_api and event.status_code >= 400) else 0)
    )  # is_failure(event)

    distance = 0.0
    if last is not None and last.latitude is not None and last.longitude is not None:
        lat, lon = event.latitude, event.longitude
        # From the very place of the last login (most events) the distance is 0.0 exactly.
        if (
            lat is not None
            and lon is not None
            and -90 <= lat <= 90
            and -180 <= lon <= 180
            and (lat != last.latitude or lon != last.longitude)
        ):
            distance = haversine_km(last.latitude, last.longitude, lat, lon)

    source_ip, device_id, country_code = event.source_ip, event.device_id, event.country_code
    ips, devices, countries = _windows(shared, max_users)
    return [
        hour_sin,
        hour_cos,
        _hour_surprise(baseline, local_hour),
        log_session,
        _z(log_session, baseline.log_session_seconds, 0.25, relative=False),
        _log1p(api_calls),
        _z(api_calls, baseline.api_calls_per_hour, 1.0),
        # One pseudo-event that succeeded: a lone typo is not a 100% failure share.
        failed / (api_calls + failed_logins + 1),
        _z(failed_logins, baseline.failed_logins_per_hour, 1.0),
        _distinct_with(ips, user, source_ip, ts),
        _distinct_with(devices, user, device_id, ts),
        _distinct_with(countries, user, country_code, ts),
        _surprise(baseline.source_ips, source_ip),
        _surprise(baseline.devices, device_id),
        _surprise(baseline.countries, country_code),
        _log1p(bytes_hour),
        _z(bytes_hour, baseline.bytes_per_hour, 1000.0),
        _log1p(distance),
    ]


def observe(
    event: ActivityEvent,
    shared: SharedState,
    clock: EventClock | None = None,
    max_users: int = WINDOW_MAX_USERS,
) -> None:
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
    for windows, value in zip(
        _windows(shared, max_users),
        (event.source_ip, event.device_id, event.country_code),
        strict=True,
    ):
        if value:
            window = windows._current(user, ts)  # has_value, without a second lookup
            if window is None or value not in window.values:
                windows.add(user, ts, value)
