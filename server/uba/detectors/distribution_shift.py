"""Distribution shift: has a user's recent behaviour (the last week) moved
away from their baseline? Slow changes no single event reveals: an account
now used at night, sessions that got much longer, twice the usual logins
or a steady trickle of failed logins.

Once per user per `test_interval_seconds` (on the first login, failure or
logout after it), up to three tests, and the failure test on every failed
login, each only when both sides hold enough data:

- hours: chi-square test of the recent logins' local hours against the
  baseline's hour-of-day histogram (recent logins taken out of it), as a
  2 x 24 table. A week holds few logins, where the chi-square
  distribution understates p; then p is simulated with the table's
  margins fixed, drawing tables only until the verdict is known (see
  `chi_square`).
- sessions: two-sample Kolmogorov-Smirnov test of recent session lengths
  against earlier ones (log seconds), when the medians differ by at least
  `min_duration_ratio`. The baseline keeps only their mean and spread, so
  this detector keeps a bounded sample per user: the last `max_sessions`
  lengths within `history_days`.
- logins, failures: one-sided Poisson tests of the recent count against
  the user's earlier daily rate, when the count is at least
  `min_rate_ratio` times the expected one. Failures are tested as each
  one arrives (the failure counted): a trickle of failures is reported on
  the failure that makes it significant, while it happens, so an attack's
  failures (a credential-stuffing wave that tried this account among many)
  are reported within the attack, on its own event, and not days later on
  the user's next ordinary login. When the failure that makes the count
  significant is the user's own (from a device or network they have had
  for 8 hours: a typo, a stale password), the finding is LOW at most:
  most of the week's failures may be an attack that tried this account
  among many, reported on its own events, and a typo is no alarm.

The effect-size floors matter: real counts and durations vary from week
to week more than the tests' assumptions (independent draws) allow, so on
p-values alone every busy week would be a "shift".

Rate tests add `pseudo_count` events to the earlier count: a user who
never failed a login expects a small rate, not zero, so the statistic
(recent over expected count) and p stay finite and the reason says
"none in 40 days before".

Episodes: the tests run daily over the last week, so one shift stays
significant for days. Each test of a user keeps an episode open while it
stays significant; a finding is made when the episode opens (or its
severity rises), and a new episode only after `rearm_days` without a
significant result, when behaviour has been back to the baseline for that
long.

Multiple testing: a test is significant when p < alpha / (tests run),
Bonferroni's correction. Findings are LOW (MEDIUM far beyond alpha): a
shift is a reason to look, not to quarantine an event. Session lengths
are LOW at most (`session_severity`): weeks of longer or shorter days
(a release, a conference, a holiday) shift them far beyond alpha, and no
attack shows in them alone. Scores are
-log10 of the corrected p-value.

Recent events (with their local hours, durations) live in sliding windows
of the shared detector state, bounded per user and in users. numpy and
scipy are imported on first use only.
"""

from __future__ import annotations

import math
import statistics
from typing import Literal

from uba.detectors.base import (
    DetectionContext,
    Detector,
    Finding,
    fmt_duration,
    require_fraction,
    require_positive,
    require_severity,
)
from uba.domain.anomalies import Feature, Severity
from uba.domain.events import ActivityEvent, ActivityType
from uba.domain.shared_state import CACHED_USERS, KeyedWindows
from uba.domain.user_baseline import UserBaseline

_LOGIN = ActivityType.LOGIN_SUCCESS
_FAILURE = ActivityType.LOGIN_FAILURE
_LOGOUT = ActivityType.LOGOUT
_DAY = 86400.0
# Marks events kept out of the baseline (quarantined) in the windows.
_QUARANTINED = "q"
# Marks failed logins from the user's own device or network.
_OWN = "o"


def _entries(windows: KeyedWindows, key: str, now_ts: float) -> list[tuple[float, str]]:
    """The (time, value) pairs of `key` within the window. KeyedWindows has
    counts only; a public `entries(key, now_ts)` there would replace this."""
    window = windows._current(key, now_ts)
    return list(window.events) if window is not None else []


# Tables drawn first by the simulated chi-square p-value, then 4 times as
# many each round (see chi_square).
_FIRST_DRAWS = 64


