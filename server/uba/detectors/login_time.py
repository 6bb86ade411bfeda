"""Unusual login time: how likely a login at this local hour is for the user.

The user's logins per local hour of the day are blended with the prior's
distribution (peer group or population) as `prior_strength` pseudo-logins,
so a new user is judged by the prior and an established user mostly by
their own history; neighbouring hours share a quarter of their weight each,
so 07:50 is not alarming for someone who usually starts at 08:00.
"""

from __future__ import annotations

import math

from uba.detectors.base import DetectionContext, Detector, Finding, require_fraction, require_positive
from uba.domain.anomalies import Feature, Severity
from uba.domain.events import ActivityEvent, ActivityType

_UNIFORM = [1 / 24] * 24
# Share of the uniform distribution mixed into the prior, so no hour has
# probability 0 (the score is -log p and must stay finite).
_FLOOR_MIX = 0.01


def _smoothed(values: list, hour: int) -> float:
    return 0.25 * values[(hour - 1) % 24] + 0.5 * values[hour] + 0.25 * values[(hour + 1) % 24]


def usual_hours(probabilities: list[float], coverage: float) -> str:
    """The shortest run of local hours (wrapping midnight) holding
    `coverage` of the probability, as "08-18" (08:00 to 18:00)."""
    total = sum(probabilities)
    if total <= 0:
        return "any hour"
    for length in range(1, 24):
        best_start, best_mass = 0, -1.0
        for start in range(24):
            mass = sum(probabilities[(start + i) % 24] for i in range(length))
            if mass > best_mass:
                best_start, best_mass = start, mass
        if best_mass >= coverage * total:
            return f"{best_start:02d}-{(best_start + length) % 24:02d}"
    return "any hour"


class LoginTimeDetector(Detector):
    name = "login_time"
    version = "1.0"
    description = "Successful login at a local hour the user (or, while new, their peer group) rarely logs in."
    title = "Login at an unusual time"
    event_types = frozenset({ActivityType.LOGIN_SUCCESS})

    def __init__(self, min_probability: float = 0.01, prior_strength: float = 20.0,
                 usual_hours_coverage: float = 0.9):
        self.min_probability = min_probability
        self.prior_strength = prior_strength
        self.usual_hours_coverage = usual_hours_coverage

    def check_params(self) -> None:
        require_fraction(self, "min_probability", "usual_hours_coverage")
        require_positive(self, "prior_strength")

    def _probability(self, hour: int, counts: list[int], total: int, prior: list[float]) -> float:
        strength = self.prior_strength
        prior_p = (1 - _FLOOR_MIX) * _smoothed(prior, hour) + _FLOOR_MIX / 24
        return (_smoothed(counts, hour) + strength * prior_p) / (total + strength)

    def score_one(self, event: ActivityEvent, ctx: DetectionContext) -> list[Finding]:
        baseline = ctx.baseline
        local = ctx.clock.local
        hour = local.hour
        counts = baseline.login_hour_of_day
        total = baseline.login_count
        prior = ctx.prior.hour_of_day_share if ctx.prior is not None else _UNIFORM
        p = self._probability(hour, counts, total, prior)
        if p >= self.min_probability:
            return []
        mature = baseline.mature
        severity = Severity.MEDIUM if mature and p < self.min_probability / 10 else Severity.LOW
        # The usual hours are shown unsmoothed: smoothing is for judging.
        strength = self.prior_strength
        expected = usual_hours([counts[h] + strength * prior[h] for h in range(24)], self.usual_hours_coverage)
        observed = local.strftime("%H:%M")
        in_hour = counts[hour]
        basis = "" if mature else f" ({ctx.prior_label if ctx.prior is not None else 'no history yet'}; user baseline not mature)"
        reason = (f"login at {observed} {ctx.clock.zone_name}; usual hours {expected}{basis}; "
                  f"{in_hour} of {total} earlier logins in this hour")
        return [Finding(
            score=-math.log(p),
            severity=severity,
            reason=reason,
            observed=observed,
            expected=expected,
            features=(
                Feature("login_hour", hour + local.minute / 60, 1.0),
                Feature("hour_probability", p, 0.0),
                Feature("hour_of_week_logins", float(baseline.login_hour_of_week[ctx.clock.hour_of_week]), 0.0),
            ),
            baseline_observations=total,
            baseline_mature=mature,
        )]
