"""First sight of a country, device or network for a user, on every event
that carries the field (not only logins).

Addresses are judged by network (the /24 of IPv4, the /48 of IPv6): a new
address in a known network is not new. Each value is also looked up among
the user's peers and the population (uba.domain.peers):
- while the user's baseline is immature, a value someone else in the
  organisation used in the last 30 days is not reported, and one nobody
  used is reported LOW, saying the baseline is not mature (never silent
  once the user has a day of history; the very first event has nothing to
  be compared with);
- when many users adopted the same value within a week (a VPN change, a
  laptop refresh, an office move), it is an organisation-wide change, not
  an individual anomaly: networks and devices are then not reported, a
  country is lowered to LOW, each with the reason; but a new device is
  excused only from a network the user has had for 8 hours, and a new
  network only on such a device (a change brings one new thing at a time:
  an attacker's laptop of the refreshed kind comes from its own network).
  Adopters keep the rest of their context: a use counts for peers, and a
  first use as adoption, only when the event's device (for networks,
  countries) or network (for devices) has been the user's for 8 hours
  (in_familiar_context). An attacker taking over several accounts from
  one network on its own laptop adopts nothing, and cannot become "the
  change";
- a new country reached at a feasible speed from the last login on a known
  device (plausible travel) is lowered to LOW; one that peers also use is
  lowered to LOW; a failed login from a new country is LOW (an attempt:
  the failure detectors judge attacks on the password); one nobody else
  uses keeps its severity.
"""

from __future__ import annotations

import math
from typing import ClassVar

from uba.detectors.base import (
    DetectionContext,
    Detector,
    Finding,
    fmt_duration,
    require_fraction,
    require_positive,
    require_severity,
)
from uba.detectors.travel import haversine_km
from uba.domain.anomalies import Feature, Severity
from uba.domain.event_keys import agent_kind, network_of
from uba.domain.events import UNPROVEN_TYPES, ActivityEvent, ActivityType
from uba.domain.peers import PeerActivity, Usage
from uba.domain.shared_state import CACHED_USERS
from uba.domain.stats import KnownValues
from uba.domain.user_baseline import UserBaseline


def device_kind(event: ActivityEvent) -> str:
    """What kind of device an event comes from, for recognising a fleet
    refresh: the user agent without version numbers, else "device"."""
    return agent_kind(event.user_agent) if event.user_agent else "device"


