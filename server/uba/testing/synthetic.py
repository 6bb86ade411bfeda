"""Deterministic synthetic activity for tests, conformance checks and quick
benchmarks: an office worker's weeks, and per built-in detector a normal
and an obviously anomalous continuation of it.

Everything is driven by a seeded `random.Random`, so a run is repeatable.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from uba.domain.events import ActivityEvent, ActivityType

UTC = UTC
ENDPOINTS = (
    ("GET", "/v1/customers"),
    ("GET", "/v1/customers/{n}"),
    ("GET", "/v1/orders"),
    ("POST", "/v1/orders"),
    ("GET", "/v1/reports/daily"),
    ("PUT", "/v1/orders/{n}"),
)
# Places of logins from elsewhere: country, city, latitude, longitude.
Place = tuple[str, str, float | None, float | None]
JAKARTA: Place = ("ID", "Jakarta", -6.2, 106.85)
SYDNEY: Place = ("AU", "Sydney", -33.87, 151.21)
NOWHERE: Place = ("", "", None, None)
# History starts on a Monday; scenarios continue on the Tuesday after it.
HISTORY_START = datetime(2026, 1, 5)
HISTORY_DAYS = 42


@dataclass
class Persona:
    """A user's habits: where, when and how they work."""

    user_id: str = "alice"
    timezone: str = "Europe/Berlin"
    country_code: str = "DE"
    city: str = "Berlin"
    latitude: float = 52.52
    longitude: float = 13.405
    source_ip: str = "198.51.100.7"
    device_id: str = "laptop-alice"
    user_agent: str = "Mozilla/5.0"
    peer_group: str = "engineering"
    work_start: int = 8  # local hour the first login may happen
    work_end: int = 18  # local hour the last session ends by
    endpoints: tuple[tuple[str, str], ...] = ENDPOINTS
    _counter: int = field(default=0, repr=False)

    def local(self, day: datetime, hour: int, minute: int = 0, second: int = 0) -> datetime:
        """A local wall time on `day` as an aware UTC datetime."""
        wall = day.replace(
            hour=hour, minute=minute, second=second, microsecond=0, tzinfo=ZoneInfo(self.timezone)
        )
        return wall.astimezone(UTC)

    def event(self, kind: ActivityType, at: datetime, **overrides) -> ActivityEvent:
        self._counter += 1
        values: dict[str, Any] = dict(
            event_id=f"{self.user_id}-{self._counter:06d}",
            user_id=self.user_id,
            type=kind,
            occurred_at=at,
            source_ip=self.source_ip,
            device_id=self.device_id,
            session_id="",
            country_code=self.country_code,
            city=self.city,
            latitude=self.latitude,
            longitude=self.longitude,
            timezone=self.timezone,
            peer_group=self.peer_group,
            user_agent=self.user_agent,
            source="synthetic",
        )
        values.update(overrides)
        return ActivityEvent(**values)

    def from_address(self, kind: ActivityType, at: datetime, source_ip: str) -> ActivityEvent:
        """An event on this account from `source_ip` alone, with no device
        or place: a password attack's try (or success) from its proxy."""
        return self.from_place(kind, at, source_ip, NOWHERE)

    def from_place(
        self, kind: ActivityType, at: datetime, source_ip: str, place: Place
    ) -> ActivityEvent:
        """An event on this account from `source_ip` at `place` (country,
        city, latitude, longitude) with no device: a stranger's login."""
        country_code, city, latitude, longitude = place
        return self.event(
            kind,
            at,
            source_ip=source_ip,
            device_id="",
            country_code=country_code,
            city=city,
            latitude=latitude,
            longitude=longitude,
        )

    def api_call(self, at: datetime, rng: random.Random, **overrides) -> ActivityEvent:
        method, path = rng.choice(self.endpoints)
        path = path.replace("{n}", str(rng.randint(1, 99_999)))
        values = dict(
            api_method=method,
            api_path=path,
            status_code=500 if rng.random() < 0.02 else 200,
            bytes_transferred=rng.randint(5_000, 50_000),
        )
        values.update(overrides)
        return self.event(ActivityType.API_CALL, at, **values)

    def session(
        self, login_at: datetime, rng: random.Random, calls: int, minutes: float
    ) -> list[ActivityEvent]:
        """A login, API calls spread over the session, and the logout."""
        events = [self.event(ActivityType.LOGIN_SUCCESS, login_at, session_id=f"s{self._counter}")]
        span = minutes * 60
        for i in range(calls):
            events.append(
                self.api_call(login_at + timedelta(seconds=span * (i + 1) / (calls + 1)), rng)
            )
        events.append(
            self.event(
                ActivityType.LOGOUT,
                login_at + timedelta(seconds=span),
                session_duration=timedelta(seconds=span),
            )
        )
        return events

    def workday(
        self,
        day: datetime,
        rng: random.Random,
        sessions: tuple[int, int] = (2, 4),
        calls: tuple[int, int] = (5, 15),
    ) -> list[ActivityEvent]:
        """A day of sessions within working hours (nothing on weekends)."""
        if day.weekday() >= 5:
            return []
        events: list[ActivityEvent] = []
        count = rng.randint(*sessions)
        slot = (self.work_end - self.work_start) * 60 / count  # minutes per session slot
        for i in range(count):
            start = self.work_start * 60 + i * slot + rng.uniform(0, slot / 3)
            minutes = min(math.exp(rng.gauss(math.log(60), 0.3)), slot * 0.6)
            at = self.local(day, int(start // 60), int(start % 60), rng.randint(0, 59))
            if rng.random() < 0.05:  # a typo now and then
                events.append(self.event(ActivityType.LOGIN_FAILURE, at - timedelta(seconds=20)))
            events.extend(self.session(at, rng, rng.randint(*calls), minutes))
        return events

    def history(
        self, rng: random.Random, start: datetime = HISTORY_START, days: int = HISTORY_DAYS
    ) -> list[ActivityEvent]:
        events: list[ActivityEvent] = []
        for offset in range(days):
            events.extend(self.workday(start + timedelta(days=offset), rng))
        events.sort(key=lambda e: e.occurred_at)
        return events


def histories(
    people: Iterable[Persona], rng: random.Random, days: int = HISTORY_DAYS
) -> list[ActivityEvent]:
    """The routine histories of several personas, in time order (as a
    server receives a team's events)."""
    return sorted(
        (e for p in people for e in p.history(rng, days=days)), key=lambda e: e.occurred_at
    )


def failed_tries(
    targets: Iterable[Persona], day: datetime, hour: int = 3, **where: Any
) -> list[ActivityEvent]:
    """A password attack's tries: one failed login per target (a persona
    may come more than once), the k-th at `hour`:k local time from
    203.0.113.(k+1), with no device, from `where` (country, city...)."""
    return [
        p.event(
            ActivityType.LOGIN_FAILURE,
            p.local(day, hour, k),
            source_ip=f"203.0.113.{k + 1}",
            device_id="",
            **where,
        )
        for k, p in enumerate(targets)
    ]


def day_after_history(start: datetime = HISTORY_START, days: int = HISTORY_DAYS) -> datetime:
    """The first Tuesday after the history, a plain working day."""
    day = start + timedelta(days=days)
    while day.weekday() != 1:
        day += timedelta(days=1)
    return day


def population(
    rng: random.Random, users: int, peer_group: str = "engineering"
) -> Iterator[Persona]:
    """Office workers with slightly different habits, all in one peer group."""
    for i in range(users):
        yield Persona(
            user_id=f"user{i:04d}",
            source_ip=f"198.51.{100 + i // 250}.{i % 250 + 1}",
            device_id=f"laptop-{i:04d}",
            peer_group=peer_group,
            work_start=rng.choice((7, 8, 9)),
            work_end=rng.choice((16, 17, 18)),
        )


@dataclass
class Scenario:
    """A history to learn, then a normal and an obviously anomalous
    continuation; a detector must score the second higher."""

    history: list[ActivityEvent]
    normal: list[ActivityEvent]
    anomalous: list[ActivityEvent]
    # Detector parameters the scenario needs (e.g. threshold rules).
    params: dict = field(default_factory=dict)


def builtin_scenario(name: str, seed: int = 7) -> Scenario:
    """The scenario for the built-in detector `name`."""
    rng = random.Random(seed)
    alice = Persona()
    history = alice.history(rng)
    day = day_after_history()
    at = alice.local
    login, failure = ActivityType.LOGIN_SUCCESS, ActivityType.LOGIN_FAILURE
    params: dict = {}

    if name == "login_time":
        normal = [alice.event(login, at(day, 10, 30))]
        anomalous = [alice.event(login, at(day, 3, 12))]
    elif name == "login_frequency":
        normal = [alice.event(login, at(day, 9 + 3 * i, 5)) for i in range(3)]
        anomalous = [
            alice.event(login, at(day, 9, 0) + timedelta(minutes=10 * i)) for i in range(40)
        ]
    elif name == "failed_login_burst":
        normal = [
            alice.event(failure, at(day, 9, 0)),
            alice.event(failure, at(day, 9, 1)),
            alice.event(login, at(day, 9, 2)),
        ]
        anomalous = [
            alice.event(failure, at(day, 9, 0) + timedelta(seconds=8 * i), source_ip="203.0.113.9")
            for i in range(15)
        ] + [alice.event(login, at(day, 9, 3), source_ip="203.0.113.9")]
    elif name == "password_spraying":
        normal = [
            Persona(user_id=f"u{i}").event(failure, at(day, 9, i), source_ip="198.51.100.50")
            for i in range(2)
        ]
        anomalous = [
            Persona(user_id=f"victim{i}").event(
                failure, at(day, 9, 0) + timedelta(seconds=10 * i), source_ip="203.0.113.9"
            )
            for i in range(15)
        ]
    elif name == "mfa_fatigue":
        mfa = (ActivityType.MFA_CHALLENGE, ActivityType.MFA_DENIED, ActivityType.MFA_APPROVED)
        normal = [alice.event(mfa[0], at(day, 9, 0)), alice.event(mfa[2], at(day, 9, 0, 20))]
        anomalous = [
            alice.event(mfa[i % 2], at(day, 2, 0) + timedelta(seconds=20 * i)) for i in range(16)
        ] + [alice.event(mfa[0], at(day, 2, 6)), alice.event(mfa[2], at(day, 2, 6, 30))]
    elif name == "credential_stuffing":
        normal = [
            Persona(user_id=f"u{i}").event(failure, at(day, 9, i), source_ip=f"198.51.100.{50 + i}")
            for i in range(2)
        ]
        anomalous = [
            Persona(user_id=f"victim{i}").event(
                failure, at(day, 9, 0) + timedelta(seconds=15 * i), source_ip=f"203.0.113.{i + 1}"
            )
            for i in range(20)
        ]
    elif name == "sustained_volume":
        # Three days: as usual, or with three times the usual bytes spread over working hours.
        normal, anomalous = [], []
        for d in range(3):
            calls = [
                alice.api_call(at(day + timedelta(days=d), 9 + i // 4, 15 * (i % 4)), rng)
                for i in range(30)
            ]
            normal += calls
            anomalous += [
                dataclasses.replace(c, event_id=c.event_id + "x", bytes_transferred=80_000)
                for c in calls
            ]
    elif name == "session_duration":
        normal = alice.session(at(day, 10, 0), rng, 3, 55)
        anomalous = alice.session(at(day, 10, 0), rng, 3, 16 * 60)
    elif name == "api_rate":
        normal = alice.session(at(day, 10, 0), rng, 10, 50)
        start = at(day, 10, 0)
        anomalous = [alice.event(login, start)] + [
            alice.api_call(start + timedelta(seconds=1 + i * 1.5), rng) for i in range(2000)
        ]
    elif name == "api_new_endpoint":
        normal = [
            alice.api_call(at(day, 10, 0), rng, api_method="GET", api_path="/v1/customers/77")
        ]
        anomalous = [
            alice.api_call(at(day, 10, 0), rng, api_method="DELETE", api_path="/admin/users/77")
        ]
    elif name == "data_volume":
        start = at(day, 10, 0)
        normal = [
            alice.api_call(start + timedelta(minutes=i), rng, bytes_transferred=20_000)
            for i in range(10)
        ]
        anomalous = [
            alice.api_call(start + timedelta(minutes=i), rng, bytes_transferred=500_000_000)
            for i in range(10)
        ]
    elif name == "api_error_rate":
        start = at(day, 10, 0)
        normal = [
            alice.api_call(start + timedelta(seconds=30 * i), rng, status_code=200)
            for i in range(30)
        ]
        anomalous = [
            alice.api_call(start + timedelta(seconds=30 * i), rng, status_code=403)
            for i in range(30)
        ]
    elif name == "new_country":
        normal = [alice.event(login, at(day, 10, 0))]
        anomalous = [
            alice.event(
                login,
                at(day, 10, 0),
                country_code="BR",
                city="São Paulo",
                latitude=-23.55,
                longitude=-46.63,
                source_ip="203.0.113.80",
            )
        ]
    elif name == "new_device":
        normal = [alice.event(login, at(day, 10, 0))]
        anomalous = [alice.event(login, at(day, 10, 0), device_id="unknown-android-7731")]
    elif name == "new_ip":
        normal = [alice.event(login, at(day, 10, 0))]
        anomalous = [alice.event(login, at(day, 10, 0), source_ip="203.0.113.80")]
    elif name == "impossible_travel":
        normal = [
            alice.event(login, at(day, 9, 0)),
            alice.event(login, at(day, 11, 0), city="Munich", latitude=48.14, longitude=11.58),
        ]
        anomalous = [
            alice.event(login, at(day, 9, 0)),
            alice.event(
                login,
                at(day, 9, 20),
                country_code="AU",
                city="Sydney",
                latitude=-33.87,
                longitude=151.21,
            ),
        ]
    elif name == "threshold_rules":
        params = {
            "rules": [
                {
                    "name": "five failures",
                    "type": "login_failure",
                    "count": 5,
                    "window_seconds": 300,
                    "group_by": "user_id",
                    "severity": "high",
                }
            ]
        }
        normal = [alice.event(failure, at(day, 9, 0)), alice.event(failure, at(day, 9, 1))]
        anomalous = [
            alice.event(failure, at(day, 9, 0) + timedelta(seconds=10 * i)) for i in range(8)
        ]
    elif name == "session_hijack":
        start = at(day, 10, 0)
        normal = [
            alice.event(login, start, session_id="live-1"),
            alice.api_call(
                start + timedelta(minutes=5), rng, session_id="live-1", source_ip="198.51.100.99"
            ),
        ]
        anomalous = [
            alice.event(login, start, session_id="live-1"),
            alice.api_call(
                start + timedelta(minutes=5),
                rng,
                session_id="live-1",
                source_ip="203.0.113.80",
                country_code="RO",
                device_id="unknown-7731",
                user_agent="curl/8.1",
            ),
        ]
    elif name == "session_risk":
        start = at(day, 10, 0)
        normal = [alice.event(login, start)] + [
            alice.api_call(start + timedelta(minutes=i), rng) for i in range(3)
        ]
        stranger = dict(source_ip="203.0.113.80", device_id="unknown-7731")
        anomalous = [alice.event(login, start, **stranger)] + [
            alice.api_call(
                start + timedelta(minutes=i),
                rng,
                api_method="GET",
                api_path=f"/v1/exports/{i}",
                **stranger,
            )
            for i in range(3)
        ]
    elif name == "dormant_account":
        later = day + timedelta(days=21)
        normal = [alice.event(login, at(day, 10, 0)), alice.api_call(at(day, 10, 5), rng)]
        anomalous = [
            alice.event(login, at(later, 10, 0), device_id="unknown-7731"),
            alice.api_call(
                at(later, 10, 5),
                rng,
                api_method="GET",
                api_path="/admin/users",
                device_id="unknown-7731",
            ),
        ]
    else:
        raise KeyError(f"no built-in scenario for detector {name!r}")
    return Scenario(history, normal, anomalous, params)
