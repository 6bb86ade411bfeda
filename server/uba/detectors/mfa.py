"""MFA fatigue (push bombing, ATT&CK T1621): an attacker who holds the
password sends prompt after prompt until the user gives in and approves.

Per user, over a sliding window: prompts sent (MFA_CHALLENGE), denied
(MFA_DENIED) and approved (MFA_APPROVED). A prompt with no answer counts
as ignored: refused = denied + max(0, challenges - denials - approvals).
Sources that log only the answers (no challenges) still count denials.

- many refused prompts: MEDIUM (raised at each doubling);
- an approval after at least `min_refused_before_approval` refused prompts:
  HIGH, and the approval is quarantined like any HIGH finding.

Counted in the shared windows (see uba.domain.shared_state), quarantined events
too: the attack itself must be counted. An approval closes the episode.
"""

from __future__ import annotations

from uba.detectors.base import (
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

_CHALLENGE = ActivityType.MFA_CHALLENGE
_APPROVED = ActivityType.MFA_APPROVED
_DENIED = ActivityType.MFA_DENIED


class MfaFatigueDetector(Detector):
    name = "mfa_fatigue"
    version = "1.0"
    description = (
        "Many denied or unanswered MFA prompts for one user within a window (push bombing, "
        "ATT&CK T1621), and an approval right after them."
    )
    title = "MFA fatigue (push bombing)"
    event_types = frozenset({_CHALLENGE, _APPROVED, _DENIED})

    def __init__(
        self,
        min_refused: int = 5,
        min_refused_before_approval: int = 3,
        window_seconds: float = 1800.0,
        severity: str = "medium",
        approval_severity: str = "high",
        max_users: int = CACHED_USERS,
    ):
        self.min_refused = min_refused
        self.min_refused_before_approval = min_refused_before_approval
        self.window_seconds = window_seconds
        self.severity = severity
        self.approval_severity = approval_severity
        # Users whose prompts are kept (the least recently prompted go first).
        self.max_users = max_users

    def check_params(self) -> None:
        require_positive(
            self, "min_refused", "min_refused_before_approval", "window_seconds", "max_users"
        )
        require_severity(self, "severity", "approval_severity")

    def _window(self, ctx: DetectionContext, kind: str):
        return ctx.shared.windows(
            f"{self.name}.{kind}", self.window_seconds, int(self.max_users), 1000
        )

    def _refused(self, event: ActivityEvent, ctx: DetectionContext) -> tuple[int, int, int]:
        """(refused, prompts sent, denied) counting this event. Every earlier
        prompt not answered by now was ignored; so refused = max(denials,
        earlier prompts), less the prompt an approval answers."""
        ts, user = ctx.clock.ts, event.user_id
        challenges = self._window(ctx, "challenges").count(user, ts)
        denials = self._window(ctx, "denials").count(user, ts)
        kind = event.type
        if kind is _DENIED:
            denials += 1
            return max(denials, challenges), challenges, denials
        if kind is _APPROVED:
            return max(denials, challenges - 1), challenges, denials
        return max(denials, challenges), challenges + 1, denials

    def _reported(self, ctx: DetectionContext, user: str) -> int:
        """The level last reported in this episode (0: none)."""
        window = self._window(ctx, "reported")._current(user, ctx.clock.ts)  # noqa: SLF001
        return int(window.events[-1][1]) if window is not None else 0

    def score_one(self, event: ActivityEvent, ctx: DetectionContext) -> list[Finding]:
        refused, sent, denied = self._refused(event, ctx)
        window = fmt_window(self.window_seconds)
        if event.type is _APPROVED:
            if refused < self.min_refused_before_approval:
                return []
            source = event.source_ip or event.device_id or "unknown source"
            return [
                Finding(
                    score=refused / self.min_refused_before_approval,
                    severity=Severity.parse(self.approval_severity),
                    reason=(
                        f"MFA prompt approved after {refused} denied or unanswered prompts within "
                        f"{window} ({sent} sent, {denied} denied): likely MFA fatigue (ATT&CK "
                        f"T1621); the login it completes came from {source}"
                    ),
                    observed=f"{refused} refused prompts, then approval",
                    expected=(
                        f"fewer than {self.min_refused_before_approval} refused prompts before an "
                        "approval"
                    ),
                    features=(
                        Feature("refused_prompts", float(refused), 1.0),
                        Feature("prompts_sent", float(sent), 0.0),
                    ),
                )
            ]
        level = escalation_level(refused, self.min_refused)
        if level <= self._reported(ctx, event.user_id):
            return []
        return [
            Finding(
                score=refused / self.min_refused,
                severity=Severity.parse(self.severity).raised_by(level - 1, Severity.HIGH),
                reason=(
                    f"{refused} MFA prompts denied or left unanswered within {window} ({sent} "
                    f"sent, {denied} denied; limit {self.min_refused}): possible MFA fatigue "
                    "attack (ATT&CK T1621)"
                ),
                observed=f"{refused} refused prompts in {window}",
                expected=f"fewer than {self.min_refused} in {window}",
                features=(
                    Feature("refused_prompts", float(refused), 1.0),
                    Feature("prompts_sent", float(sent), 0.0),
                ),
            )
        ]

    def learn_one(self, event: ActivityEvent, ctx: DetectionContext) -> None:
        ts, user = ctx.clock.ts, event.user_id
        if event.type is _APPROVED:  # an approval ends the episode
            for kind in ("challenges", "denials", "reported"):
                self._window(ctx, kind).clear(user)
            return
        refused, _, _ = self._refused(event, ctx)
        level = escalation_level(refused, self.min_refused)
        if level > self._reported(ctx, user):
            self._window(ctx, "reported").add(user, ts, str(level))
        self._window(ctx, "challenges" if event.type is _CHALLENGE else "denials").add(user, ts)
