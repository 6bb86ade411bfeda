"""An event's time as baselines and detectors use it: the user's IANA
zone (resolved once per name), the local hour of the week, the local
calendar day and the UTC clock hour.

Times are kept as float Unix seconds: cheap to compare, exact in JSON.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timezone
from zoneinfo import ZoneInfo

HOURS_PER_WEEK = 168


@functools.lru_cache(maxsize=1024)
def zone_named(name: str) -> ZoneInfo | None:
    """The zone of an IANA name, or None when the name is unknown."""
    try:
        return ZoneInfo(name)
    except Exception:  # ZoneInfoNotFoundError, ValueError for odd paths, OSError
        return None


def resolve_zone(*names: str) -> tuple[str, ZoneInfo | timezone]:
    """The first valid IANA zone among `names`, else UTC."""
    for name in names:
        if name:
            zone = zone_named(name)
            if zone is not None:
                return name, zone
    return "UTC", UTC


def from_ts(ts: float | None) -> datetime | None:
    """Unix seconds to an aware UTC datetime (None stays None)."""
    return None if ts is None else datetime.fromtimestamp(ts, tz=UTC)


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
