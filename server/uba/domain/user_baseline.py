"""What is normal for a user, learned online one event at a time.

Everything here is bounded (fixed-size histograms, running statistics,
capped maps) so a baseline costs the same after a year as after a week, and
serialises to plain JSON (`to_dict` / `from_dict`) that round-trips exactly.

Per-day and per-hour quantities (logins per day, API calls per hour) need
the counts of the day and hour still in progress; those open buckets live
here too and are closed into the running statistics when an event of a
later day or hour arrives. Days are the user's local calendar days; hours
are UTC clock hours (true 60-minute windows, also across DST changes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from uba.domain.clock import HOURS_PER_WEEK, EventClock, from_ts, zone_named
from uba.domain.event_keys import (
    AGENT_DEVICE,
    DAY_PARTS,
    agent_device,
    learned_group_of,
    network_of,
    normalize_endpoint,
    session_start_part,
)
from uba.domain.events import UNPROVEN_TYPES, ActivityEvent, ActivityType
from uba.domain.geozones import zone_at
from uba.domain.stats import (
    KNOWN_VALUES_CAP,
    DayBucket,
    HourBucket,
    KnownValues,
    LastLogin,
    RunningStats,
)

# Bump when the JSON layout changes; `from_dict` migrates older versions.
# 2: networks, countries from every event, gaps between active days,
#    session lengths by part of the day, the peer group learned from endpoints.
SCHEMA_VERSION = 2
# Bound on the map of known endpoints; the least recently seen entry goes.
ENDPOINTS_CAP = 500

_LOGIN_SUCCESS = ActivityType.LOGIN_SUCCESS
_LOGIN_FAILURE = ActivityType.LOGIN_FAILURE
_LOGOUT = ActivityType.LOGOUT
_API_CALL = ActivityType.API_CALL
# How long a device or network must have been the user's before their use
# of something from it vouches for it to peers (in_familiar_context):
# longer than an attacker's session, shorter than a night, so a new user's
# second day counts.
_FAMILIAR_AFTER = 8 * 3600.0


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

# Returned for an hour/day that has not started yet; never mutated.
_EMPTY_HOUR = HourBucket()


@dataclass(slots=True)
class UserBaseline:
    """What is normal for one user. Mutated in place by `learn`."""

    user_id: str
    timezone: str = ""
    # The zone was inferred from where the user's events came from (they
    # carry none): events that carry one replace it for good.
    timezone_from_place: bool = False
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
    # The user's events carry device ids: none is made from a user agent.
    sends_device_ids: bool = False
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

    def in_familiar_context(
        self, event: ActivityEvent, ts: float, fields: tuple[str, ...] = ("devices", "networks")
    ) -> bool:
        """Whether the event comes from a device or network (of `fields`) the
        user had for 8 hours before it, or carries neither: the context in
        which a user's use of something vouches for it to peers. Users
        adopting something new keep the rest: a VPN change moves known
        devices to a new network, a laptop refresh brings new devices to a
        known network, a rollout reaches users where they work. An attacker
        brings a new device and network at once."""
        carried = False
        for name in fields:
            if name == "devices":
                value = event.device_id
            elif name == "networks":
                value = network_of(event.source_ip) if event.source_ip else ""
            else:
                raise ValueError(f"no context field {name!r}")
            if value:
                carried = True
                entry = getattr(self, name).entries.get(value)
                if entry is not None and entry[1] <= ts - _FAMILIAR_AFTER:
                    return True
        return not carried

    def maturity_note(self) -> str:
        """How far the baseline is, for reasons: "3 of 5 active days, 2 of 5 logins"."""
        policy = self.maturity
        return (
            f"{self.days_covered} of {policy.kind_days} active days, {self.login_count} of "
            f"{policy.min_kind_logins} logins, {self.api_call_count} of {policy.min_api_calls} "
            "API calls"
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
        (for a user whose events carry none) the zone of its place, else the
        one learned, else UTC."""
        return EventClock.of(event.occurred_at, self.zone_of(event), self.timezone)

    def zone_of(self, event: ActivityEvent) -> str:
        """The zone the event says it is in: its own, else, unless the
        user's events carry zones, the zone of its place ("" if unknown)."""
        if event.timezone or (self.timezone and not self.timezone_from_place):
            return event.timezone
        return zone_at(event.country_code, event.latitude, event.longitude)

    def as_seen(self, event: ActivityEvent) -> ActivityEvent:
        """The event with the device it is judged and learned by: its own
        device id, else, for a user whose events never carry one, the
        device its user agent names (agent_device). The event stored is
        the one sent."""
        if event.device_id or not event.user_agent or self.sends_device_ids:
            return event
        return replace(event, device_id=agent_device(event.user_agent))

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

    def learn(
        self, event: ActivityEvent, clock: EventClock | None = None, *, alarmed: bool = False
    ) -> None:
        """Makes the event part of what is normal for this user; `alarmed`:
        a detector rated it MEDIUM or more (kept on the last login)."""
        c = clock or self.clock(event)
        ts = c.ts
        if event.type is _LOGIN_SUCCESS:
            self._note_last_login(event, ts, alarmed=alarmed)
        day_open, hour_open = self._advance(c)
        self.observation_count += 1
        if self.first_seen_ts is None or ts < self.first_seen_ts:
            self.first_seen_ts = ts
        if self.last_seen_ts is None or ts > self.last_seen_ts:
            self.last_seen_ts = ts
        kind = event.type
        proven = kind not in UNPROVEN_TYPES
        # Active days are days the user was there: failed tries on a silent
        # account do not end its silence (dormant_account).
        if proven and (self.last_learned_day is None or c.day_key > self.last_learned_day):
            if self.last_learned_day is not None:
                self.last_gap_days = c.day_key - self.last_learned_day
                self.active_day_gaps.add(self.last_gap_days)
                if self.endpoints.entries:
                    self.learned_peer_group = learned_group_of(self.endpoints)
            self.days_covered += 1
            self.last_learned_day = c.day_key
        if event.timezone:
            if zone_named(event.timezone) is not None:
                self.timezone, self.timezone_from_place = event.timezone, False
        elif proven and (zone := self.zone_of(event)):
            self.timezone, self.timezone_from_place = zone, True
        if event.peer_group:
            self.peer_group = event.peer_group
        # Places and devices become known only from events that prove the
        # user: a stuffing wave's tries from a country must not make the
        # attacker's later success from there look familiar.
        if proven:
            if event.source_ip:
                self.source_ips.touch(event.source_ip, ts)
                self.networks.touch(network_of(event.source_ip), ts)
            if event.device_id:
                self.devices.touch(event.device_id, ts)
                if not event.device_id.startswith(AGENT_DEVICE):
                    self.sends_device_ids = True
            if event.country_code:
                self.countries.touch(event.country_code, ts)
        if kind is _LOGIN_SUCCESS:
            self.login_hour_of_week[c.hour_of_week] += 1
            self.login_hour_of_day[c.local.hour] += 1
            self.login_count += 1
            if day_open:
                self.day.logins += 1
            if event.city:
                self.cities.touch(event.city, ts)
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
        when they close, and notes it as the last login (a fact the next
        login is judged against; a quarantine is an alarm). Nothing else
        about the event is learned."""
        c = clock or self.clock(event)
        day_open, hour_open = self._advance(c)
        kind = event.type
        if kind is _LOGIN_SUCCESS:
            # Where the account last logged in is a fact, not a habit: the
            # next login is judged against it (impossible_travel), or the
            # user's own logins at home would repeat one alarm for hours.
            self._note_last_login(event, c.ts, alarmed=True)
            if day_open:
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

    def _note_last_login(self, event: ActivityEvent, ts: float, *, alarmed: bool) -> None:
        """Notes the login as the last one, before its device and network are
        learned: an alarmed login from neither of the user's is a stranger's."""
        if self.last_login is None or ts >= self.last_login.ts:
            stranger = alarmed and not self.in_familiar_context(event, ts)
            self.last_login = LastLogin(
                ts,
                event.source_ip,
                event.country_code,
                event.city,
                event.latitude,
                event.longitude,
                event.event_id,
                event.device_id,
                stranger,
            )

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
            "timezone_from_place": self.timezone_from_place,
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
            "sends_device_ids": self.sends_device_ids,
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
            # Beside the list, which older servers read as seven values.
            "last_login_device": "" if last is None else last.device_id,
            "last_login_stranger": last is not None and last.stranger,
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
            timezone_from_place=bool(data.get("timezone_from_place", False)),
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
            # Saved before user agents named devices: any device was sent.
            sends_device_ids=bool(data.get("sends_device_ids", data["devices"])),
            networks=KnownValues.from_dict(data["networks"], KNOWN_VALUES_CAP),
            active_day_gaps=RunningStats.from_list(data["active_day_gaps"]),
            last_gap_days=int(data.get("last_gap_days", 0)),
            log_session_seconds_by_part=[
                RunningStats.from_list(v) for v in data["log_session_seconds_by_part"]
            ],
            learned_peer_group=data.get("learned_peer_group", ""),
            last_login=(
                None
                if last is None
                else _last_login(
                    last,
                    data.get("last_login_device", ""),
                    bool(data.get("last_login_stranger", False)),
                )
            ),
            last_learned_day=data.get("last_learned_day"),
            day=DayBucket(day[0], int(day[1]), bool(day[2])),
            hour=HourBucket(
                hour[0], int(hour[1]), int(hour[2]), int(hour[3]), int(hour[4]), bool(hour[5])
            ),
            maturity=maturity,
        )


def _last_login(values: list, device_id: str, stranger: bool) -> LastLogin:
    """The stored last login: seven values, and its device and whether it
    was a stranger's saved beside them."""
    ts, source_ip, country_code, city, latitude, longitude, event_id = values[:7]
    return LastLogin(
        ts, source_ip, country_code, city, latitude, longitude, event_id, device_id, stranger
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
