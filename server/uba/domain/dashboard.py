"""The dashboard: what happened in a window, at a glance."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

from uba.domain.errors import InvalidArgument
from uba.domain.events import ActivityType
from uba.domain.risk import RiskAccumulator, RiskPolicy

DEFAULT_WINDOW = timedelta(hours=24)
MAX_WINDOW = timedelta(days=90)
HOUR = timedelta(hours=1)


class DashboardReader(Protocol):
    def window_counts(
        self, start_hour: int, end_hour: int
    ) -> tuple[dict[int, dict[str, int]], int]:
        """Events per (hour since the epoch, type value) in the hours
        start_hour..end_hour, and the distinct users in them."""

    def anomaly_counts(
        self, start: datetime, end: datetime
    ) -> tuple[dict[int, int], dict[str, int]]:
        """Anomalies per hour since the epoch, and per detector."""

    def open_alerts_by_severity(self) -> dict[int, int]: ...

    def risks(self) -> list[tuple[str, float, datetime]]:
        """(user, decayed anomaly weight, as of) of users with any weight."""

    def open_reasons(self, user_ids: Sequence[str]) -> dict[str, list[str]]: ...


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
    open_alerts_by_severity: dict[int, int] = field(default_factory=dict)
    anomalies_by_detector: dict[str, int] = field(default_factory=dict)
    top_risky_users: list[tuple[str, int, list[str]]] = field(default_factory=list)
    analytics_mode: str = "basic"


class DashboardService:
    def __init__(
        self,
        reader: DashboardReader,
        clock: Callable[[], datetime],
        risk: RiskPolicy,
        analytics_mode: str = "basic",
        top_users: int = 10,
    ):
        self._reader = reader
        self._clock = clock
        self._risk = risk
        self._mode = analytics_mode
        self._top_users = top_users

    def get(self, window: timedelta | None) -> Dashboard:
        if window is None or window == timedelta(0):
            window = DEFAULT_WINDOW
        if window < timedelta(0) or window > MAX_WINDOW:
            raise InvalidArgument.single("window", "must be between 0 and 90 days")
        end = self._clock()
        # Whole hours: the window starts at the top of the hour it reaches
        # into, so every figure comes from the hourly rollups.
        first_hour = int((end - window).timestamp() // 3600)
        last_hour = int((end.timestamp() - 1e-6) // 3600)
        start = datetime.fromtimestamp(first_hour * 3600, UTC)
        per_hour, users = self._reader.window_counts(first_hour, last_hour)
        hourly = [
            HourlyBucket(datetime.fromtimestamp(h * 3600, UTC))
            for h in range(first_hour, last_hour + 1)
        ]
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
        anomalies_per_hour, per_detector = self._reader.anomaly_counts(start, end)
        for h, count in anomalies_per_hour.items():
            totals.anomaly_count += count
            if 0 <= h - first_hour < len(hourly):
                hourly[h - first_hour].anomaly_count += count
        by_severity = self._reader.open_alerts_by_severity()
        totals.open_alert_count = sum(by_severity.values())
        return Dashboard(
            start,
            end,
            totals,
            hourly,
            open_alerts_by_severity=by_severity,
            anomalies_by_detector=per_detector,
            top_risky_users=self._top_risky(end),
            analytics_mode=self._mode,
        )

    def _top_risky(self, now: datetime) -> list[tuple[str, int, list[str]]]:
        scored = []
        for user_id, weight, as_of in self._reader.risks():
            risk = RiskAccumulator(weight, as_of).score(self._risk, now)
            if risk > 0:
                scored.append((risk, user_id))
        scored.sort(key=lambda item: (-item[0], item[1]))
        top = scored[: self._top_users]
        reasons = self._reader.open_reasons([u for _, u in top]) if top else {}
        return [(user_id, risk, reasons.get(user_id, [])) for risk, user_id in top]