class _FirstSeenDetector(Detector):
    """Shared logic: the event's value is absent from a map of known values."""

    event_types = None  # any event carrying the field
    # The baseline map, the peer-activity kind and what to call it in reasons.
    baseline_field: ClassVar[str]
    kind: ClassVar[str]
    noun: ClassVar[str]
    # What an adopter keeps (UserBaseline.in_familiar_context).
    kept_context: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        severity: str = "low",
        min_adopters: int = 3,
        org_change_share: float = 0.2,
        max_values: int = CACHED_USERS,
    ):
        self.severity = severity
        self.min_adopters = min_adopters
        self.org_change_share = org_change_share
        # Values kept in the peer windows (the least recently used go first).
        self.max_values = max_values

    def check_params(self) -> None:
        require_severity(self, "severity")
        require_positive(self, "min_adopters", "max_values")
        require_fraction(self, "org_change_share")

    # -- per kind ---------------------------------------------------------------

    def value_of(self, event: ActivityEvent) -> str:
        raise NotImplementedError

    def shared_value(self, event: ActivityEvent, value: str) -> str:
        """The value as peers share it (a device id is the user's own: its kind is shared)."""
        return value

    def judge(
        self,
        event: ActivityEvent,
        ctx: DetectionContext,
        value: str,
        usage: Usage,
        severity: Severity,
    ) -> tuple[Severity | None, str]:
        """The severity (None: do not report) and a note for the reason."""
        if usage.org_change(self.min_adopters, self.org_change_share):
            if ctx.baseline.in_familiar_context(event, ctx.clock.ts, self.kept_context):
                return None, ""
            # A change brings one new thing at a time (a refresh new laptops
            # on known networks, a VPN change known laptops on a new range):
            # a new device from a new network is not part of it.
            return severity, (
                f"not excused by the change ({usage.adopters} users adopted it this week): "
                f"the {_KEPT_NOUN[self.kept_context[0]]} is new to the user too"
            )
        return severity, ""

    # -- the shared logic ---------------------------------------------------------

    def _activity(self, ctx: DetectionContext) -> PeerActivity:
        return PeerActivity(ctx.shared, self.kind, max_keys=int(self.max_values))

    def score_one(self, event: ActivityEvent, ctx: DetectionContext) -> list[Finding]:
        value = self.value_of(event)
        if not value:
            self.pending_ = None
            return []
        baseline = ctx.baseline
        known: KnownValues = getattr(baseline, self.baseline_field)
        entry = known.entries.get(value)
        # Peers are told of the user's use at most about twice a day: their
        # windows hold each user once for 30 days, so more would be wasted.
        self.pending_ = (
            None if entry is not None and ctx.clock.ts - entry[2] < _OBSERVE_EVERY else event
        )
        # An empty map means events never carried the field: nothing to compare.
        if entry is not None or not known.entries or baseline.days_covered < 2:
            return []
        usage = self._activity(ctx).usage(
            event.user_id,
            baseline.effective_peer_group or event.peer_group,
            self.shared_value(event, value),
            ctx.clock.ts,
        )
        mature = baseline.mature_for("places")
        if mature:
            severity, note = self.judge(event, ctx, value, usage, Severity.parse(self.severity))
        elif usage.population or usage.peers:
            return []  # someone else here uses it: nothing to say about a user still being learned
        else:
            severity, note = (
                Severity.LOW,
                (
                    f"user baseline not mature ({baseline.maturity_note()}); "
                    f"judged against the organisation: no one else used it in 30 days"
                ),
            )
        if severity is None:
            return []
        top = known.most_common(3)
        listed = ", ".join(f"{v} ({n})" for v, n in top)
        more = f" and {len(known) - len(top)} more" if len(known) > len(top) else ""
        where = (
            f" ({event.city}, {event.country_code})"
            if self.kind != "country" and event.city
            else ""
        )
        seen = baseline.observation_count
        return [
            Finding(
                score=math.log1p(seen) * (2.0 if severity >= Severity.MEDIUM else 1.0),
                severity=severity,
                reason=(
                    f"first {_LABELS.get(event.type, event.type.value.replace('_', ' '))} from new "
                    f"{self.noun} {value}{where} after {seen:,} events; known: {listed}{more}; "
                    f"{usage.describe(self.noun)}" + (f"; {note}" if note else "")
                ),
                observed=value,
                expected=", ".join(v for v, _ in top) + more,
                features=(
                    Feature(f"known_{self.baseline_field}", float(len(known)), 1.0),
                    Feature("peers_using", float(usage.peers), 0.0),
                    Feature("population_using", float(usage.population), 0.0),
                ),
                baseline_observations=seen,
                baseline_mature=mature,
            )
        ]

    def learn_one(self, event: ActivityEvent, ctx: DetectionContext) -> None:
        pending, self.pending_ = getattr(self, "pending_", None), None
        if pending is not event or event.type in UNPROVEN_TYPES or ctx.alarmed:
            # A failed try from somewhere is no one's use of it (a stuffing
            # wave would otherwise make its countries "used by 80 peers"),
            # nor is an alarm (two victims of one attacker would excuse the
            # third: "2 peers work from there").
            return
        baseline = ctx.baseline
        ts = ctx.clock.ts
        if not baseline.in_familiar_context(event, ts, self.kept_context):
            # Nor is a use from a device (network) the user did not have
            # 8 hours ago: an attacker's, in the minutes after its alarm.
            return
        value = self.value_of(event)
        # After learning: a value learned for the first time has count 1.
        # Quarantined events are not learned and do not count as adoption.
        new_to_user = not ctx.quarantined and _first_use(
            getattr(baseline, self.baseline_field), value, ts
        )
        self._activity(ctx).observe(
            event.user_id,
            baseline.effective_peer_group or event.peer_group,
            self.shared_value(event, value),
            ts,
            new_to_user,
        )


_OBSERVE_EVERY = 12 * 3600.0
_KEPT_NOUN = {"networks": "network", "devices": "device"}
_LABELS = {ActivityType.LOGIN_SUCCESS: "login", ActivityType.API_CALL: "API call"}


