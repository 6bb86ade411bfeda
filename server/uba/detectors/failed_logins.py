"""Failed-login bursts: brute force against one account, and password
spraying (one source address failing against many accounts).

Both count in sliding windows shared across users (see uba.domain.shared_state),
not in the baseline: the attack itself must be counted, also while its
events are quarantined.
"""

from __future__ import annotations

from uba.detectors.base import (
    POPULATION_SCOPE,
    DetectionContext,
    Detector,
    Finding,
    escalation_level,
    fmt_window,
    require_positive,
    require_severity,
)
from uba.domain.anomalies import Feature, Severity
from uba.domain.events import ActivityEvent, ActivityType
from uba.domain.shared_state import CACHED_USERS

_FAILURE = ActivityType.LOGIN_FAILURE
_SUCCESS = ActivityType.LOGIN_SUCCESS


class FailedLoginBurstDetector(Detector):
    name = "failed_login_burst"
    version = "1.0"
    description = (
        "Many failed logins for one user within a short window (brute force), "
        "and a successful login right after such a burst."
    )
    title = "Burst of failed logins"
    event_types = frozenset({_FAILURE, _SUCCESS})

    def __init__(
        self,
        count: int = 10,
        window_seconds: float = 300.0,
        severity: str = "medium",
        success_after_burst_severity: str = "high",
        max_users: int = CACHED_USERS,
    ):
        self.count = count
        self.window_seconds = window_seconds
        self.severity = severity
        self.success_after_burst_severity = success_after_burst_severity
        # Users whose failures are kept (the least recently active go first).
        self.max_users = max_users

    def check_params(self) -> None:
        require_positive(self, "count", "window_seconds", "max_users")
        require_severity(self, "severity", "success_after_burst_severity")

    def _windows(self, ctx: DetectionContext):
        return ctx.shared.windows(self.name, self.window_seconds, int(self.max_users))

    def score_one(self, event: ActivityEvent, ctx: DetectionContext) -> list[Finding]:
        failures_before = self._windows(ctx).count(event.user_id, ctx.clock.ts)
        window = fmt_window(self.window_seconds)
        if event.type is _SUCCESS:
            if failures_before < self.count:
                return []
            return [
                Finding(
                    score=failures_before / self.count,
                    severity=Severity.parse(self.success_after_burst_severity),
                    reason=(
                        f"successful login from {event.source_ip or 'unknown address'} after "
                        f"{failures_before} failed attempts within {window}"
                    ),
                    observed=f"{failures_before} failures, then success",
                    expected=f"fewer than {self.count} failures in {window}",
                    features=(Feature("failures_in_window", float(failures_before), 1.0),),
                )
            ]
        failures = failures_before + 1
        level = escalation_level(failures, self.count)
        if level <= escalation_level(failures_before, self.count):
            return []
        return [
            Finding(
                score=failures / self.count,
                severity=Severity.parse(self.severity).raised_by(level - 1, Severity.HIGH),
                reason=(
                    f"{failures} failed logins for this user within {window} "
                    f"(limit {self.count}); latest from {event.source_ip or 'unknown address'}"
                ),
                observed=f"{failures} in {window}",
                expected=f"fewer than {self.count} in {window}",
                features=(Feature("failures_in_window", float(failures), 1.0),),
            )
        ]

    def learn_one(self, event: ActivityEvent, ctx: DetectionContext) -> None:
        windows = self._windows(ctx)
        if event.type is _FAILURE:
            windows.add(event.user_id, ctx.clock.ts)
        else:
            windows.clear(event.user_id)  # the burst ended with a success


