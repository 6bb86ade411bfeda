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
    DetectionContext, Detector, Finding, escalation_level, fmt_bytes, fmt_count, reference_stats,
    require_fraction, require_positive, require_severity, spike_threshold,
)
from uba.domain.anomalies import Feature, Severity
from uba.domain.baselines import normalize_endpoint
from uba.domain.events import ActivityEvent, ActivityType

_API_CALL = ActivityType.API_CALL



def _hourly_spike(value: float, reference, min_std: float, fmt, observed: str, headline: str, severity: Severity,
                  feature: str) -> Finding:
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
    description = "More API calls in an hour than the user's (or peer group's) usual calls per active hour."
    title = "API call rate spike"
    event_types = frozenset({_API_CALL})

    def __init__(self, z_threshold: float = 4.0, min_calls: int = 100, min_hours: int = 10, min_std: float = 5.0):
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
        return [_hourly_spike(calls, reference, self.min_std, fmt_count, f"{calls:,} calls",
                              f"{calls:,} API calls this hour", Severity.LOW.raised_by(level - 1, Severity.HIGH), "api_calls_this_hour")]


class NewEndpointDetector(Detector):
    name = "api_new_endpoint"
    version = "1.0"
    description = "First call to an API endpoint by a user with an established (mature) usage history."
    title = "First use of an API endpoint"
    event_types = frozenset({_API_CALL})

    def __init__(self, min_api_calls: int = 200, severity: str = "low"):
        self.min_api_calls = min_api_calls
        self.severity = severity

    def check_params(self) -> None:
        require_positive(self, "min_api_calls")
        require_severity(self, "severity")

    def score_one(self, event: ActivityEvent, ctx: DetectionContext) -> list[Finding]:
        baseline = ctx.baseline
        if not baseline.mature or baseline.api_call_count < self.min_api_calls:
            return []
        if not (event.api_method or event.api_path):
            return []
        endpoint = normalize_endpoint(event.api_method, event.api_path)
        if endpoint in baseline.endpoints:
            return []
        known = len(baseline.endpoints)
        return [Finding(
            score=math.log1p(baseline.api_call_count),
            severity=Severity.parse(self.severity),
            reason=(f"first call to {endpoint} after {baseline.api_call_count:,} calls "
                    f"to {known} known endpoints"),
            observed=endpoint,
            expected=f"one of {known} known endpoints",
            features=(Feature("known_endpoints", float(known), 1.0),),
            baseline_observations=baseline.api_call_count,
            baseline_mature=True,
        )]


class DataVolumeDetector(Detector):
    name = "data_volume"
    version = "1.0"
    description = "More bytes transferred in an hour than the user's usual bytes per active hour (exfiltration)."
    title = "Data volume spike"
    # Bytes may come on any event type.
    event_types = None

    def __init__(self, z_threshold: float = 4.0, min_bytes: int = 50_000_000, min_hours: int = 10,
                 min_std: float = 1_000_000.0):
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
        return [_hourly_spike(total, reference, self.min_std, fmt_bytes, fmt_bytes(total),
                              f"{fmt_bytes(total)} transferred this hour",
                              Severity.MEDIUM.raised_by(level - 1, Severity.CRITICAL), "bytes_this_hour")]


class ApiErrorRateDetector(Detector):
    name = "api_error_rate"
    version = "1.0"
    description = "Share of failing API calls (status >= 400) in an hour far above the user's usual share."
    title = "API error rate spike"
    event_types = frozenset({_API_CALL})

    def __init__(self, z_threshold: float = 4.0, min_calls: int = 20, min_share_increase: float = 0.2,
                 min_baseline_calls: int = 200):
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
        if z < self.z_threshold or self._z(hour.api_errors, hour.api_calls, share) >= self.z_threshold:
            return []  # report when the hour turns anomalous, not on every call after
        expected = f"{usual:.1%} of calls"
        return [Finding(
            score=z,
            severity=Severity.MEDIUM if z >= 2 * self.z_threshold else Severity.LOW,
            reason=(f"{errors} of {calls} API calls failed this hour ({errors / calls:.0%}); "
                    f"usual error share {usual:.1%}{source}"),
            observed=f"{errors / calls:.0%} of {calls} calls",
            expected=expected,
            features=(Feature("error_share_this_hour", errors / calls, 1.0),),
            baseline_observations=baseline.api_call_count if mature else ctx.prior.user_count,  # type: ignore[union-attr]
            baseline_mature=mature,
        )]
