"""What is normal for a user, learned online one event at a time.

Everything here is bounded (fixed-size histograms, running statistics,
capped maps) so a baseline costs the same after a year as after a week, and
serialises to plain JSON (`to_dict` / `from_dict`) that round-trips exactly.
Times are kept as float Unix seconds: cheap to compare, exact in JSON.

Per-day and per-hour quantities (logins per day, API calls per hour) need
the counts of the day and hour still in progress; those open buckets live
here too and are closed into the running statistics when an event of a
later day or hour arrives. Days are the user's local calendar days; hours
are UTC clock hours (true 60-minute windows, also across DST changes).
"""

from __future__ import annotations

import functools
import ipaddress
import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timezone
from typing import Any
from zoneinfo import ZoneInfo

from uba.domain.events import ActivityEvent, ActivityType

# Bump when the JSON layout changes; `from_dict` migrates older versions.
# 2: networks, countries from every event, gaps between active days,
#    session lengths by part of the day, the peer group learned from endpoints.
SCHEMA_VERSION = 2
HOURS_PER_WEEK = 168
# Bounds on the maps of known values; the least recently seen entry goes.
KNOWN_VALUES_CAP = 200
ENDPOINTS_CAP = 500

_UTC = UTC
_LOGIN_SUCCESS = ActivityType.LOGIN_SUCCESS
_LOGIN_FAILURE = ActivityType.LOGIN_FAILURE
_LOGOUT = ActivityType.LOGOUT
_API_CALL = ActivityType.API_CALL


@dataclass(frozen=True, slots=True)
class MaturityPolicy:
    """When a baseline has enough history to judge its user on its own;
    before that detectors use the peer-group or population prior.

    Judged from what was seen, not from a count of logins alone. The whole
    baseline (`mature`, which also decides which users train the models and
    join the priors) is mature after `min_days` active days with
    `min_logins` logins, or after `evidence_days` active days with
    `min_events` events of any kind (a user who logs in once a day and
    resumes sessions after lunch), or after `max_days` active days whatever
    the counts. Each kind of evidence also has its own, lower bar
    (`mature_for`): after `kind_days` active days a user with five logins
    is judged on their hours, one with 50 API calls on their endpoints."""

    min_logins: int = 30
    # Distinct local days with activity.
    min_days: int = 7
    evidence_days: int = 10
    min_events: int = 200
    max_days: int = 15
    kind_days: int = 5
    min_kind_logins: int = 5
    min_api_calls: int = 50
    min_sessions: int = 5


DEFAULT_MATURITY = MaturityPolicy()


# -- time -------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _zone(name: str) -> ZoneInfo | None:
    """The zone of an IANA name, or None when the name is unknown."""
    try:
        return ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError for odd paths, OSError
        return None


def resolve_zone(*names: str) -> tuple[str, ZoneInfo | timezone]:
    """The first valid IANA zone among `names`, else UTC."""
    for name in names:
        if name:
            zone = _zone(name)
            if zone is not None:
                return name, zone
    return "UTC", _UTC


def from_ts(ts: float | None) -> datetime | None:
    """Unix seconds to an aware UTC datetime (None stays None)."""
    return None if ts is None else datetime.fromtimestamp(ts, tz=_UTC)


