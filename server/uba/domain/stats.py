"""The bounded building blocks of a baseline: running statistics, capped
maps of known values, the last login, and the day and hour in progress.
Each serialises to plain JSON and round-trips exactly."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from uba.domain.clock import from_ts

# Bound on a map of known values; the least recently seen entry goes.
KNOWN_VALUES_CAP = 200


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
            last = entries[value]
            last[0] += 1
            if ts > last[2]:
                last[2] = ts
            elif ts < last[1]:
                last[1] = ts
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
    device_id: str = ""
    # An alarm (MEDIUM or more) was raised on this login, which came from no
    # device or network the user had: a stranger's, most likely.
    stranger: bool = False

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
