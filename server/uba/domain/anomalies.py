"""Anomalies as the domain sees them: an event (or events) that did not fit
the user's baseline, with the explanation an analyst reads."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime


class Severity(enum.IntEnum):
    """How serious an anomaly or alert is. Ordered (LOW < CRITICAL); the
    values match the proto enum numbers."""

    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, value: str | int | Severity) -> Severity:
        """Accepts a Severity, its number or its name in any case ("high")."""
        if isinstance(value, Severity):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return cls(value)
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                pass
        names = ", ".join(s.name.lower() for s in cls)
        raise ValueError(f"unknown severity {value!r}; expected one of {names}")

    def raised_by(self, steps: int, cap: Severity) -> Severity:
        """This severity raised by `steps` levels, but not above `cap`."""
        return Severity(max(self, min(int(self) + max(steps, 0), int(cap))))


@dataclass(slots=True, frozen=True)
class Feature:
    """One input of a detector's decision."""

    name: str
    value: float
    # Share of the score this feature accounts for, 0..1.
    contribution: float = 1.0


# A feature drives a finding when it accounts for at least this share of
# its score (the explanations' contributions).
DRIVING_SHARE = 0.15


def echoed_detectors(features: Iterable[Feature], echoes: Mapping[str, str]) -> tuple[str, ...]:
    """The detectors whose findings a finding only repeats: those `echoes`
    names for the features that drove it, when every feature with a real
    share of the score (DRIVING_SHARE) is such a feature; () otherwise."""
    if not echoes:
        return ()
    driving = [f for f in features if f.contribution >= DRIVING_SHARE]
    if not driving or any(f.name not in echoes for f in driving):
        return ()
    return tuple(sorted({echoes[f.name] for f in driving}))


@dataclass(slots=True)
class Anomaly:
    """One detector's verdict that something did not fit, with why."""

    anomaly_id: str
    user_id: str
    detector: str
    detector_version: str
    # Higher means more anomalous; comparable within one detector.
    score: float
    severity: Severity
    event_ids: list[str]
    # One line an analyst understands, e.g. "login at 03:12 Europe/Berlin;
    # usual hours 08-18; 0 of 412 earlier logins in this hour".
    reason: str
    observed: str
    expected: str
    # Size of the baseline the event was judged against, and whether it was
    # the user's own (mature) baseline rather than a prior.
    baseline_observations: int
    baseline_mature: bool
    features: list[Feature] = field(default_factory=list)
    occurred_at: datetime | None = None
    detected_at: datetime | None = None
    alert_id: str = ""
    # True while its events are kept out of the user's baseline.
    quarantined: bool = False
    # MITRE ATT&CK ids it stands for (uba.domain.attack), e.g. ["TA0001"],
    # ["T1078"].
    tactics: list[str] = field(default_factory=list)
    techniques: list[str] = field(default_factory=list)
