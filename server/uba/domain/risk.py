"""Per-user risk, 0-100: recent, severe, unresolved anomalies weigh most.

Each anomaly contributes its severity weight, halved every `half_life`;
the sum saturates as 100 * (1 - exp(-sum / saturation)), so one CRITICAL
anomaly today reads about 80, a few LOW ones stay low, and nothing exceeds
100. Anomalies of resolved alerts no longer count.

Since incidents (uba.domain.incidents), the server's risk follows them: one
incident, one contribution, `incident_weight(P)` = incident_scale x P^2
where P is the noisy-OR probability of the incident's open signals, decayed
from the incident's latest anomaly. A change of the incident replaces its
contribution; resolving it (or all its alerts) removes it. See
docs/detection.md, "Incidents and risk".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from uba.domain.anomalies import Anomaly, Severity

DEFAULT_SEVERITY_WEIGHTS: Mapping[Severity, float] = {
    Severity.LOW: 5.0,
    Severity.MEDIUM: 15.0,
    Severity.HIGH: 40.0,
    Severity.CRITICAL: 80.0,
}


@dataclass(frozen=True, slots=True)
class RiskPolicy:
    half_life: timedelta = timedelta(hours=24)
    weights: Mapping[Severity, float] = field(
        default_factory=lambda: dict(DEFAULT_SEVERITY_WEIGHTS)
    )
    # The weight sum at which risk reaches 63 (1 - 1/e).
    saturation: float = 50.0
    # An incident's weight at P = 1 (see incident_weight).
    incident_scale: float = 100.0

    def incident_weight(self, probability: float) -> float:
        """An incident's undecayed weight: quadratic in its probability, so
        that weak stories weigh little (a lone LOW signal, P 0.2: 4) and
        strong ones about what an alert of that severity weighs on its own
        in `weights` (one CRITICAL, P 0.9: 81; a lone HIGH, P 0.7: 49)."""
        p = min(max(probability, 0.0), 1.0)
        return self.incident_scale * p * p

    def decayed(self, weight: float, occurred_at: datetime, now: datetime) -> float:
        """`weight` halved every half-life since `occurred_at` (future times count fully)."""
        age = max((now - occurred_at).total_seconds(), 0.0)
        return weight * 0.5 ** (age / self.half_life.total_seconds())

    def contribution(self, severity: Severity, occurred_at: datetime, now: datetime) -> float:
        """One anomaly's decayed weight at `now` (future times count fully)."""
        age = max((now - occurred_at).total_seconds(), 0.0)
        return self.weights.get(severity, 0.0) * 0.5 ** (age / self.half_life.total_seconds())

    def score_of_sum(self, weight_sum: float) -> int:
        return int(round(100 * (1 - math.exp(-max(weight_sum, 0.0) / self.saturation))))

    def user_risk(
        self,
        anomalies: Iterable[Anomaly],
        now: datetime,
        resolved_alert_ids: frozenset[str] | set[str] = frozenset(),
    ) -> int:
        """Risk from the user's anomalies, leaving out those whose alert is
        in `resolved_alert_ids`. Pass the anomalies of, say, the last seven
        half-lives; older ones add less than 1%."""
        total = 0.0
        for anomaly in anomalies:
            if anomaly.alert_id and anomaly.alert_id in resolved_alert_ids:
                continue
            total += self.contribution(anomaly.severity, anomaly.occurred_at or now, now)
        return self.score_of_sum(total)


@dataclass(slots=True)
class RiskAccumulator:
    """The same score kept incrementally, for storage that would rather not
    re-read anomalies: a decayed sum as of a time. Add each anomaly as it is
    raised; subtract the anomalies of an alert when it is resolved."""

    weight_sum: float = 0.0
    as_of: datetime | None = None

    def _decay_to(self, policy: RiskPolicy, now: datetime) -> datetime:
        """Decays the sum to `now` (never backwards); returns the time it is as of."""
        if self.as_of is not None and now > self.as_of:
            self.weight_sum *= 0.5 ** (
                (now - self.as_of).total_seconds() / policy.half_life.total_seconds()
            )
        if self.as_of is None or now > self.as_of:
            self.as_of = now
        return self.as_of

    def add(
        self, policy: RiskPolicy, severity: Severity, occurred_at: datetime, now: datetime
    ) -> int:
        as_of = self._decay_to(policy, now)
        self.weight_sum += policy.contribution(severity, occurred_at, as_of)
        return policy.score_of_sum(self.weight_sum)

    def remove(
        self, policy: RiskPolicy, severity: Severity, occurred_at: datetime, now: datetime
    ) -> int:
        as_of = self._decay_to(policy, now)
        self.weight_sum = max(
            0.0, self.weight_sum - policy.contribution(severity, occurred_at, as_of)
        )
        return policy.score_of_sum(self.weight_sum)

    def add_weight(
        self, policy: RiskPolicy, weight: float, occurred_at: datetime, now: datetime
    ) -> int:
        """Adds a contribution of `weight` that started at `occurred_at`."""
        as_of = self._decay_to(policy, now)
        self.weight_sum += policy.decayed(weight, occurred_at, as_of)
        return policy.score_of_sum(self.weight_sum)

    def remove_weight(
        self, policy: RiskPolicy, weight: float, occurred_at: datetime, now: datetime
    ) -> int:
        """Takes back what add_weight(weight, occurred_at) added (decayed alike)."""
        as_of = self._decay_to(policy, now)
        self.weight_sum = max(0.0, self.weight_sum - policy.decayed(weight, occurred_at, as_of))
        return policy.score_of_sum(self.weight_sum)

    def score(self, policy: RiskPolicy, now: datetime) -> int:
        self._decay_to(policy, now)
        return policy.score_of_sum(self.weight_sum)