@dataclass(frozen=True, slots=True)
class EventClock:
    """An event's time in the forms the baseline and detectors need,
    computed once per event."""

    ts: float  # Unix seconds
    local: datetime  # in the user's zone
    zone_name: str
    hour_of_week: int  # 0 = Monday 00:00-01:00 local
    day_key: int  # local calendar day (proleptic ordinal)
    hour_key: int  # UTC clock hour since the epoch

    @classmethod
    def of(cls, occurred_at: datetime, *zone_names: str) -> EventClock:
        if occurred_at.tzinfo is None:
            raise ValueError("occurred_at must be timezone-aware")
        name, zone = resolve_zone(*zone_names)
        local = occurred_at.astimezone(zone)
        ts = occurred_at.timestamp()
        return cls(
            ts, local, name, local.weekday() * 24 + local.hour, local.toordinal(), int(ts // 3600)
        )


# -- building blocks ----------------------------------------------------------


@dataclass(slots=True)
class RunningStats:
    """Count, mean, spread, min and max of a stream (Welford's algorithm)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0  # sum of squared deviations from the mean
    min: float | None = None
    max: float | None = None

    def add(self, x: float) -> None:
        self.count += 1
        delta = x - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (x - self.mean)
        if self.min is None or x < self.min:
            self.min = x
        if self.max is None or x > self.max:
            self.max = x

    def merge(self, other: RunningStats) -> None:
        """Adds another stream's summary (Chan et al.), as if its values had
        been added one by one."""
        if other.count == 0:
            return
        if self.count == 0:
            self.count, self.mean, self.m2, self.min, self.max = (
                other.count,
                other.mean,
                other.m2,
                other.min,
                other.max,
            )
            return
        n = self.count + other.count
        delta = other.mean - self.mean
        self.m2 += other.m2 + delta * delta * self.count * other.count / n
        self.mean += delta * other.count / n
        self.count = n
        self.min = min(self.min, other.min)  # type: ignore[type-var]
        self.max = max(self.max, other.max)  # type: ignore[type-var]

    @property
    def variance(self) -> float:
        """Sample variance; 0 with fewer than two values."""
        return self.m2 / (self.count - 1) if self.count > 1 else 0.0

    @property
    def stddev(self) -> float:
        return math.sqrt(max(self.variance, 0.0))

    def to_list(self) -> list:
        return [self.count, self.mean, self.m2, self.min, self.max]

    @classmethod
    def from_list(cls, values: list) -> RunningStats:
        count, mean, m2, lo, hi = values
        return cls(int(count), float(mean), float(m2), lo, hi)


@dataclass(frozen=True, slots=True)
class SeenValue:
    """A value a user has been seen with, as the API reports it."""

    value: str
    count: int
    first_seen_at: datetime
    last_seen_at: datetime


@dataclass(slots=True)
class KnownValues:
    """Values (countries, IPs, devices, endpoints) with count and first and
    last sight, capped at `cap` entries. The dict is kept in order of last
    sight, so evicting the least recently seen entry is O(1)."""

    cap: int = KNOWN_VALUES_CAP
    # value -> [count, first_seen_ts, last_seen_ts], least recently seen first
    entries: dict[str, list] = field(default_factory=dict)

    def __contains__(self, value: object) -> bool:
        return value in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def count_of(self, value: str) -> int:
        entry = self.entries.get(value)
        return entry[0] if entry else 0

    def touch(self, value: str, ts: float) -> None:
        entries = self.entries
        # Most events repeat the value seen last (the same address, device,
        # country): it is already the most recent entry, no re-insertion.
        if entries and next(reversed(entries)) == value:
            entry = entries[value]
            entry[0] += 1
            if ts > entry[2]:
                entry[2] = ts
            elif ts < entry[1]:
                entry[1] = ts
            return
        entry = entries.pop(value, None)
        if entry is None:
            if len(entries) >= self.cap:
                del entries[next(iter(entries))]
            entry = [0, ts, ts]
        entry[0] += 1
        if ts < entry[1]:
            entry[1] = ts
        if ts > entry[2]:
            entry[2] = ts
        entries[value] = entry  # re-inserted: now the most recently seen

    def most_common(self, n: int) -> list[tuple[str, int]]:
        ranked = sorted(self.entries.items(), key=lambda kv: (-kv[1][0], kv[0]))
        return [(value, entry[0]) for value, entry in ranked[:n]]

    def seen(self) -> list[SeenValue]:
        """All entries, the most recently seen first."""
        return [
            SeenValue(value, entry[0], from_ts(entry[1]), from_ts(entry[2]))  # type: ignore[arg-type]
            for value, entry in reversed(self.entries.items())
        ]

    def to_dict(self) -> dict[str, list]:
        return {value: list(entry) for value, entry in self.entries.items()}

    @classmethod
    def from_dict(cls, data: dict[str, list], cap: int) -> KnownValues:
        return cls(cap, {str(value): [int(e[0]), e[1], e[2]] for value, e in data.items()})


@dataclass(slots=True)
class LastLogin:
    """Where and when the user last logged in successfully."""

    ts: float
    source_ip: str = ""
    country_code: str = ""
    city: str = ""
    latitude: float | None = None
    longitude: float | None = None
    event_id: str = ""

    @property
    def occurred_at(self) -> datetime:
        return from_ts(self.ts)  # type: ignore[return-value]

    @property
    def place(self) -> str:
        return (
            ", ".join(p for p in (self.city, self.country_code) if p)
            or self.source_ip
            or "unknown place"
        )


@dataclass(slots=True)
class DayBucket:
    """Counts of the local day in progress."""

    key: int | None = None
    logins: int = 0
    # Set when a quarantined event was counted: the day is then not learned.
    tainted: bool = False


@dataclass(slots=True)
class HourBucket:
    """Counts of the UTC hour in progress."""

    key: int | None = None
    api_calls: int = 0
    api_errors: int = 0
    bytes: int = 0
    failures: int = 0
    tainted: bool = False


# Returned for an hour/day that has not started yet; never mutated.
_EMPTY_HOUR = HourBucket()


@functools.lru_cache(maxsize=8192)  # learning and scoring ask for every API call; paths repeat
def normalize_endpoint(method: str, path: str) -> str:
    """ "METHOD path" with ids in the path replaced by {id}, so that
    /v1/customers/42 and /v1/customers/43 are one endpoint."""
    path = path.split("?", 1)[0]
    if path:
        segments = path.split("/")
        for i, segment in enumerate(segments):
            if segment and _looks_like_id(segment):
                segments[i] = "{id}"
        path = "/".join(segments)
    return f"{method.upper()} {path}" if method else path


def _looks_like_id(segment: str) -> bool:
    if segment.isdigit():
        return True
    if len(segment) >= 16:
        # UUIDs, hashes, long hex or base64-ish tokens
        stripped = segment.replace("-", "")
        if all(c in "0123456789abcdefABCDEF" for c in stripped):
            return True
        digits = sum(c.isdigit() for c in segment)
        return digits >= 4 and digits * 4 >= len(segment)
    return False


@functools.lru_cache(
    maxsize=16384
)  # asked on every event that carries an address; addresses repeat
def network_of(address: str) -> str:
    """The network an address belongs to, at the granularity novelty is
    judged at: the /24 of an IPv4 address, the /48 of an IPv6 one. A new
    address in a known network (DHCP, a mobile carrier's pool) is not new."""
    if not address:
        return ""
    if ":" not in address:
        head, sep, _ = address.rpartition(".")
        return f"{head}.0/24" if sep and head.count(".") == 2 else address
    try:
        net = ipaddress.IPv6Network(f"{address.split('%', 1)[0]}/48", strict=False)
    except ValueError:
        return address
    mapped = ipaddress.IPv6Address(address.split("%", 1)[0]).ipv4_mapped
    return network_of(str(mapped)) if mapped is not None else str(net)


def wide_network_of(address: str) -> str:
    """The /16 of an IPv4 address (the /32 of an IPv6 one): changes within it
    are a provider moving a client between its pools, not a new place."""
    if not address:
        return ""
    if ":" not in address:
        parts = address.split(".")
        return f"{parts[0]}.{parts[1]}.0.0/16" if len(parts) == 4 else address
    try:
        return str(ipaddress.IPv6Network(f"{address.split('%', 1)[0]}/32", strict=False))
    except ValueError:
        return address


# Parts of the local day sessions are grouped by: night 00-06, morning 06-12,
# afternoon 12-18, evening 18-24.
DAY_PARTS = ("night", "morning", "afternoon", "evening")


def day_part(hour: int) -> int:
    return hour // 6


# Endpoints whose first use matters more: administration and privileges.
PRIVILEGED_MARKERS = (
    "/admin",
    "/internal",
    "/sudo",
    "/root",
    "/iam",
    "/permissions",
    "/roles",
    "/users/{id}/roles",
    "/keys",
    "/secrets",
    "/billing/admin",
)


@functools.lru_cache(maxsize=8192)
def is_privileged(endpoint: str) -> bool:
    """Whether a normalised endpoint is administrative (/admin/..., roles,
    keys, secrets)."""
    path = endpoint.partition(" ")[2] if " " in endpoint else endpoint
    path = path.lower()
    return any(
        path.startswith(m) or f"{m}/" in path or path.endswith(m) for m in PRIVILEGED_MARKERS
    )


def endpoint_area(endpoint: str) -> str:
    """The area of a normalised endpoint, for grouping users by what they
    use: the method-less path up to its second segment (/v1/orders)."""
    path = endpoint.partition(" ")[2] if " " in endpoint else endpoint
    segments = [p for p in path.split("/") if p and p != "{id}"]
    return "/" + "/".join(segments[:2])


def learned_group_of(endpoints: KnownValues, min_share: float = 0.1) -> str:
    """A peer group learned from behaviour, for users whose events carry none:
    users are clustered by their normalised endpoint sets, reduced to the
    API areas (see `endpoint_area`) that carry at least `min_share` of their
    calls. Users with the same set of main areas share a group (named by a
    checksum of the set); rarely used corners do not split a team. Empty
    without endpoints."""
    weights: dict[str, int] = {}
    total = 0
    for endpoint, entry in endpoints.entries.items():
        area = endpoint_area(endpoint)
        weights[area] = weights.get(area, 0) + entry[0]
        total += entry[0]
    if not total:
        return ""
    main = sorted(a for a, w in weights.items() if w >= min_share * total)
    return f"learned-{zlib.crc32(chr(31).join(main).encode()):08x}"


def session_start_part(clock: EventClock, seconds: float) -> int:
    """The part of the local day a session ending at `clock` began in."""
    start = clock.local.hour * 3600 + clock.local.minute * 60 - seconds
    return day_part(int(start // 3600) % 24)


# -- the baseline --------------------------------------------------------------


@dataclass(slots=True)
class UserBaseline:
    """What is normal for one user. Mutated in place by `learn`."""

    user_id: str
    timezone: str = ""
    peer_group: str = ""
    observation_count: int = 0
    days_covered: int = 0
    first_seen_ts: float | None = None
    last_seen_ts: float | None = None
    # Successful logins per local hour of the week; index 0 = Monday 00:00.
    login_hour_of_week: list[int] = field(default_factory=lambda: [0] * HOURS_PER_WEEK)
    logins_per_day: RunningStats = field(default_factory=RunningStats)
    failed_logins_per_hour: RunningStats = field(default_factory=RunningStats)
    log_session_seconds: RunningStats = field(default_factory=RunningStats)
    api_calls_per_hour: RunningStats = field(default_factory=RunningStats)
    bytes_per_hour: RunningStats = field(default_factory=RunningStats)
    api_call_count: int = 0
    api_error_count: int = 0
    endpoints: KnownValues = field(default_factory=lambda: KnownValues(ENDPOINTS_CAP))
    countries: KnownValues = field(default_factory=KnownValues)
    cities: KnownValues = field(default_factory=KnownValues)
    source_ips: KnownValues = field(default_factory=KnownValues)
    devices: KnownValues = field(default_factory=KnownValues)
    # Networks (/24, /48) of every event with an address.
    networks: KnownValues = field(default_factory=KnownValues)
    # Days between consecutive active local days (1 = the next day).
    active_day_gaps: RunningStats = field(default_factory=RunningStats)
    # The gap before the latest active day (0 before the second one).
    last_gap_days: int = 0
    # log session seconds per part of the local day the session started in.
    log_session_seconds_by_part: list[RunningStats] = field(
        default_factory=lambda: [RunningStats() for _ in DAY_PARTS]
    )
    # The peer group learned from the user's endpoints (see learned_group_of),
    # refreshed once a day; used when events carry no peer_group.
    learned_peer_group: str = ""
    last_login: LastLogin | None = None
    # Latest local day with a learned event, to count days_covered.
    last_learned_day: int | None = None
    day: DayBucket = field(default_factory=DayBucket)
    hour: HourBucket = field(default_factory=HourBucket)
    maturity: MaturityPolicy = field(default=DEFAULT_MATURITY, compare=False, repr=False)
    # Derived from login_hour_of_week (not serialised): logins per local hour
    # of the day, and their total, kept so detectors need not sum 168 cells.
    login_hour_of_day: list[int] = field(default_factory=list, compare=False, repr=False)
    login_count: int = field(default=0, compare=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.login_hour_of_week) != HOURS_PER_WEEK:
            raise ValueError(f"login_hour_of_week needs {HOURS_PER_WEEK} counts")
        by_hour = [0] * 24
        for index, count in enumerate(self.login_hour_of_week):
            by_hour[index % 24] += count
        self.login_hour_of_day = by_hour
        self.login_count = sum(by_hour)

    # -- reading -------------------------------------------------------------

    @property
    def mature(self) -> bool:
        policy, days = self.maturity, self.days_covered
        return days >= policy.min_days and (
            self.login_count >= policy.min_logins
            or (days >= policy.evidence_days and self.observation_count >= policy.min_events)
            or days >= policy.max_days
        )

    def mature_for(self, kind: str) -> bool:
        """Whether the baseline knows enough of one kind of evidence:
        "logins", "api" (endpoints), "sessions", "places" (addresses,
        devices, countries: any event carrying them counts), "any"."""
        policy = self.maturity
        if self.days_covered < policy.kind_days:
            return False
        if kind == "logins":
            return self.login_count >= policy.min_kind_logins
        if kind == "api":
            return self.api_call_count >= policy.min_api_calls
        if kind == "sessions":
            return self.log_session_seconds.count >= policy.min_sessions
        if kind == "places":
            return self.observation_count >= policy.min_kind_logins
        return self.mature

    def maturity_note(self) -> str:
        """How far the baseline is, for reasons: "3 of 5 active days, 2 of 5 logins"."""
        policy = self.maturity
        return (
            f"{self.days_covered} of {policy.kind_days} active days, {self.login_count} of "
            f"{policy.min_kind_logins} logins, {self.api_call_count} of {policy.min_api_calls} API calls"
        )

    @property
    def effective_peer_group(self) -> str:
        return self.peer_group or self.learned_peer_group

    @property
    def api_error_share(self) -> float:
        return self.api_error_count / self.api_call_count if self.api_call_count else 0.0

    @property
    def first_seen_at(self) -> datetime | None:
        return from_ts(self.first_seen_ts)

    @property
    def last_seen_at(self) -> datetime | None:
        return from_ts(self.last_seen_ts)

    def clock(self, event: ActivityEvent) -> EventClock:
        """The event's time in this user's zone: the event's own zone, else
        the one learned, else UTC."""
        return EventClock.of(event.occurred_at, event.timezone, self.timezone)

    def logins_so_far(self, clock: EventClock) -> int | None:
        """Logins counted on the event's local day before it; None when the
        event is late (its day already closed)."""
        key = self.day.key
        if key is None or clock.day_key > key:
            return 0
        return self.day.logins if clock.day_key == key else None

    def hour_so_far(self, clock: EventClock) -> HourBucket | None:
        """Counts of the event's UTC hour before it (do not mutate); None
        when the event is late."""
        key = self.hour.key
        if key is None or clock.hour_key > key:
            return _EMPTY_HOUR
        return self.hour if clock.hour_key == key else None

    # -- learning ------------------------------------------------------------

    def learn(self, event: ActivityEvent, clock: EventClock | None = None) -> None:
        """Makes the event part of what is normal for this user."""
        c = clock or self.clock(event)
        ts = c.ts
        day_open, hour_open = self._advance(c)
        self.observation_count += 1
        if self.first_seen_ts is None or ts < self.first_seen_ts:
            self.first_seen_ts = ts
        if self.last_seen_ts is None or ts > self.last_seen_ts:
            self.last_seen_ts = ts
        if self.last_learned_day is None or c.day_key > self.last_learned_day:
            if self.last_learned_day is not None:
                self.last_gap_days = c.day_key - self.last_learned_day
                self.active_day_gaps.add(self.last_gap_days)
                if self.endpoints.entries:
                    self.learned_peer_group = learned_group_of(self.endpoints)
            self.days_covered += 1
            self.last_learned_day = c.day_key
        if event.timezone and event.timezone != self.timezone and _zone(event.timezone) is not None:
            self.timezone = event.timezone
        if event.peer_group:
            self.peer_group = event.peer_group
        if event.source_ip:
            self.source_ips.touch(event.source_ip, ts)
            self.networks.touch(network_of(event.source_ip), ts)
        if event.device_id:
            self.devices.touch(event.device_id, ts)
        if event.country_code:
            self.countries.touch(event.country_code, ts)
        kind = event.type
        if kind is _LOGIN_SUCCESS:
            self.login_hour_of_week[c.hour_of_week] += 1
            self.login_hour_of_day[c.local.hour] += 1
            self.login_count += 1
            if day_open:
                self.day.logins += 1
            if event.city:
                self.cities.touch(event.city, ts)
            if self.last_login is None or ts >= self.last_login.ts:
                self.last_login = LastLogin(
                    ts,
                    event.source_ip,
                    event.country_code,
                    event.city,
                    event.latitude,
                    event.longitude,
                    event.event_id,
                )
        elif kind is _LOGIN_FAILURE:
            if hour_open:
                self.hour.failures += 1
        elif kind is _API_CALL:
            self.api_call_count += 1
            if event.status_code >= 400:
                self.api_error_count += 1
            if event.api_method or event.api_path:
                self.endpoints.touch(normalize_endpoint(event.api_method, event.api_path), ts)
            if hour_open:
                self.hour.api_calls += 1
                if event.status_code >= 400:
                    self.hour.api_errors += 1
        elif kind is _LOGOUT and event.session_duration is not None:
            seconds = max(event.session_duration.total_seconds(), 1.0)
            self.log_session_seconds.add(math.log(seconds))
            self.log_session_seconds_by_part[session_start_part(c, seconds)].add(math.log(seconds))
        if event.bytes_transferred > 0 and hour_open:
            self.hour.bytes += event.bytes_transferred

    def note_quarantined(self, event: ActivityEvent, clock: EventClock | None = None) -> None:
        """Counts a quarantined event in the open day/hour, so rate detectors
        still see it, and marks those buckets tainted so they are not learned
        when they close. Nothing else about the event is learned."""
        c = clock or self.clock(event)
        day_open, hour_open = self._advance(c)
        kind = event.type
        if kind is _LOGIN_SUCCESS and day_open:
            self.day.logins += 1
            self.day.tainted = True
        if hour_open:
            touched = False
            if kind is _LOGIN_FAILURE:
                self.hour.failures += 1
                touched = True
            elif kind is _API_CALL:
                self.hour.api_calls += 1
                if event.status_code >= 400:
                    self.hour.api_errors += 1
                touched = True
            if event.bytes_transferred > 0:
                self.hour.bytes += event.bytes_transferred
                touched = True
            if touched:
                self.hour.tainted = True

    def _advance(self, c: EventClock) -> tuple[bool, bool]:
        """Closes the open day/hour when the event belongs to a later one.
        Returns whether the event falls in the (now) open day and hour; a
        late event does not, and is left out of the per-day/hour counts."""
        day = self.day
        if day.key is None or c.day_key > day.key:
            if day.key is not None and day.logins and not day.tainted:
                self.logins_per_day.add(day.logins)
            day.key, day.logins, day.tainted = c.day_key, 0, False
        hour = self.hour
        if hour.key is None or c.hour_key > hour.key:
            if hour.key is not None and not hour.tainted:
                if hour.api_calls or hour.bytes:
                    self.api_calls_per_hour.add(hour.api_calls)
                    self.bytes_per_hour.add(hour.bytes)
                if hour.failures:
                    self.failed_logins_per_hour.add(hour.failures)
            hour.key, hour.api_calls, hour.api_errors, hour.bytes, hour.failures, hour.tainted = (
                c.hour_key,
                0,
                0,
                0,
                0,
                False,
            )
        return c.day_key == day.key, c.hour_key == hour.key

    # -- JSON ------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict; `from_dict` restores an equal baseline."""
        last = self.last_login
        return {
            "schema": SCHEMA_VERSION,
            "user_id": self.user_id,
            "timezone": self.timezone,
            "peer_group": self.peer_group,
            "observation_count": self.observation_count,
            "days_covered": self.days_covered,
            "first_seen": self.first_seen_ts,
            "last_seen": self.last_seen_ts,
            "login_hour_of_week": list(self.login_hour_of_week),
            "logins_per_day": self.logins_per_day.to_list(),
            "failed_logins_per_hour": self.failed_logins_per_hour.to_list(),
            "log_session_seconds": self.log_session_seconds.to_list(),
            "api_calls_per_hour": self.api_calls_per_hour.to_list(),
            "bytes_per_hour": self.bytes_per_hour.to_list(),
            "api_call_count": self.api_call_count,
            "api_error_count": self.api_error_count,
            "endpoints": self.endpoints.to_dict(),
            "countries": self.countries.to_dict(),
            "cities": self.cities.to_dict(),
            "source_ips": self.source_ips.to_dict(),
            "devices": self.devices.to_dict(),
            "networks": self.networks.to_dict(),
            "active_day_gaps": self.active_day_gaps.to_list(),
            "last_gap_days": self.last_gap_days,
            "log_session_seconds_by_part": [r.to_list() for r in self.log_session_seconds_by_part],
            "learned_peer_group": self.learned_peer_group,
            "last_login": None
            if last is None
            else [
                last.ts,
                last.source_ip,
                last.country_code,
                last.city,
                last.latitude,
                last.longitude,
                last.event_id,
            ],
            "last_learned_day": self.last_learned_day,
            "day": [self.day.key, self.day.logins, self.day.tainted],
            "hour": [
                self.hour.key,
                self.hour.api_calls,
                self.hour.api_errors,
                self.hour.bytes,
                self.hour.failures,
                self.hour.tainted,
            ],
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], maturity: MaturityPolicy = DEFAULT_MATURITY
    ) -> UserBaseline:
        schema = data.get("schema")
        if schema not in (1, SCHEMA_VERSION):
            raise ValueError(
                f"unsupported baseline schema {schema!r} (this server reads 1 to {SCHEMA_VERSION})"
            )
        if schema == 1:
            data = _migrate_v1(data)
        last = data.get("last_login")
        day = data["day"]
        hour = data["hour"]
        return cls(
            user_id=data["user_id"],
            timezone=data.get("timezone", ""),
            peer_group=data.get("peer_group", ""),
            observation_count=int(data["observation_count"]),
            days_covered=int(data["days_covered"]),
            first_seen_ts=data.get("first_seen"),
            last_seen_ts=data.get("last_seen"),
            login_hour_of_week=[int(v) for v in data["login_hour_of_week"]],
            logins_per_day=RunningStats.from_list(data["logins_per_day"]),
            failed_logins_per_hour=RunningStats.from_list(data["failed_logins_per_hour"]),
            log_session_seconds=RunningStats.from_list(data["log_session_seconds"]),
            api_calls_per_hour=RunningStats.from_list(data["api_calls_per_hour"]),
            bytes_per_hour=RunningStats.from_list(data["bytes_per_hour"]),
            api_call_count=int(data["api_call_count"]),
            api_error_count=int(data["api_error_count"]),
            endpoints=KnownValues.from_dict(data["endpoints"], ENDPOINTS_CAP),
            countries=KnownValues.from_dict(data["countries"], KNOWN_VALUES_CAP),
            cities=KnownValues.from_dict(data["cities"], KNOWN_VALUES_CAP),
            source_ips=KnownValues.from_dict(data["source_ips"], KNOWN_VALUES_CAP),
            devices=KnownValues.from_dict(data["devices"], KNOWN_VALUES_CAP),
            networks=KnownValues.from_dict(data["networks"], KNOWN_VALUES_CAP),
            active_day_gaps=RunningStats.from_list(data["active_day_gaps"]),
            last_gap_days=int(data.get("last_gap_days", 0)),
            log_session_seconds_by_part=[
                RunningStats.from_list(v) for v in data["log_session_seconds_by_part"]
            ],
            learned_peer_group=data.get("learned_peer_group", ""),
            last_login=None if last is None else LastLogin(*last),
            last_learned_day=data.get("last_learned_day"),
            day=DayBucket(day[0], int(day[1]), bool(day[2])),
            hour=HourBucket(
                hour[0], int(hour[1]), int(hour[2]), int(hour[3]), int(hour[4]), bool(hour[5])
            ),
            maturity=maturity,
        )


def _migrate_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A schema-1 baseline in the schema-2 layout: networks from the known
    addresses; gaps, session parts and the learned group start empty (they
    fill in as events arrive)."""
    networks: dict[str, list] = {}
    for address, (count, first, last) in data["source_ips"].items():
        entry = networks.get(network_of(address))
        if entry is None:
            networks[network_of(address)] = [count, first, last]
        else:
            entry[0] += count
            entry[1] = min(entry[1], first)
            entry[2] = max(entry[2], last)
    # Least recently seen first, as KnownValues keeps them.
    ordered = dict(sorted(networks.items(), key=lambda kv: kv[1][2]))
    return {
        **data,
        "schema": SCHEMA_VERSION,
        "networks": ordered,
        "active_day_gaps": RunningStats().to_list(),
        "log_session_seconds_by_part": [RunningStats().to_list() for _ in DAY_PARTS],
        "learned_peer_group": "",
    }


# -- priors ------------------------------------------------------------------------

# The statistics a prior pools across users.
POOLED_STATS = (
    "logins_per_day",
    "failed_logins_per_hour",
    "log_session_seconds",
    "api_calls_per_hour",
    "bytes_per_hour",
)


@dataclass(slots=True)
class Prior:
    """What is normal for a group of users (a peer group, or everyone),
    pooled from their mature baselines. A new user is judged against it
    until the user's own baseline is mature."""

    user_count: int = 0
    # Sum over users of each user's share of logins per hour of the week, so
    # every user weighs the same however often they log in.
    login_hour_of_week: list[float] = field(default_factory=lambda: [0.0] * HOURS_PER_WEEK)
    logins_per_day: RunningStats = field(default_factory=RunningStats)
    failed_logins_per_hour: RunningStats = field(default_factory=RunningStats)
    log_session_seconds: RunningStats = field(default_factory=RunningStats)
    api_calls_per_hour: RunningStats = field(default_factory=RunningStats)
    bytes_per_hour: RunningStats = field(default_factory=RunningStats)
    api_error_share_sum: float = 0.0
    # Derived, not serialised: login_hour_of_week folded to 24 hours, as a
    # probability distribution (uniform while empty).
    hour_of_day_share: list[float] = field(default_factory=list, compare=False, repr=False)
    # login_hour_of_week as a probability distribution (uniform while empty).
    hour_of_week_share: list[float] = field(default_factory=list, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._fold()

    def _fold(self) -> None:
        by_hour = [0.0] * 24
        for index, weight in enumerate(self.login_hour_of_week):
            by_hour[index % 24] += weight
        total = sum(by_hour)
        self.hour_of_day_share = [w / total for w in by_hour] if total > 0 else [1 / 24] * 24
        self.hour_of_week_share = (
            [w / total for w in self.login_hour_of_week]
            if total > 0
            else [1 / HOURS_PER_WEEK] * HOURS_PER_WEEK
        )

    @property
    def api_error_share(self) -> float:
        return self.api_error_share_sum / self.user_count if self.user_count else 0.0

    def include(self, baseline: UserBaseline) -> None:
        """Adds one user's baseline to the pool."""
        self.user_count += 1
        total = baseline.login_count
        if total:
            for index, count in enumerate(baseline.login_hour_of_week):
                if count:
                    self.login_hour_of_week[index] += count / total
            self._fold()
        for name in POOLED_STATS:
            getattr(self, name).merge(getattr(baseline, name))
        self.api_error_share_sum += baseline.api_error_share

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "user_count": self.user_count,
            "login_hour_of_week": list(self.login_hour_of_week),
            "api_error_share_sum": self.api_error_share_sum,
        }
        for name in POOLED_STATS:
            data[name] = getattr(self, name).to_list()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Prior:
        return cls(
            user_count=int(data["user_count"]),
            login_hour_of_week=[float(v) for v in data["login_hour_of_week"]],
            api_error_share_sum=float(data["api_error_share_sum"]),
            **{name: RunningStats.from_list(data[name]) for name in POOLED_STATS},
        )


@dataclass(slots=True)
class PriorBaselines:
    """The population prior and one prior per peer group.

    Storage rebuilds it with `build` from all mature baselines when it likes
    (at start-up, nightly); between rebuilds the engine adds each baseline
    once, when it turns mature, so a fresh deployment gains a prior."""

    population: Prior = field(default_factory=Prior)
    groups: dict[str, Prior] = field(default_factory=dict)
    # A peer group is used once it pools this many users.
    min_group_users: int = 5
    # Bound on the number of peer groups kept; later groups pool only into
    # the population.
    max_groups: int = 1000

    @classmethod
    def build(
        cls, baselines: Iterable[UserBaseline], min_group_users: int = 5, max_groups: int = 1000
    ) -> PriorBaselines:
        priors = cls(min_group_users=min_group_users, max_groups=max_groups)
        for baseline in baselines:
            if baseline.mature:
                priors.include(baseline)
        return priors

    def include(self, baseline: UserBaseline) -> None:
        self.population.include(baseline)
        group = baseline.peer_group
        if group:
            prior = self.groups.get(group)
            if prior is None and len(self.groups) < self.max_groups:
                prior = self.groups[group] = Prior()
            if prior is not None:
                prior.include(baseline)

    def select(self, peer_group: str) -> tuple[Prior | None, str]:
        """The prior to judge a new user of `peer_group` against, and how to
        name it in a reason: the peer group when it is large enough, else the
        population, else None while nobody is mature yet."""
        if peer_group:
            prior = self.groups.get(peer_group)
            if prior is not None and prior.user_count >= self.min_group_users:
                return prior, f"peer group {peer_group}"
        if self.population.user_count:
            return self.population, "population"
        return None, "no prior"

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA_VERSION,
            "min_group_users": self.min_group_users,
            "max_groups": self.max_groups,
            "population": self.population.to_dict(),
            "groups": {name: prior.to_dict() for name, prior in self.groups.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PriorBaselines:
        # The prior's layout is the same in schemas 1 and 2.
        if data.get("schema") not in (1, SCHEMA_VERSION):
            raise ValueError(f"unsupported prior schema {data.get('schema')!r}")
        return cls(
            population=Prior.from_dict(data["population"]),
            groups={name: Prior.from_dict(p) for name, p in data["groups"].items()},
            min_group_users=int(data["min_group_users"]),
            max_groups=int(data["max_groups"]),
        )