class PasswordSprayingDetector(Detector):
    """Two tiers. Fast: `min_users` accounts failing from one address within
    `window_seconds`. Slow: `slow_min_users` accounts within
    `slow_window_seconds` from an address that logged nobody in meanwhile: a
    spray paced to stay under the fast tier, which a shared egress (an office
    NAT, the company VPN) does not look like, as its users' typos come with
    their successful logins."""

    name = "password_spraying"
    version = "1.1"
    description = (
        "One source address with failed logins against many distinct users within a window; "
        "or, paced slower, against several users with no successful login from it."
    )
    title = "Password spraying"
    event_types = frozenset({_FAILURE, _SUCCESS})
    # Its windows are keyed by the source address, across users.
    scope = POPULATION_SCOPE

    def __init__(
        self,
        min_users: int = 10,
        window_seconds: float = 600.0,
        severity: str = "high",
        slow_min_users: int = 5,
        slow_window_seconds: float = 3600.0,
        slow_severity: str = "medium",
        max_sources: int = CACHED_USERS,
    ):
        self.min_users = min_users
        self.window_seconds = window_seconds
        self.severity = severity
        self.slow_min_users = slow_min_users
        self.slow_window_seconds = slow_window_seconds
        self.slow_severity = slow_severity
        # Addresses kept in each window (the least recently active go first).
        self.max_sources = max_sources

    def check_params(self) -> None:
        require_positive(
            self,
            "min_users",
            "window_seconds",
            "slow_min_users",
            "slow_window_seconds",
            "max_sources",
        )
        require_severity(self, "severity", "slow_severity")

    def population_key(self, event: ActivityEvent) -> str | None:
        # Successes too: the slow tier remembers who logged in from where.
        return (event.source_ip or None) if event.type in self.event_types else None

    def _windows(self, ctx: DetectionContext):
        return ctx.shared.windows(self.name, self.window_seconds, int(self.max_sources))

    def _slow(self, ctx: DetectionContext):
        bound = int(self.max_sources)
        return (
            ctx.shared.windows(self.name + ".slow", self.slow_window_seconds, bound),
            ctx.shared.windows(self.name + ".logged_in", self.slow_window_seconds, bound),
        )

    def score_one(self, event: ActivityEvent, ctx: DetectionContext) -> list[Finding]:
        ip = event.source_ip
        if not ip or event.type is not _FAILURE:
            return []
        ts = ctx.clock.ts
        fast = self._fast(event, ctx, ip, ts)
        return fast if fast else self._slow_finding(event, ctx, ip, ts)

    def _fast(
        self, event: ActivityEvent, ctx: DetectionContext, ip: str, ts: float
    ) -> list[Finding]:
        windows = self._windows(ctx)
        users_before = windows.distinct(ip, ts)
        users = users_before if windows.has_value(ip, event.user_id, ts) else users_before + 1
        level = escalation_level(users, self.min_users)
        if level <= escalation_level(users_before, self.min_users):
            return []
        window = fmt_window(self.window_seconds)
        return [
            Finding(
                score=users / self.min_users,
                severity=Severity.parse(self.severity).raised_by(level - 1, Severity.CRITICAL),
                reason=(
                    f"{users} distinct users failed to log in from {ip} within {window} "
                    f"(limit {self.min_users}); this user is one of them"
                ),
                observed=f"{users} users from {ip}",
                expected=f"fewer than {self.min_users} users per address in {window}",
                features=(Feature("distinct_users_from_ip", float(users), 1.0),),
            )
        ]

    def _slow_finding(
        self, event: ActivityEvent, ctx: DetectionContext, ip: str, ts: float
    ) -> list[Finding]:
        failed, logged_in = self._slow(ctx)
        if logged_in.count(ip, ts):
            return []
        users_before = failed.distinct(ip, ts)
        users = users_before if failed.has_value(ip, event.user_id, ts) else users_before + 1
        level = escalation_level(users, self.slow_min_users)
        if level <= escalation_level(users_before, self.slow_min_users):
            return []
        window = fmt_window(self.slow_window_seconds)
        return [
            Finding(
                score=users / self.slow_min_users,
                # Doubling the accounts raises it a step, up to the fast tier's severity.
                severity=Severity.parse(self.slow_severity).raised_by(
                    level - 1, Severity.parse(self.severity)
                ),
                reason=(
                    f"{users} distinct users failed to log in from {ip} within {window} and nobody "
                    f"logged in from it (slow spraying, limit {self.slow_min_users}); this user is "
                    "one of them"
                ),
                observed=f"{users} users from {ip}, no successful login",
                expected=(
                    f"fewer than {self.slow_min_users} users per address in {window} without a "
                    "login"
                ),
                features=(Feature("distinct_users_from_ip", float(users), 1.0),),
            )
        ]

    def learn_one(self, event: ActivityEvent, ctx: DetectionContext) -> None:
        ip = event.source_ip
        if not ip:
            return
        ts = ctx.clock.ts
        failed, logged_in = self._slow(ctx)
        if event.type is _FAILURE:
            self._windows(ctx).add(ip, ts, event.user_id)
            failed.add(ip, ts, event.user_id)
        else:
            logged_in.add(ip, ts)