def chi_square(
    recent: list[int], reference: list[int], threshold: float, seed: int = 0
) -> tuple[float, float] | None:
    """Pearson's chi-square test of homogeneity of two histograms (the
    2 x K table of recent and reference counts, empty columns dropped):
    (statistic, p-value), None with fewer than two columns.

    When every expected cell holds at least 5, p comes from the chi-square
    distribution. A week holds few logins, so usually some do not; then p
    is simulated: tables drawn with the same margins (multivariate
    hypergeometric: which of the logins fall in the recent week, if the
    week were like any other), enough of them (5 / threshold) that a
    p-value below `threshold` can show. The draws are seeded: the same
    data always gives the same verdict.

    Only the verdict below `threshold` needs that many: the simulated p is
    (1 + tables as extreme) / (1 + tables), so once the tables as extreme
    so far put it at or above `threshold` even if all the remaining draws
    came out less extreme, more draws cannot change the verdict. The tables
    are drawn in rounds (64, then 4 times as many each round) and the
    simulation stops there: the verdict is the one of all the draws (the
    test keeps its size and power), and an ordinary week (p of 0.1 or more)
    takes one round of 64 tables instead of thousands. A p-value at or
    above the threshold is then an estimate from fewer tables; one below it
    always comes from all of them.

    Why not the chi-square distribution on sparser tables (Cochran's rule:
    no expected count below 1, at most 20% below 5)? That rule is for tests
    at about 5%; this one decides at alpha / tests (0.001 / 4 by default),
    far in the tail, where the chi-square distribution can misjudge p
    several-fold on tables with expected counts below 5 (the unit tests
    show one). And it would not save the cost: weeks of about ten logins
    fail Cochran's rule as well (docs/design.md)."""
    import numpy as np
    from scipy import stats

    columns = [i for i in range(len(recent)) if recent[i] + reference[i] > 0]
    if len(columns) < 2:
        return None
    r = np.array([recent[i] for i in columns], dtype=np.int64)
    totals = r + np.array([reference[i] for i in columns], dtype=np.int64)
    n, total = int(r.sum()), int(totals.sum())
    expected_recent = totals * n / total
    expected_reference = totals - expected_recent
    weight = 1 / expected_recent + 1 / expected_reference

    def statistic(counts):
        # Both rows deviate by the same amount, with opposite signs.
        return ((counts - expected_recent) ** 2 * weight).sum(axis=-1)

    observed = float(statistic(r))
    if min(expected_recent.min(), expected_reference.min()) >= 5:
        return observed, float(stats.chi2.sf(observed, len(columns) - 1))
    draws = min(200_000, max(2_000, math.ceil(5 / threshold)))
    # The verdict is known once p >= threshold whatever the remaining draws give.
    enough = threshold * (1 + draws)
    rng = np.random.default_rng(seed)
    method: Literal["count", "marginals"] = "count" if total <= 1000 else "marginals"
    cutoff = observed * (1 - 1e-12)
    as_extreme = done = 0
    size = _FIRST_DRAWS
    while done < draws:
        size = min(size, draws - done)
        tables = rng.multivariate_hypergeometric(totals, n, size=size, method=method)
        as_extreme += int(np.count_nonzero(statistic(tables) >= cutoff))
        done += size
        if 1 + as_extreme >= enough:
            break
        size *= 4
    return observed, (1 + as_extreme) / (1 + done)


