"""The dashboard: what happened in a window, at a glance."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Protocol

from uba.domain.errors import InvalidArgument
from uba.domain.events import ActivityType

DEFAULT_WINDOW = timedelta(hours=24)
MAX_WINDOW = timedelta(days=90)
HOUR = timedelta(hours=1)


class WindowCounter(Protocol):
    def window_counts(self, start: datetime, end: datetime) -> tuple[dict[int, dict[str, int]], int]:
        """Events per (hour since the epoch, type value) and distinct users."""


@dataclass(slots=True)
class HourlyBucket:
    start_time: datetime
    event_count: int = 0
    login_failure_count: int = 0
    anomaly_count: int = 0


@dataclass(slots=True)
class Totals:
    event_count: int = 0
    user_count: int = 0
    login_success_count: int = 0
    login_failure_count: int = 0
    logout_count: int = 0
    api_call_count: int = 0
    anomaly_count: int = 0
    open_alert_count: int = 0


@dataclass(slots=True)
class Dashboard:
    window_start: datetime
    window_end: datetime
    totals: Totals
    hourly: list[HourlyBucket]
    open_alerts_by_severity: dict[str, int] = field(default_factory=dict)
    anomalies_by_detector: dict[str, int] = field(default_factory=dict)
    top_risky_users: list[tuple[str, int, list[str]]] = field(default_factory=list)
    analytics_mode: str = "basic"


class DashboardService:
    def __init__(self, counter: WindowCounter, clock: Callable[[], datetime], analytics_mode: str = "basic"):
        self._counter = counter
        self._clock = clock
        self._mode = analytics_mode

    def get(self, window: timedelta | None) -> Dashboard:
        if window is None or window == timedelta(0):
            window = DEFAULT_WINDOW
        if window < timedelta(0) or window > MAX_WINDOW:
            raise InvalidArgument.single("window", "must be between 0 and 90 days")
        end = self._clock()
        start = end - window
        per_hour, users = self._counter.window_counts(start, end)
        first_hour = int(start.timestamp() // 3600)
        last_hour = int((end.timestamp() - 1e-6) // 3600)
        hourly = [HourlyBucket(datetime.fromtimestamp(h * 3600, timezone.utc)) for h in range(first_hour, last_hour + 1)]
        totals = Totals(user_count=users)
        for h, by_type in per_hour.items():
            bucket = hourly[h - first_hour] if 0 <= h - first_hour < len(hourly) else None
            for type_value, count in by_type.items():
                totals.event_count += count
                if type_value == ActivityType.LOGIN_SUCCESS.value:
                    totals.login_success_count += count
                elif type_value == ActivityType.LOGIN_FAILURE.value:
                    totals.login_failure_count += count
                elif type_value == ActivityType.LOGOUT.value:
                    totals.logout_count += count
                elif type_value == ActivityType.API_CALL.value:
                    totals.api_call_count += count
                if bucket is not None:
                    bucket.event_count += count
                    if type_value == ActivityType.LOGIN_FAILURE.value:
                        bucket.login_failure_count += count
        return Dashboard(start, end, totals, hourly, analytics_mode=self._mode)
