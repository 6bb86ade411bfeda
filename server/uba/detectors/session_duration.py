"""Session duration outlier: a session far longer (or shorter) than the
user's usual, judged on the log scale where durations are roughly normal.

The reference is the user's own sessions that started in the same part of
the day (night, morning, afternoon, evening) once there are `min_sessions`
of them, else all the user's sessions, else the prior. A short session is
at most LOW, and not reported at all from a device the user knows: quick
evening check-ins on the usual laptop are routine, and most false alarms
were of that kind. Long sessions (a session kept alive) rise to MEDIUM."""

from __future__ import annotations

import math

from uba.detectors.base import (
    DetectionContext,
    Detector,
    Finding,
    Reference,
    fmt_duration,
    reference_stats,
    require_positive,
)
from uba.domain.anomalies import Feature, Severity
from uba.domain.event_keys import DAY_PARTS, session_start_part
from uba.domain.events import ActivityEvent, ActivityType


class SessionDurationDetector(Detector):
    name = "session_duration"
    version = "2.0"
    description = (
        "Session length (from logout events) far from the user's usual for that part of the day, "
        "as a z-score of log seconds; short sessions on a known device are routine."
    )
    title = "Unusual session length"
    event_types = frozenset({ActivityType.LOGOUT})

    def __init__(
        self,
        z_threshold: float = 3.5,
        min_sessions: int = 10,
        min_std: float = 0.25,
        two_sided: bool = True,
    ):
        self.z_threshold = z_threshold
        self.min_sessions = min_sessions
        self.min_std = min_std
        self.two_sided = two_sided

    def check_params(self) -> None:
        require_positive(self, "z_threshold", "min_sessions", "min_std")
        if not isinstance(self.two_sided, bool):
            raise ValueError(f"{self.name}.two_sided must be true or false, got {self.two_sided!r}")

    def score_one(self, event: ActivityEvent, ctx: DetectionContext) -> list[Finding]:
        if event.session_duration is None:
            return []
        seconds = max(event.session_duration.total_seconds(), 1.0)
        baseline = ctx.baseline
        part = session_start_part(ctx.clock, seconds)
        by_part = baseline.log_session_seconds_by_part[part]
        if baseline.mature_for("sessions") and by_part.count >= self.min_sessions:
            reference: Reference | None = Reference(
                by_part, f"user, {DAY_PARTS[part]} sessions", True
            )
        else:
            reference = reference_stats(ctx, "log_session_seconds", self.min_sessions)
        if reference is None:
            return []
        stats = reference.stats
        std = max(stats.stddev, self.min_std)
        z = (math.log(seconds) - stats.mean) / std
        score = abs(z) if self.two_sided else max(z, 0.0)
        if score < self.z_threshold:
            return []
        short = z < 0
        known_device = bool(event.device_id) and event.device_id in baseline.devices
        if short and known_device:
            return []
        low, high = math.exp(stats.mean - 2 * std), math.exp(stats.mean + 2 * std)
        expected = f"{fmt_duration(low)}-{fmt_duration(high)}"
        source = f"{reference.label}, " if reference.label != "user" else ""
        if not reference.mature:
            source = f"{reference.label}; user baseline not mature, "
        kind = "long" if z > 0 else "short"
        return [
            Finding(
                score=score,
                severity=Severity.MEDIUM
                if score >= 2 * self.z_threshold and not short
                else Severity.LOW,
                reason=(
                    f"session lasted {fmt_duration(seconds)}, unusually {kind}; usual {expected} "
                    f"({source}{stats.count} sessions)"
                ),
                observed=fmt_duration(seconds),
                expected=expected,
                features=(Feature("log_session_seconds", math.log(seconds), 1.0),),
                baseline_observations=stats.count,
                baseline_mature=reference.mature,
            )
        ]
