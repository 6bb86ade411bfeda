"""Login frequency spike: more successful logins today than usual."""

from __future__ import annotations

from uba.detectors.base import (
    DetectionContext,
    Detector,
    Finding,
    escalation_level,
    fmt_count,
    reference_stats,
    require_positive,
    spike_threshold,
)
from uba.domain.anomalies import Feature, Severity
from uba.domain.events import ActivityEvent, ActivityType


class LoginFrequencyDetector(Detector):
    name = "login_frequency"
    version = "1.0"
    description = (
        "More successful logins in a day than the user's (or peer group's) usual logins per active "
        "day."
    )
    title = "Unusually many logins"
    event_types = frozenset({ActivityType.LOGIN_SUCCESS})

    def __init__(
        self, z_threshold: float = 4.0, min_logins: int = 5, min_days: int = 7, min_std: float = 1.0
    ):
        self.z_threshold = z_threshold
        self.min_logins = min_logins
        self.min_days = min_days
        self.min_std = min_std

    def check_params(self) -> None:
        require_positive(self, "z_threshold", "min_logins", "min_days", "min_std")

    def score_one(self, event: ActivityEvent, ctx: DetectionContext) -> list[Finding]:
        before = ctx.baseline.logins_so_far(ctx.clock)
        if before is None:
            return []
        reference = reference_stats(ctx, "logins_per_day", self.min_days)
        if reference is None:
            return []
        stats = reference.stats
        threshold = spike_threshold(stats, self.z_threshold, self.min_logins, self.min_std)
        today = before + 1
        level = escalation_level(today, threshold)
        if level <= escalation_level(before, threshold):
            return []  # report on reaching the threshold and each doubling only
        spread = max(stats.stddev, self.min_std, 0.1 * stats.mean)
        z = max(0.0, (today - stats.mean) / spread)
        expected = f"{stats.mean:.1f} ± {stats.stddev:.1f} per day"
        source = "" if reference.mature else f" ({reference.label})"
        return [
            Finding(
                score=z,
                severity=Severity.LOW.raised_by(level - 1, Severity.HIGH),
                reason=(
                    f"{today} logins today; usual {expected}{source}, "
                    f"most in one day {fmt_count(stats.max or 0)}"
                ),
                observed=str(today),
                expected=expected,
                features=(Feature("logins_today", float(today), 1.0),),
                baseline_observations=stats.count,
                baseline_mature=reference.mature,
            )
        ]