class DistributionShiftDetector(Detector):
    name = "distribution_shift"
    version = "1.3"
    family = "enhanced"
    description = (
        "A user's last days tested against their baseline: chi-square on login hours, "
        "Kolmogorov-Smirnov on session lengths, Poisson on login and failure counts."
    )
    title = "Change in behaviour"
    requires = ("numpy", "scipy")
    default_enabled = False
    event_types = frozenset({_LOGIN, _FAILURE, _LOGOUT})
    # Learned state, set while scoring: the event scored last and its
    # significant results, for learn_one.
    pending_: tuple[str, list[tuple[str, int]]] | None

    def __init__(
        self,
        alpha: float = 0.001,
        recent_days: float = 7.0,
        history_days: float = 56.0,
        test_interval_seconds: float = 86400.0,
        min_recent_logins: int = 10,
        min_reference_logins: int = 50,
        min_recent_sessions: int = 8,
        min_reference_sessions: int = 20,
        max_sessions: int = 60,
        min_history_days: float = 14.0,
        min_rate_ratio: float = 2.0,
        min_duration_ratio: float = 1.5,
        min_failures: int = 5,
        max_users: int = CACHED_USERS,
        severity: str = "low",
        session_severity: str = "low",
        rearm_days: float = 7.0,
        pseudo_count: float = 0.5,
    ):
        # Family-wise false-alarm rate of one user's tests at one time.
        self.alpha = alpha
        self.recent_days = recent_days
        # Span of the session-length sample (recent and earlier).
        self.history_days = history_days
        self.test_interval_seconds = test_interval_seconds
        self.min_recent_logins = min_recent_logins
        self.min_reference_logins = min_reference_logins
        self.min_recent_sessions = min_recent_sessions
        self.min_reference_sessions = min_reference_sessions
        self.max_sessions = max_sessions
        self.min_history_days = min_history_days
        # Effect sizes below which a shift is not reported however small its
        # p-value: counts and durations vary from week to week more than the
        # tests' independence assumptions allow (busy weeks, holidays).
        self.min_rate_ratio = min_rate_ratio
        self.min_duration_ratio = min_duration_ratio
        self.min_failures = min_failures
        # Bound on users with recent events kept (about 10 KB each at most;
        # the least recently active go first, and are then not tested until
        # their windows fill again).
        self.max_users = max_users
        self.severity = severity
        # The highest severity of the sessions test.
        self.session_severity = session_severity
        # One finding per shift, not one per daily test: a test that stays
        # significant extends its episode; a new one is reported only after
        # `rearm_days` without a significant result (or at a higher severity).
        self.rearm_days = rearm_days
        # Events added to the earlier count of a rate test, so a user who
        # never failed a login has a small expected rate, not zero (a zero
        # rate gave statistic 3e+10 and p 0).
        self.pseudo_count = pseudo_count

    def check_params(self) -> None:
        require_fraction(self, "alpha")
        require_positive(
            self,
            "recent_days",
            "history_days",
            "test_interval_seconds",
            "min_recent_logins",
            "min_reference_logins",
            "min_recent_sessions",
            "min_reference_sessions",
            "max_sessions",
            "min_history_days",
            "min_rate_ratio",
            "min_duration_ratio",
            "min_failures",
            "max_users",
            "rearm_days",
            "pseudo_count",
        )
        require_severity(self, "severity", "session_severity")
        if self.history_days <= self.recent_days:
            raise ValueError(f"{self.name}.history_days must exceed recent_days")

    def warm_up(self) -> None:
        """Imports scipy.stats now (it takes a while), not on the first test."""
        import scipy.stats  # noqa: F401

    # -- state ------------------------------------------------------------------------

    def _windows(self, ctx: DetectionContext, kind: str) -> KeyedWindows:
        shared = ctx.shared
        if kind == "sessions":
            return shared.windows(
                f"{self.name}.sessions", self.history_days * _DAY, self.max_users, self.max_sessions
            )
        if kind == "tested":
            return shared.windows(
                f"{self.name}.tested", self.test_interval_seconds, self.max_users, 1
            )
        if kind == "episodes":
            # "user<TAB>test" -> significant results (value: the episode's highest
            # severity reported)
            return shared.windows(
                f"{self.name}.episodes", self.rearm_days * _DAY, 4 * self.max_users, 64
            )
        return shared.windows(f"{self.name}.{kind}", self.recent_days * _DAY, self.max_users, 2000)

    def _due(self, event: ActivityEvent, ctx: DetectionContext) -> bool:
        return self._windows(ctx, "tested").count(event.user_id, ctx.clock.ts) == 0

    def learn_one(self, event: ActivityEvent, ctx: DetectionContext) -> None:
        ts, user = ctx.clock.ts, event.user_id
        pending = getattr(self, "pending_", None)
        if pending is not None and pending[0] == event.event_id:
            self.pending_ = None
            episodes = self._windows(ctx, "episodes")
            for test, reported in pending[1]:
                key = f"{user}\t{test}"
                # Each entry carries the episode's highest severity so far:
                # its first entries expire while it goes on.
                episode = episodes._current(key, ts)  # noqa: SLF001
                if episode is not None:
                    reported = max(reported, max(int(v) for v in episode.values))
                episodes.add(key, ts, str(reported))
        mark = _QUARANTINED if ctx.quarantined else ""
        if self._due(event, ctx):
            self._windows(ctx, "tested").add(user, ts)
        if event.type is _LOGIN:
            self._windows(ctx, "logins").add(user, ts, f"{ctx.clock.local.hour}{mark}")
        elif event.type is _FAILURE:
            own = _OWN if ctx.baseline.in_familiar_context(event, ts) else ""
            self._windows(ctx, "failures").add(user, ts, mark + own)
        elif event.type is _LOGOUT and event.session_duration is not None:
            seconds = max(event.session_duration.total_seconds(), 1.0)
            self._windows(ctx, "sessions").add(user, ts, f"{math.log(seconds):.5f}")

    # -- testing --------------------------------------------------------------------------

    def score_one(self, event: ActivityEvent, ctx: DetectionContext) -> list[Finding]:
        baseline = ctx.baseline
        if not baseline.mature:
            return []
        ts, user = ctx.clock.ts, event.user_id
        findings: list[Finding] = []
        significant: list[tuple[str, int]] = []
        if event.type is _FAILURE:
            failures = _entries(self._windows(ctx, "failures"), user, ts)
            # This failure counts: it is the one that may make the trickle
            # significant. The baseline has not learned it yet (the mark).
            own = baseline.in_familiar_context(event, ts)
            failures.append((ts, _QUARANTINED + (_OWN if own else "")))
            self._run(
                [self._failures(baseline, failures, ts)],
                ctx,
                user,
                findings,
                significant,
                (Severity.LOW, "this failure is the user's own, from their device or network")
                if own
                else None,
            )
        if self._due(event, ctx):
            logins = _entries(self._windows(ctx, "logins"), user, ts)
            self._run(
                [
                    self._hours(baseline, logins),
                    self._sessions(_entries(self._windows(ctx, "sessions"), user, ts), ts),
                    self._logins(baseline, logins, ts),
                ],
                ctx,
                user,
                findings,
                significant,
            )
        # What learn_one records for this event (score_one changes no state).
        self.pending_ = (event.event_id, significant)
        return findings

    def _run(
        self,
        tests_or_none: list,
        ctx: DetectionContext,
        user: str,
        findings: list[Finding],
        significant: list[tuple[str, int]],
        at_most: tuple[Severity, str] | None = None,
    ) -> None:
        """Runs the prepared tests (None: a guard failed) as one family,
        adding to `findings` and `significant`; `at_most` caps their
        severity (and says why), as `session_severity` caps the sessions
        test's."""
        baseline, ts = ctx.baseline, ctx.clock.ts
        # Tests are prepared first (all guards pass) and computed after, as
        # the simulated p-value needs the number of tests for its precision.
        prepared = [t for t in tests_or_none if t is not None]
        tests = len(prepared)
        episodes = self._windows(ctx, "episodes")
        for run in prepared:
            result = run(self.alpha / tests)
            if result is None:
                continue
            test, statistic, p, reason, observed, expected = result
            adjusted = min(1.0, p * tests)
            if adjusted >= self.alpha:
                continue
            severity = Severity.parse(self.severity)
            if adjusted < self.alpha / 100:
                severity = severity.raised_by(1, Severity.MEDIUM)
            caps = [at_most] if at_most is not None else []
            if test == "sessions":
                caps.append((Severity.parse(self.session_severity), "session lengths alone"))
            for cap, why in caps:
                if severity > cap:
                    severity = cap
                    reason += f"; {cap.name}: {why}"
            episode = episodes._current(f"{user}\t{test}", ts)  # noqa: SLF001
            if episode is not None and severity.value <= max(int(v) for v in episode.values):
                significant.append((test, 0))  # the shift already reported goes on
                continue
            significant.append((test, severity.value))
            findings.append(
                Finding(
                    score=-math.log10(max(adjusted, 1e-300)),
                    severity=severity,
                    reason=(
                        f"{reason} ({test} test: statistic {statistic:.3g}, p {max(p, 1e-300):.2g} "
                        f"< {self.alpha:g}/{tests} test{'s' if tests > 1 else ''})"
                    ),
                    observed=observed,
                    expected=expected,
                    features=(
                        Feature(f"{test}_statistic", float(statistic), 1.0),
                        Feature(f"{test}_p_value", float(p), 0.0),
                        Feature("tests", float(tests), 0.0),
                    ),
                    baseline_observations=baseline.observation_count,
                    baseline_mature=True,
                )
            )

    def _recent_days_label(self) -> str:
        return f"the last {self.recent_days:g} days"

    def _hours(self, baseline: UserBaseline, logins: list[tuple[float, str]]):
        """Chi-square: recent login hours against the baseline's histogram."""
        if len(logins) < self.min_recent_logins:
            return None
        observed = [0] * 24
        learned = [0] * 24  # recent logins the baseline holds too
        for _, value in logins:
            hour = int(value.rstrip(_QUARANTINED))
            observed[hour] += 1
            if not value.endswith(_QUARANTINED):
                learned[hour] += 1
        reference = [
            max(0, total_hour - held)
            for total_hour, held in zip(baseline.login_hour_of_day, learned, strict=True)
        ]
        total = sum(reference)
        if total < self.min_reference_logins:
            return None

        def run(threshold: float):
            result = chi_square(observed, reference, threshold)
            if result is None:
                return None
            statistic, p = result
            # For the reason: recent logins at hours holding under 2% of earlier ones.
            rare = [h for h in range(24) if reference[h] < 0.02 * total]
            at_rare = sum(observed[h] for h in rare)
            n = len(logins)
            return (
                "hours",
                statistic,
                p,
                f"login hours over {self._recent_days_label()} differ from the usual: {at_rare} of "
                f"{n} logins at hours with under 2% of {total} earlier logins",
                f"{at_rare} of {n} logins at rare hours",
                f"about {n * sum(reference[h] for h in rare) / total:.1f} of {n}",
            )

        return run

    def _sessions(self, sessions: list[tuple[float, str]], ts: float):
        """Kolmogorov-Smirnov: recent session lengths against earlier ones."""
        start = ts - self.recent_days * _DAY
        recent = [float(v) for t, v in sessions if t > start]
        earlier = [float(v) for t, v in sessions if t <= start]
        if len(recent) < self.min_recent_sessions or len(earlier) < self.min_reference_sessions:
            return None
        now_median, usual_median = (
            math.exp(statistics.median(recent)),
            math.exp(statistics.median(earlier)),
        )
        if max(now_median, usual_median) < self.min_duration_ratio * min(now_median, usual_median):
            return None

        def run(threshold: float):
            from scipy import stats

            statistic, p = stats.ks_2samp(recent, earlier)
            return (
                "sessions",
                float(statistic),
                float(p),
                f"session lengths over {self._recent_days_label()} differ from earlier ones: "
                f"median {fmt_duration(now_median)} over {len(recent)} sessions, earlier "
                f"{fmt_duration(usual_median)} over {len(earlier)}",
                f"median {fmt_duration(now_median)}",
                f"median {fmt_duration(usual_median)}",
            )

        return run

    def _rate_test(
        self,
        test: str,
        noun: str,
        count: int,
        earlier: float,
        baseline: UserBaseline,
        ts: float,
        note: str = "",
    ):
        """One-sided Poisson: `count` recent events against `earlier` events
        spread over the baseline's days before the recent window (`note`
        ends the reason)."""
        if baseline.first_seen_ts is None:
            return None
        days = (ts - self.recent_days * _DAY - baseline.first_seen_ts) / _DAY
        if days < self.min_history_days:
            return None
        earlier = max(earlier, 0.0)
        # Smoothed: `pseudo_count` events added to the earlier ones, so the
        # expected count is never 0 and the statistic and p stay finite.
        rate = (earlier + self.pseudo_count) / days
        expected = rate * self.recent_days
        # Expect at least one: a user who never failed a login is not alarming at 2 failures.
        if count < self.min_rate_ratio * max(expected, 1.0):
            return None
        usual = (
            f"the usual {earlier / days:.2f} per day"
            if earlier >= 1
            else (
                f"none in {days:.0f} days before (taken as {self.pseudo_count:g}, {rate:.3f} per "
                "day)"
            )
        )

        def run(threshold: float):
            from scipy import stats

            p = float(stats.poisson.sf(count - 1, expected))
            return (
                test,
                count / expected,
                p,
                f"{count} {noun} over {self._recent_days_label()}, {count / expected:.0f} times "
                f"the {expected:.2f} expected from {usual}{note}",
                f"{count} {noun}",
                f"about {expected:.1f}",
            )

        return run

    def _logins(self, baseline: UserBaseline, logins: list[tuple[float, str]], ts: float):
        if len(logins) < self.min_recent_logins:
            return None
        learned = sum(1 for _, v in logins if not v.endswith(_QUARANTINED))
        return self._rate_test(
            "logins", "logins", len(logins), baseline.login_count - learned, baseline, ts
        )

    def _failures(self, baseline: UserBaseline, failures: list[tuple[float, str]], ts: float):
        if len(failures) < self.min_failures:
            return None
        stats = baseline.failed_logins_per_hour
        # The baseline keeps failures per hour with failures; their sum is
        # the failures learned (recent ones among them, roughly).
        learned_recent = sum(1 for _, v in failures if _QUARANTINED not in v)
        earlier = stats.mean * stats.count - learned_recent
        others = sum(1 for _, v in failures if _OWN not in v)
        return self._rate_test(
            "failures",
            "failed logins",
            len(failures),
            earlier,
            baseline,
            ts,
            f"; {others} from devices and networks not the user's",
        )