def _first_use(known: KnownValues, value: str, ts: float) -> bool:
    entry = known.entries.get(value)
    return entry is not None and entry[0] == 1 and entry[1] == ts


class NewCountryDetector(_FirstSeenDetector):
    name = "new_country"
    version = "2.3"
    description = (
        "Event from a country the user has never been seen in (any event type); lowered for "
        "plausible travel, countries peers use, and organisation-wide changes."
    )
    title = "Activity from a new country"
    baseline_field = "countries"
    kind = "country"
    noun = "country"
    kept_context = ("devices",)

    def __init__(
        self,
        severity: str = "medium",
        min_adopters: int = 3,
        org_change_share: float = 0.2,
        max_travel_speed_kmh: float = 900.0,
        min_peers: int = 2,
        max_values: int = CACHED_USERS,
    ):
        self.severity = severity
        self.min_adopters = min_adopters
        self.org_change_share = org_change_share
        self.max_travel_speed_kmh = max_travel_speed_kmh
        self.min_peers = min_peers
        self.max_values = max_values

    def check_params(self) -> None:
        super().check_params()
        require_positive(self, "max_travel_speed_kmh", "min_peers")

    def value_of(self, event: ActivityEvent) -> str:
        return event.country_code

    def judge(self, event, ctx, value, usage, severity):
        if severity <= Severity.LOW:
            return severity, ""
        if event.type is ActivityType.LOGIN_FAILURE:
            # An attempt that failed: evidence that the account is targeted
            # (the failure detectors' job), not that someone got in.
            return Severity.LOW, "lowered: a failed login (nobody got in from there)"
        if usage.org_change(self.min_adopters, self.org_change_share):
            return Severity.LOW, (
                f"lowered: {usage.adopters} other users started appearing from {value} this "
                f"week (organisation-wide change)"
            )
        travel = plausible_travel(event, ctx.baseline, ctx.clock.ts, self.max_travel_speed_kmh)
        if travel:
            return Severity.LOW, f"lowered: plausible travel ({travel})"
        if usage.peers >= self.min_peers:
            return Severity.LOW, f"lowered: {usage.peers} peers work from {value}"
        return severity, ""


def plausible_travel(
    event: ActivityEvent, baseline: UserBaseline, ts: float, max_speed_kmh: float
) -> str:
    """A description when the user could have travelled here from the last
    login on a device they know, else ""."""
    last = baseline.last_login
    if last is None or not event.device_id or event.device_id not in baseline.devices:
        return ""
    interval = ts - last.ts
    if interval <= 0:
        return ""
    if None in (event.latitude, event.longitude, last.latitude, last.longitude):
        # No coordinates: a known device and time enough for a flight.
        return (
            f"known device {event.device_id}, {fmt_duration(interval)} after the last login"
            if interval >= 6 * 3600
            else ""
        )
    distance = haversine_km(last.latitude, last.longitude, event.latitude, event.longitude)  # type: ignore[arg-type]
    speed = distance / (interval / 3600)
    if speed > max_speed_kmh:
        return ""
    return (
        f"{distance:,.0f} km from {last.place} in {fmt_duration(interval)} ({speed:,.0f} km/h) "
        f"on known device {event.device_id}"
    )


class NewDeviceDetector(_FirstSeenDetector):
    name = "new_device"
    version = "2.3"
    description = (
        "Event from a device id the user has never used (any event type); not reported during a "
        "fleet refresh (many users on new devices of the same kind within a week)."
    )
    title = "Activity from a new device"
    baseline_field = "devices"
    kind = "device"
    noun = "device"
    kept_context = ("networks",)

    def value_of(self, event: ActivityEvent) -> str:
        return event.device_id

    def shared_value(self, event: ActivityEvent, value: str) -> str:
        return device_kind(event)


class NewIpDetector(_FirstSeenDetector):
    name = "new_ip"
    version = "2.3"
    description = (
        "Event from a network (/24 IPv4, /48 IPv6) the user has never used (any event type); not "
        "reported when many users moved to it within a week (a VPN or office change)."
    )
    title = "Activity from a new network"
    baseline_field = "networks"
    kind = "network"
    noun = "network"
    kept_context = ("devices",)

    def value_of(self, event: ActivityEvent) -> str:
        return network_of(event.source_ip) if event.source_ip else ""
