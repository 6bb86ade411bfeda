"""Static threshold rules from configuration, e.g.

    {"name": "too many failures", "type": "login_failure", "count": 10,
     "window_seconds": 300, "group_by": "user_id", "severity": "high"}

raises an anomaly when `count` events of `type` share a `group_by` value
(the user, or the source address across users) within `window_seconds`,
and again at each doubling of the count.

Rules by user are a user detector's, rules by address a population
detector's: `scoped` splits them where the two run apart (docs/scaling.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from uba.detectors.base import (
    POPULATION_SCOPE,
    USER_SCOPE,
    DetectionContext,
    Detector,
    Finding,
    escalation_level,
    fmt_window,
    require_positive,
)
from uba.domain.anomalies import Feature, Severity
from uba.domain.events import ActivityEvent, ActivityType
from uba.domain.shared_state import CACHED_USERS

GROUP_BY = ("user_id", "source_ip")
_RULE_KEYS = {"name", "type", "count", "window_seconds", "group_by", "severity"}
_REQUIRED_KEYS = {"name", "type", "count", "window_seconds"}


@dataclass(frozen=True, slots=True)
class ThresholdRule:
    name: str
    type: ActivityType
    count: int
    window_seconds: float
    group_by: str = "user_id"
    severity: Severity = Severity.MEDIUM

    @classmethod
    def parse(cls, raw: Mapping[str, Any], where: str) -> ThresholdRule:
        if not isinstance(raw, Mapping):
            raise ValueError(f"{where} must be an object, got {type(raw).__name__}")
        unknown = sorted(set(raw) - _RULE_KEYS)
        if unknown:
            raise ValueError(
                f"{where} has unknown key(s) {', '.join(unknown)}; allowed: "
                f"{', '.join(sorted(_RULE_KEYS))}"
            )
        missing = sorted(_REQUIRED_KEYS - set(raw))
        if missing:
            raise ValueError(f"{where} lacks {', '.join(missing)}")
        name = raw["name"]
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"{where}.name must be a non-empty string")
        try:
            kind = ActivityType(str(raw["type"]).lower())
        except ValueError:
            kinds = ", ".join(t.value for t in ActivityType)
            raise ValueError(f"{where}.type {raw['type']!r} is not one of {kinds}") from None
        count = raw["count"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"{where}.count must be an integer >= 1, got {count!r}")
        window = raw["window_seconds"]
        if isinstance(window, bool) or not isinstance(window, (int, float)) or not window > 0:
            raise ValueError(f"{where}.window_seconds must be a positive number, got {window!r}")
        group_by = raw.get("group_by", "user_id")
        if group_by not in GROUP_BY:
            raise ValueError(
                f"{where}.group_by must be one of {', '.join(GROUP_BY)}, got {group_by!r}"
            )
        try:
            severity = Severity.parse(raw.get("severity", "medium"))
        except ValueError as exc:
            raise ValueError(f"{where}.severity: {exc}") from None
        return cls(name.strip(), kind, count, float(window), group_by, severity)


class ThresholdRulesDetector(Detector):
    name = "threshold_rules"
    version = "1.0"
    description = (
        "Static rules from configuration: N events of a type per user or source address within a "
        "window."
    )
    title = "Threshold rule"
    # Learned state: the rules by event type, parsed on first use.
    rules_by_type_: dict[ActivityType, list[ThresholdRule]]

    def __init__(
        self,
        rules: Sequence[Mapping[str, Any]] = (),
        max_users: int = CACHED_USERS,
        max_sources: int = CACHED_USERS,
    ):
        self.rules = rules
        # Keys each rule's window keeps: users (group_by user_id) or
        # addresses (source_ip), the least recently active going first.
        self.max_users = max_users
        self.max_sources = max_sources

    def check_params(self) -> None:
        require_positive(self, "max_users", "max_sources")
        self._compiled()

    def _compiled(self) -> dict[ActivityType, list[ThresholdRule]]:
        """Rules by event type, parsed once (learned-state style attribute)."""
        try:
            return self.rules_by_type_
        except AttributeError:
            pass
        if isinstance(self.rules, (str, bytes)) or not isinstance(self.rules, Sequence):
            raise ValueError(f"{self.name}.rules must be a list of rule objects")
        by_type: dict[ActivityType, list[ThresholdRule]] = {}
        names: set[str] = set()
        for i, raw in enumerate(self.rules):
            rule = ThresholdRule.parse(raw, f"{self.name}.rules[{i}]")
            if rule.name in names:
                raise ValueError(f"{self.name}.rules[{i}].name {rule.name!r} is used twice")
            names.add(rule.name)
            by_type.setdefault(rule.type, []).append(rule)
        self.rules_by_type_ = by_type
        return by_type

    def relevant_types(self) -> frozenset[ActivityType] | None:
        return frozenset(self._compiled())

    def scoped(self, scope: str) -> Detector | None:
        """The rules by user (USER_SCOPE) or by address (POPULATION_SCOPE)
        alone; None when there are none of that kind."""
        by = "user_id" if scope == USER_SCOPE else "source_ip"
        kept = [
            raw
            for i, raw in enumerate(self.rules)
            if ThresholdRule.parse(raw, f"{self.name}.rules[{i}]").group_by == by
        ]
        if not kept:
            return None
        kind = SourceThresholdRules if scope == POPULATION_SCOPE else ThresholdRulesDetector
        part = kind(kept, max_users=self.max_users, max_sources=self.max_sources)
        part.check_params()
        return part

    def _windows(self, ctx: DetectionContext, rule: ThresholdRule):
        bound = self.max_users if rule.group_by == "user_id" else self.max_sources
        return ctx.shared.windows(f"{self.name}:{rule.name}", rule.window_seconds, int(bound))

    def score_one(self, event: ActivityEvent, ctx: DetectionContext) -> list[Finding]:
        rules = self._compiled().get(event.type)
        if not rules:
            return []
        findings = []
        for rule in rules:
            key = getattr(event, rule.group_by)
            if not key:
                continue
            before = self._windows(ctx, rule).count(key, ctx.clock.ts)
            count = before + 1
            level = escalation_level(count, rule.count)
            if level <= escalation_level(before, rule.count):
                continue
            window = fmt_window(rule.window_seconds)
            subject = "user " + key if rule.group_by == "user_id" else "address " + key
            findings.append(
                Finding(
                    score=count / rule.count,
                    severity=rule.severity,
                    reason=(
                        f"rule '{rule.name}': {count} {rule.type.value} events for {subject} "
                        f"within {window} (limit {rule.count})"
                    ),
                    observed=f"{count} in {window}",
                    expected=f"fewer than {rule.count} in {window}",
                    features=(Feature(f"rule:{rule.name}", float(count), 1.0),),
                )
            )
        return findings

    def learn_one(self, event: ActivityEvent, ctx: DetectionContext) -> None:
        for rule in self._compiled().get(event.type, ()):
            key = getattr(event, rule.group_by)
            if key:
                self._windows(ctx, rule).add(key, ctx.clock.ts)


class SourceThresholdRules(ThresholdRulesDetector):
    """The rules by source address, as a population detector of their own
    (`ThresholdRulesDetector.scoped`); not registered under a name of its
    own: its anomalies are threshold_rules' as before."""

    scope = POPULATION_SCOPE

    def population_key(self, event: ActivityEvent) -> str | None:
        return (event.source_ip or None) if event.type in self._compiled() else None

    def scoped(self, scope: str) -> Detector | None:
        return self if scope == POPULATION_SCOPE else None
