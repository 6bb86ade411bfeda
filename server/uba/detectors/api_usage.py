"""API usage: call-rate spikes, first use of an endpoint, data-volume spikes
(exfiltration) and error-rate spikes, all per UTC hour.

Rate detectors read the counts of the hour in progress from the baseline
(which also counts quarantined events, without learning them) and report
when the count reaches the threshold and at each doubling after, not on
every event above it.
"""

from __future__ import annotations

import math

from uba.detectors.base import (
    DetectionContext,
    Detector,
    Finding,
    escalation_level,
    fmt_bytes,
    fmt_count,
    reference_stats,
    require_fraction,
    require_positive,
    require_severity,
    spike_threshold,
)
from uba.domain.anomalies import Feature, Severity
from uba.domain.event_keys import is_privileged, normalize_endpoint
from uba.domain.events import ActivityEvent, ActivityType
from uba.domain.peers import PeerActivity
from uba.domain.shared_state import CACHED_USERS

_API_CALL = ActivityType.API_CALL
_DAY = 86400.0


def _hourly_spike(
    value: float,
    reference,
    min_std: float,
    fmt,
    observed: str,
    headline: str,
    severity: Severity,
    feature: str,
) -> Finding:
    """The finding of an hourly quantity (API calls, bytes) far above its
    usual level; the reason reads "HEADLINE; usual MEAN ± SD per active hour"."""
    stats = reference.stats
    spread = max(stats.stddev, min_std, 0.1 * stats.mean)
    expected = f"{fmt(stats.mean)} ± {fmt(stats.stddev)} per active hour"
    source = "" if reference.mature else f" ({reference.label})"
    return Finding(
        score=max(0.0, (value - stats.mean) / spread),
        severity=severity,
        reason=f"{headline}; usual {expected}{source}",
        observed=observed,
        expected=expected,
        features=(Feature(feature, float(value), 1.0),),
        baseline_observations=stats.count,
        baseline_mature=reference.mature,
    )


class ApiRateDetector(Detector):
    name = "api_rate"
    version = "1.0"
    description = (
        "More API calls in an hour than the user's (or peer group's) usual calls per active hour."
    )
    title = "API call rate spike"
    event_types = frozenset({_API_CALL})

    def __init__(
        self,
        z_threshold: float = 4.0,
        min_calls: int = 100,
        min_hours: int = 10,
        min_std: float = 5.0,
    ):
        self.z_threshold = z_threshold
        self.min_calls = min_calls
        self.min_hours = min_hours
        self.min_std = min_std

    def check_params(self) -> None:
        require_positive(self, "z_threshold", "min_calls", "min_hours", "min_std")

    def score_one(self, event: ActivityEvent, ctx: DetectionContext) -> list[Finding]:
        hour = ctx.baseline.hour_so_far(ctx.clock)
        if hour is None:
            return []
        reference = reference_stats(ctx, "api_calls_per_hour", self.min_hours)
        if reference is None:
            return []
        stats = reference.stats
        threshold = spike_threshold(stats, self.z_threshold, self.min_calls, self.min_std)
        calls = hour.api_calls + 1
        level = escalation_level(calls, threshold)
        if level <= escalation_level(hour.api_calls, threshold):
            return []
        return [
            _hourly_spike(
                calls,
                reference,
                self.min_std,
                fmt_count,
                f"{calls:,} calls",
                f"{calls:,} API calls this hour",
                Severity.LOW.raised_by(level - 1, Severity.HIGH),
                "api_calls_this_hour",
            )
        ]


