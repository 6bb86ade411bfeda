"""Impossible travel: two successful logins further apart than anyone can
travel in the time between them.

Two devices are not one traveller: when the login comes from another device
than the previous one, in a country the user is known in, it is LOW, and
nothing at all when that device is one the user has had for 8 hours or
more (their own phone, where it has been). A phone's carrier (and a
roaming phone's home carrier) places its addresses at its own gateways,
hundreds or thousands of kilometres from the laptop the user is sitting
at; new_device and new_ip judge a device or network never seen. The same
device in two places, or a country new to the user, stays at the
configured severity.

The last login is the last whatever it was, an alarm too (quarantined or
not). When it was a stranger's (an alarm was raised on it, MEDIUM or more,
and it came from no device or network the user had), a login from the
user's familiar device or network is the user back where they work after
that alarm, and says nothing new: the user's own logins at home would
otherwise repeat the stranger's impossible journey for hours, each an
incident apart from the alarm's.
"""

from __future__ import annotations

import math
from types import MappingProxyType

from uba.detectors.base import (
    DetectionContext,
    Detector,
    Finding,
    fmt_duration,
    require_positive,
    require_severity,
)
from uba.domain.anomalies import Feature, Severity
from uba.domain.events import ActivityEvent, ActivityType

EARTH_RADIUS_KM = 6371.0088


def haversine_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in kilometres."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dphi = phi2 - phi1
    dlmb = math.radians(lon2 - lon1)
    a = math.sin(dphi / 2) ** 2 + math.cos(phi1) * math.cos(phi2) * math.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(a)))


def _valid(lat: float | None, lon: float | None) -> bool:
    return lat is not None and lon is not None and -90 <= lat <= 90 and -180 <= lon <= 180


class ImpossibleTravelDetector(Detector):
    name = "impossible_travel"
    version = "1.3"
    description = (
        "Consecutive successful logins whose locations imply a speed above the limit "
        "(e.g. 1000 km/h), ignoring distances within geo-IP error."
    )
    title = "Impossible travel"
    event_types = frozenset({ActivityType.LOGIN_SUCCESS})
    # Two devices far apart repeat what new_device says of the second one
    # (when it is new): an incident counts it once.
    echoes = MappingProxyType({"other_device": "new_device"})

    def __init__(
        self,
        max_speed_kmh: float = 1000.0,
        min_distance_km: float = 300.0,
        min_interval_seconds: float = 60.0,
        severity: str = "high",
    ):
        self.max_speed_kmh = max_speed_kmh
        self.min_distance_km = min_distance_km
        # Floor on the time between logins, so the speed stays finite.
        self.min_interval_seconds = min_interval_seconds
        self.severity = severity

    def check_params(self) -> None:
        require_positive(self, "max_speed_kmh", "min_distance_km", "min_interval_seconds")
        require_severity(self, "severity")

    def score_one(self, event: ActivityEvent, ctx: DetectionContext) -> list[Finding]:
        last = ctx.baseline.last_login
        if (
            last is None
            or not _valid(event.latitude, event.longitude)
            or not _valid(last.latitude, last.longitude)
        ):
            return []
        distance = haversine_km(last.latitude, last.longitude, event.latitude, event.longitude)  # type: ignore[arg-type]
        if distance < self.min_distance_km:
            return []
        if last.stranger and ctx.baseline.in_familiar_context(event, ctx.clock.ts):
            return []  # the user back at their own device or network, after a stranger's alarm
        interval = abs(ctx.clock.ts - last.ts)
        speed = distance / (max(interval, self.min_interval_seconds) / 3600)
        if speed <= self.max_speed_kmh:
            return []
        here = (
            ", ".join(p for p in (event.city, event.country_code) if p)
            or event.source_ip
            or "unknown place"
        )
        event_ids = (last.event_id, event.event_id) if last.event_id else ()
        severity = Severity.parse(self.severity)
        note = ""
        two_devices = bool(
            event.device_id
            and last.device_id
            and event.device_id != last.device_id
            and event.country_code
            and event.country_code in ctx.baseline.countries
        )
        if two_devices:
            if ctx.baseline.in_familiar_context(event, ctx.clock.ts, ("devices",)):
                return []  # the user's own other device, in a country they are known in
            severity = min(severity, Severity.LOW)
            note = (
                f"; {severity.name}: another device than the previous login's, in a country the "
                f"user is known in ({event.country_code}): two devices, not one traveller"
            )
        return [
            Finding(
                score=speed / self.max_speed_kmh,
                severity=severity,
                reason=(
                    f"login from {here} {distance:,.0f} km from {last.place} "
                    f"{fmt_duration(interval)} after the previous login ({speed:,.0f} km/h; limit "
                    f"{self.max_speed_kmh:,.0f} km/h){note}"
                ),
                observed=f"{speed:,.0f} km/h",
                expected=f"at most {self.max_speed_kmh:,.0f} km/h",
                # Two devices: the other device, not the speed, is what it says.
                features=(
                    *((Feature("other_device", 1.0, 1.0),) if two_devices else ()),
                    Feature("speed_kmh", speed, 0.0 if two_devices else 1.0),
                    Feature("distance_km", distance, 0.0),
                    Feature("interval_seconds", interval, 0.0),
                ),
                event_ids=event_ids,
            )
        ]
