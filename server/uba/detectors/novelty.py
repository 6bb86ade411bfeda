"""First login from a new country, device or source address, for users
whose baseline is mature (before that, everything is new)."""

from __future__ import annotations

import math
from typing import ClassVar

from uba.detectors.base import DetectionContext, Detector, Finding, require_severity
from uba.domain.anomalies import Feature, Severity
from uba.domain.baselines import KnownValues
from uba.domain.events import ActivityEvent, ActivityType


class _FirstSeenDetector(Detector):
    """Shared logic: the event's value is absent from a map of known values."""

    event_types = frozenset({ActivityType.LOGIN_SUCCESS})
    # The event attribute, the baseline map, and what to call it in reasons.
    event_field: ClassVar[str]
    baseline_field: ClassVar[str]
    noun: ClassVar[str]

    def __init__(self, severity: str = "low"):
        self.severity = severity

    def check_params(self) -> None:
        require_severity(self, "severity")

    def score_one(self, event: ActivityEvent, ctx: DetectionContext) -> list[Finding]:
        baseline = ctx.baseline
        if not baseline.mature:
            return []
        value = getattr(event, self.event_field)
        known: KnownValues = getattr(baseline, self.baseline_field)
        # An empty map means events never carried the field: nothing to compare.
        if not value or not len(known) or value in known:
            return []
        top = known.most_common(3)
        listed = ", ".join(f"{v} ({n})" for v, n in top)
        more = f" and {len(known) - len(top)} more" if len(known) > len(top) else ""
        where = f" ({event.city}, {event.country_code})" if self.event_field != "country_code" and event.city else ""
        return [Finding(
            score=math.log1p(baseline.login_count),
            severity=Severity.parse(self.severity),
            reason=(f"first login from new {self.noun} {value}{where} after {baseline.login_count} logins; "
                    f"known: {listed}{more}"),
            observed=value,
            expected=", ".join(v for v, _ in top) + more,
            features=(Feature(f"known_{self.baseline_field}", float(len(known)), 1.0),),
            baseline_observations=baseline.login_count,
            baseline_mature=True,
        )]


class NewCountryDetector(_FirstSeenDetector):
    name = "new_country"
    version = "1.0"
    description = "Successful login from a country the user (with a mature baseline) has never logged in from."
    title = "Login from a new country"
    event_field = "country_code"
    baseline_field = "countries"
    noun = "country"

    def __init__(self, severity: str = "medium"):
        self.severity = severity


class NewDeviceDetector(_FirstSeenDetector):
    name = "new_device"
    version = "1.0"
    description = "Successful login from a device id the user (with a mature baseline) has never used."
    title = "Login from a new device"
    event_field = "device_id"
    baseline_field = "devices"
    noun = "device"

    def __init__(self, severity: str = "low"):
        self.severity = severity


class NewIpDetector(_FirstSeenDetector):
    name = "new_ip"
    version = "1.0"
    description = "Successful login from a source address the user (with a mature baseline) has never used."
    title = "Login from a new address"
    event_field = "source_ip"
    baseline_field = "source_ips"
    noun = "address"

    def __init__(self, severity: str = "low"):
        self.severity = severity