class NewEndpointDetector(Detector):
    """First use of an endpoint, judged against the user's peers: "first use
    by this user, and none of their peers used it in 30 days" is much
    stronger than "first use by this user, common in their team".

    - used by peers (or, without a peer group, by others): LOW;
    - rolled out (many users started using it this week): LOW, saying so;
    - used by no peer: LOW (the first user of a rollout looks the same; the
      score is higher, and session_risk counts it);
    - a privileged endpoint (/admin, roles, keys) no peer used, by a user
      who never called a privileged endpoint: MEDIUM, HIGH when nobody at all
      used it; by someone who already administers: LOW;
    - while the user's API history is immature: silent when someone else
      uses the endpoint, else judged as above but one level lower, saying the
      baseline is not mature; at the configured severity while nobody's
      baseline is mature yet (a deployment's first days, when "no peer used
      it" covers days, not 30).
    A peer group smaller than `min_group_users` active users is not a
    reference: the population is used instead. A call that any detector
    rated MEDIUM or more (or a quarantined one) is not a peer's use: an
    alarm vouches for no one (three accounts of one team misused one after
    the other would otherwise make the third one's calls "common in the
    peer group")."""

    name = "api_new_endpoint"
    version = "2.3"
    description = (
        "First call to an API endpoint by a user, judged against the peer group and the population "
        "(privileged endpoints no peer used rate higher; rollouts lower)."
    )
    title = "First use of an API endpoint"
    event_types = frozenset({_API_CALL})

    def __init__(
        self,
        min_api_calls: int = 50,
        severity: str = "low",
        min_group_users: int = 3,
        min_adopters: int = 3,
        rollout_share: float = 0.2,
        min_common_peers: int = 2,
        common_share: float = 0.05,
        max_values: int = CACHED_USERS,
    ):
        self.min_api_calls = min_api_calls
        self.severity = severity
        self.min_group_users = min_group_users
        self.min_adopters = min_adopters
        self.rollout_share = rollout_share
        # "Common in the team": at least this many peers and this share of the group.
        self.min_common_peers = min_common_peers
        self.common_share = common_share
        # Endpoints kept in the peer windows (the least recently used go first).
        self.max_values = max_values

    def check_params(self) -> None:
        require_positive(
            self,
            "min_api_calls",
            "min_group_users",
            "min_adopters",
            "min_common_peers",
            "max_values",
        )
        require_severity(self, "severity")
        require_fraction(self, "rollout_share", "common_share")

    def _activity(self, ctx: DetectionContext) -> PeerActivity:
        return PeerActivity(ctx.shared, "endpoint", max_keys=int(self.max_values))

    def score_one(self, event: ActivityEvent, ctx: DetectionContext) -> list[Finding]:
        self.pending_ = None
        if not (event.api_method or event.api_path):
            return []
        baseline = ctx.baseline
        endpoint = normalize_endpoint(event.api_method, event.api_path)
        entry = baseline.endpoints.entries.get(endpoint)
        # Peers are told of the user's use at most about twice a day (their
        # windows hold each user once for 30 days).
        if entry is None or ctx.clock.ts - entry[2] >= 12 * 3600.0:
            self.pending_ = event
        if entry is not None or not baseline.endpoints.entries or baseline.days_covered < 2:
            return []
        group = baseline.effective_peer_group or event.peer_group
        usage = self._activity(ctx).usage(event.user_id, group, endpoint, ctx.clock.ts)
        has_group = bool(group) and usage.group_size >= self.min_group_users
        used_nearby = usage.peers if has_group else usage.population
        mature = baseline.mature_for("api") and baseline.api_call_count >= self.min_api_calls
        privileged = is_privileged(endpoint)
        base = Severity.parse(self.severity)
        if usage.org_change(self.min_adopters, self.rollout_share):
            severity, note = (
                base,
                f"rolled out: {usage.adopters} other users started using it this week",
            )
        elif used_nearby >= max(
            self.min_common_peers,
            self.common_share * (usage.group_size if has_group else usage.population_size),
        ):
            severity, note = (
                base,
                ("common in peer group" if has_group else "used by others")
                + f" ({used_nearby} users in 30 days)",
            )
        elif privileged and any(
            is_privileged(e) and entry[1] < ctx.clock.ts - _DAY
            for e, entry in baseline.endpoints.entries.items()
        ):
            # Only on a novel privileged call: someone who administered before today.
            severity, note = (
                base,
                "privileged and not common in peer group, but the user called privileged "
                "endpoints before today",
            )
        elif privileged:
            severity = Severity.HIGH if not usage.population else Severity.MEDIUM
            note = (
                "privileged, and no peer used it in 30 days"
                if not used_nearby
                else f"privileged, and only {used_nearby} peers used it in 30 days"
            ) + ("" if usage.population else ", nor anyone else")
        elif not usage.population:
            # The first user of a rollout looks the same: LOW, stronger score.
            severity, note = base, "no one in the organisation used it in 30 days"
        else:
            severity, note = base, f"no peer used it; {usage.population} other users did"
        if not mature:
            if usage.population or usage.peers:
                return []
            severity = Severity(max(int(Severity.LOW), int(severity) - 1))
            note += (
                f"; user baseline not mature ({baseline.maturity_note()}), judged against "
                f"{'peer group ' + group if has_group else 'the population'}"
            )
            if ctx.prior is None and severity > base:
                # Nobody's baseline is mature yet: the service has watched
                # the organisation for days at most, and "no one used it"
                # says little of its 30 days.
                severity = base
                note += f"; {base.name}: no one's baseline is mature yet (a new deployment)"
        known = len(baseline.endpoints)
        return [
            Finding(
                score=math.log1p(baseline.api_call_count)
                * (1 + int(severity) - int(Severity.LOW) + (0.5 if not used_nearby else 0.0)),
                severity=severity,
                reason=(
                    f"first call to {endpoint} after {baseline.api_call_count:,} calls to {known} "
                    f"known endpoints; {note}; {usage.describe('endpoint')}"
                ),
                observed=endpoint,
                expected=f"one of {known} known endpoints",
                features=(
                    Feature("known_endpoints", float(known), 1.0),
                    Feature("peers_using", float(usage.peers), 0.0),
                    Feature("population_using", float(usage.population), 0.0),
                    Feature("privileged", 1.0 if privileged else 0.0, 0.0),
                ),
                baseline_observations=baseline.api_call_count,
                baseline_mature=mature,
            )
        ]

    def learn_one(self, event: ActivityEvent, ctx: DetectionContext) -> None:
        pending, self.pending_ = getattr(self, "pending_", None), None
        if pending is not event:
            return
        endpoint = normalize_endpoint(event.api_method, event.api_path)
        baseline = ctx.baseline
        entry = baseline.endpoints.entries.get(endpoint)
        ts = ctx.clock.ts
        if ctx.quarantined or ctx.alarmed:
            return  # an alarm is not a peer's use (not learned if quarantined)
        if not baseline.in_familiar_context(event, ts):
            return  # from a device or network new to the user: an attacker's, maybe
        new_to_user = entry is not None and entry[0] == 1 and entry[1] == ts
        self._activity(ctx).observe(
            event.user_id,
            baseline.effective_peer_group or event.peer_group,
            endpoint,
            ts,
            new_to_user,
        )


