"""Alerts: when anomalies become something an analyst must look at, and the
analyst's workflow (acknowledge, resolve). Pure logic; storage assigns the
`seq` numbers and persists what these functions return.

Grouping: anomalies of one detector for one user that follow each other
within the cool-down join the open alert instead of opening new ones, so a
burst of 500 failed logins is one alert with 500 anomalies, not 500 alerts.
Suppression: after an alert is resolved as benign or a false positive, the
same detector stays quiet for that user for a while (the user really is
travelling), except for CRITICAL anomalies.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from uba.domain.anomalies import Anomaly, Severity
from uba.domain.errors import FailedPrecondition, InvalidArgument
from uba.domain.ids import new_uuid7

# Anomaly ids an alert lists (the latest first); anomaly_count keeps the total.
MAX_ANOMALY_IDS = 100


class Triaged(Protocol):
    """What the analyst's workflow (`take`, `close`) changes: alerts and
    incidents alike."""

    status: Any  # AlertStatus or IncidentStatus: OPEN, ACKNOWLEDGED, RESOLVED
    resolution: Resolution | None
    acknowledged_at: datetime | None
    acknowledged_by: str
    resolved_at: datetime | None
    resolved_by: str
    note: str
    updated_at: datetime


T = TypeVar("T", bound=Triaged)


class AlertStatus(enum.Enum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class Resolution(enum.Enum):
    TRUE_POSITIVE = "true_positive"
    # Unusual but legitimate (travel, new laptop).
    BENIGN = "benign"
    # The detector was wrong.
    FALSE_POSITIVE = "false_positive"

    @property
    def readmits_events(self) -> bool:
        """Whether the alert's quarantined events should now be learned
        (DetectionEngine.admit) and the detector suppressed for a while."""
        return self is not Resolution.TRUE_POSITIVE


@dataclass(slots=True)
class Alert:
    alert_id: str
    user_id: str
    detector: str
    severity: Severity
    title: str
    reason: str
    created_at: datetime
    updated_at: datetime
    first_seen_at: datetime
    last_seen_at: datetime
    status: AlertStatus = AlertStatus.OPEN
    # Assigned by storage on every change; 0 until stored.
    seq: int = 0
    anomaly_ids: list[str] = field(default_factory=list)
    anomaly_count: int = 0
    user_risk: int = 0
    acknowledged_at: datetime | None = None
    acknowledged_by: str = ""
    resolved_at: datetime | None = None
    resolved_by: str = ""
    resolution: Resolution | None = None
    note: str = ""
    # MITRE ATT&CK ids of its detector (uba.domain.attack).
    tactics: list[str] = field(default_factory=list)
    techniques: list[str] = field(default_factory=list)
    # The incident it was last correlated into ("" before incidents).
    incident_id: str = ""

    @property
    def is_open(self) -> bool:
        """Open or acknowledged: still collecting anomalies."""
        return self.status is not AlertStatus.RESOLVED


@dataclass(frozen=True, slots=True)
class AlertPolicy:
    # Anomalies within this time after the alert's latest one join it.
    cooldown: timedelta = timedelta(hours=1)
    # Quiet period for a user+detector after a benign/false-positive resolution.
    suppression: timedelta = timedelta(hours=24)
    # Anomalies below this severity are recorded but raise no alert.
    min_severity: Severity = Severity.LOW
    # Anomalies at or above this severity alert even while suppressed.
    unsuppressible: Severity = Severity.CRITICAL
    # Alert titles by detector name (DetectionEngine.titles).
    titles: Mapping[str, str] = field(default_factory=dict)

    def apply(
        self,
        anomaly: Anomaly,
        open_alert: Alert | None,
        suppressed_until: datetime | None,
        now: datetime,
        *,
        user_risk: int | None = None,
    ) -> tuple[Alert, bool] | None:
        """Joins `anomaly` to `open_alert` (the user's latest open alert of
        the same detector, if any) or opens a new alert. Returns the alert
        and whether it is new, or None when no alert is due (below the
        minimum severity, or suppressed). Sets `anomaly.alert_id`; mutates
        and returns `open_alert` when joining."""
        if anomaly.severity < self.min_severity:
            return None
        if (
            suppressed_until is not None
            and now < suppressed_until
            and anomaly.severity < self.unsuppressible
        ):
            return None
        occurred = anomaly.occurred_at or now
        if open_alert is not None:
            if (open_alert.user_id, open_alert.detector) != (anomaly.user_id, anomaly.detector):
                raise ValueError("open_alert belongs to another user or detector")
            if open_alert.is_open and occurred - open_alert.last_seen_at <= self.cooldown:
                self._join(open_alert, anomaly, occurred, now, user_risk)
                return open_alert, False
        alert = Alert(
            alert_id=new_uuid7(),
            user_id=anomaly.user_id,
            detector=anomaly.detector,
            severity=anomaly.severity,
            title=self.titles.get(anomaly.detector)
            or anomaly.detector.replace("_", " ").capitalize(),
            reason=anomaly.reason,
            created_at=now,
            updated_at=now,
            first_seen_at=occurred,
            last_seen_at=occurred,
            anomaly_ids=[anomaly.anomaly_id],
            anomaly_count=1,
            user_risk=user_risk or 0,
            tactics=list(anomaly.tactics),
            techniques=list(anomaly.techniques),
        )
        anomaly.alert_id = alert.alert_id
        return alert, True

    @staticmethod
    def _join(
        alert: Alert, anomaly: Anomaly, occurred: datetime, now: datetime, user_risk: int | None
    ) -> None:
        alert.anomaly_ids.insert(0, anomaly.anomaly_id)
        del alert.anomaly_ids[MAX_ANOMALY_IDS:]
        alert.anomaly_count += 1
        alert.severity = max(alert.severity, anomaly.severity)
        alert.reason = anomaly.reason
        alert.first_seen_at = min(alert.first_seen_at, occurred)
        alert.last_seen_at = max(alert.last_seen_at, occurred)
        alert.updated_at = now
        if user_risk is not None:
            alert.user_risk = user_risk
        anomaly.alert_id = alert.alert_id

    def suppressed_until(self, alert: Alert) -> datetime | None:
        """Until when the alert's user+detector is suppressed after its
        resolution; None when it is not (open, or a true positive)."""
        if (
            alert.resolution is None
            or not alert.resolution.readmits_events
            or alert.resolved_at is None
        ):
            return None
        return alert.resolved_at + self.suppression


# The analyst's workflow, one for alerts and incidents alike: each has a
# status enum with OPEN, ACKNOWLEDGED and RESOLVED, and the same fields.


def take(item: T, what: str, who: str, note: str, now: datetime) -> T:
    """An analyst takes `item` (named `what`, e.g. "alert ID"). Only an
    OPEN one can be acknowledged."""
    status = type(item.status)
    if not who.strip():
        raise InvalidArgument.single("acknowledged_by", "who acknowledges must be named")
    if item.status is not status.OPEN:
        kind = what.split(" ", 1)[0]
        raise FailedPrecondition(
            f"{what} is {item.status.value}; only an open {kind} can be acknowledged"
        )
    item.status = status.ACKNOWLEDGED
    item.acknowledged_at = now
    item.acknowledged_by = who
    if note:
        item.note = note
    item.updated_at = now
    return item


def close(
    item: T, what: str, resolution: Resolution | None, who: str, note: str, now: datetime
) -> T:
    """An analyst closes `item` with a classification. Open and
    acknowledged ones can be resolved, once."""
    status = type(item.status)
    if not isinstance(resolution, Resolution):
        raise InvalidArgument.single(
            "resolution", "a resolution is required: true_positive, benign or false_positive"
        )
    if not who.strip():
        raise InvalidArgument.single("resolved_by", "who resolves must be named")
    if item.status is status.RESOLVED:
        raise FailedPrecondition(
            f"{what} is already resolved "
            f"({item.resolution.value if item.resolution else 'unknown'})"
        )
    item.status = status.RESOLVED
    item.resolution = resolution
    item.resolved_at = now
    item.resolved_by = who
    if note:
        item.note = note
    item.updated_at = now
    return item


def acknowledge(alert: Alert, who: str, note: str, now: datetime) -> Alert:
    """An analyst takes the alert."""
    return take(alert, f"alert {alert.alert_id}", who, note, now)


def resolve(
    alert: Alert, resolution: Resolution | None, who: str, note: str, now: datetime
) -> Alert:
    """An analyst closes the alert with a classification."""
    return close(alert, f"alert {alert.alert_id}", resolution, who, note, now)