class DataVolumeDetector(Detector):
    name = "data_volume"
    version = "1.0"
    description = (
        "More bytes transferred in an hour than the user's usual bytes per active hour "
        "(exfiltration)."
    )
    title = "Data volume spike"
    # Bytes may come on any event type.
    event_types = None

    def __init__(
        self,
        z_threshold: float = 4.0,
        min_bytes: int = 50_000_000,
        min_hours: int = 10,
        min_std: float = 1_000_000.0,
    ):
        self.z_threshold = z_threshold
        self.min_bytes = min_bytes
        self.min_hours = min_hours
        self.min_std = min_std

    def check_params(self) -> None:
        require_positive(self, "z_threshold", "min_bytes", "min_hours", "min_std")

    def score_one(self, event: ActivityEvent, ctx: DetectionContext) -> list[Finding]:
        if event.bytes_transferred <= 0:
            return []
        hour = ctx.baseline.hour_so_far(ctx.clock)
        if hour is None:
            return []
        reference = reference_stats(ctx, "bytes_per_hour", self.min_hours)
        if reference is None:
            return []
        stats = reference.stats
        threshold = spike_threshold(stats, self.z_threshold, self.min_bytes, self.min_std)
        total = hour.bytes + event.bytes_transferred
        level = escalation_level(total, threshold)
        if level <= escalation_level(hour.bytes, threshold):
            return []
        return [
            _hourly_spike(
                total,
                reference,
                self.min_std,
                fmt_bytes,
                fmt_bytes(total),
                f"{fmt_bytes(total)} transferred this hour",
                Severity.MEDIUM.raised_by(level - 1, Severity.CRITICAL),
                "bytes_this_hour",
            )
        ]


class ApiErrorRateDetector(Detector):
    name = "api_error_rate"
    version = "1.0"
    description = (
        "Share of failing API calls (status >= 400) in an hour far above the user's usual share."
    )
    title = "API error rate spike"
    event_types = frozenset({_API_CALL})

    def __init__(
        self,
        z_threshold: float = 4.0,
        min_calls: int = 20,
        min_share_increase: float = 0.2,
        min_baseline_calls: int = 200,
    ):
        self.z_threshold = z_threshold
        self.min_calls = min_calls
        self.min_share_increase = min_share_increase
        self.min_baseline_calls = min_baseline_calls

    def check_params(self) -> None:
        require_positive(self, "z_threshold", "min_calls", "min_baseline_calls")
        require_fraction(self, "min_share_increase")

    def _z(self, errors: int, calls: int, share: float) -> float:
        """Binomial z-score of `errors` failures in `calls` given `share`;
        0 unless the excess is large enough to matter."""
        if calls < self.min_calls or errors / calls < share + self.min_share_increase:
            return 0.0
        return (errors - calls * share) / math.sqrt(calls * share * (1 - share))

    def score_one(self, event: ActivityEvent, ctx: DetectionContext) -> list[Finding]:
        hour = ctx.baseline.hour_so_far(ctx.clock)
        if hour is None:
            return []
        baseline = ctx.baseline
        if baseline.mature and baseline.api_call_count >= self.min_baseline_calls:
            usual, source, mature = baseline.api_error_share, "", True
        elif ctx.prior is not None and ctx.prior.user_count:
            usual, source, mature = ctx.prior.api_error_share, f" ({ctx.prior_label})", False
        else:
            return []
        share = min(max(usual, 0.01), 0.99)  # a clean history must not make one error a spike
        calls = hour.api_calls + 1
        errors = hour.api_errors + (1 if event.status_code >= 400 else 0)
        z = self._z(errors, calls, share)
        if (
            z < self.z_threshold
            or self._z(hour.api_errors, hour.api_calls, share) >= self.z_threshold
        ):
            return []  # report when the hour turns anomalous, not on every call after
        expected = f"{usual:.1%} of calls"
        return [
            Finding(
                score=z,
                severity=Severity.MEDIUM if z >= 2 * self.z_threshold else Severity.LOW,
                reason=(
                    f"{errors} of {calls} API calls failed this hour ({errors / calls:.0%}); "
                    f"usual error share {usual:.1%}{source}"
                ),
                observed=f"{errors / calls:.0%} of {calls} calls",
                expected=expected,
                features=(Feature("error_share_this_hour", errors / calls, 1.0),),
                baseline_observations=baseline.api_call_count if mature else ctx.prior.user_count,  # type: ignore[union-attr]
                baseline_mature=mature,
            )
        ]
