"""The detector interface and the helpers basic detectors share.

A detector follows scikit-learn's habits (hyper-parameters stored as given
in `__init__`, no logic there; `get_params`) and River's streaming methods:
`score_one` judges an event against what was learned before it, and
`learn_one` updates the detector's own state afterwards. What is normal for
a user lives in the `UserBaseline`, which the engine learns; a detector's
own state is for things beyond it, such as windows across users.

Scores: higher means more anomalous, always; finite and >= 0.
"""

from __future__ import annotations

import abc
import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from uba.domain.anomalies import Feature, Severity
from uba.domain.clock import EventClock
from uba.domain.events import ActivityEvent, ActivityType
from uba.domain.priors import Prior
from uba.domain.shared_state import SharedState
from uba.domain.stats import RunningStats
from uba.domain.user_baseline import UserBaseline

# What a detector must see together (`Detector.scope`).
USER_SCOPE = "user"
POPULATION_SCOPE = "population"
SCOPES = (USER_SCOPE, POPULATION_SCOPE)

# Hyper-parameters that bound a detector's state in memory. The composition
# root gives each detector that takes one the value of --cached-users,
# unless the detector's configuration sets it (docs/scaling.md, "Memory and
# users"): `max_users` bounds what is kept per user (windows and records
# keyed by user), `max_sources` windows keyed by source address,
# `max_values` the peer windows keyed by value (uba.domain.peers).
STATE_BOUNDS = ("max_users", "max_sources", "max_values")


@dataclass(slots=True)
class Finding:
    """A detector's raw verdict on an event; the engine makes it an Anomaly."""

    score: float
    severity: Severity
    reason: str
    observed: str = ""
    expected: str = ""
    features: tuple[Feature, ...] = ()
    # Empty: just the scored event.
    event_ids: tuple[str, ...] = ()
    # What the event was judged against; None: the user's baseline as a whole.
    baseline_observations: int | None = None
    baseline_mature: bool | None = None


@dataclass(slots=True)
class DetectionContext:
    """What a detector may consult about one event."""

    baseline: UserBaseline
    # The prior to use while the baseline is immature (peer group, else
    # population); None before any user is mature.
    prior: Prior | None
    prior_label: str
    shared: SharedState
    clock: EventClock
    # Set for learn_one: the event was quarantined (kept out of the baseline).
    quarantined: bool = False
    # Set for learn_one: the user detectors that rated the event MEDIUM or
    # more. An alarm vouches for no one: it is not a peer's use of a value,
    # hour or endpoint, nor an adoption (uba.domain.peers).
    alarmed_by: frozenset[str] = frozenset()
    # Set for learn_one: the user detectors with a finding on the event, of
    # any severity (a detector may learn from having found its own LOW).
    found_by: frozenset[str] = frozenset()

    @property
    def alarmed(self) -> bool:
        return bool(self.alarmed_by)


class Detector(abc.ABC):
    """Base of every detector. Subclasses set the class attributes, take
    their hyper-parameters as keyword arguments of `__init__` (stored as
    attributes of the same name, nothing else), and implement `score_one`."""

    name: ClassVar[str]
    version: ClassVar[str] = "1.0"
    family: ClassVar[str] = "basic"
    description: ClassVar[str] = ""
    # Alert title, e.g. "Login from a new country".
    title: ClassVar[str] = ""
    # Modules that must import for the detector to work ("sklearn").
    requires: ClassVar[tuple[str, ...]] = ()
    # Whether it runs when configuration does not mention it.
    default_enabled: ClassVar[bool] = True
    # Event types it scores or learns from; None means every type. The
    # engine skips the detector for other events (saves a call per event).
    event_types: ClassVar[frozenset[ActivityType] | None] = None
    # MITRE ATT&CK ids its anomalies stand for ("T1078", "TA0001", ...),
    # overriding the table in uba.domain.attack; None: use the table.
    attack: ClassVar[tuple[str, ...] | None] = None
    # Features of its anomalies that repeat another detector's finding
    # (feature name -> that detector): a finding driven only by such features
    # is not independent evidence beside those detectors' own findings, and
    # an incident's score counts it once (uba.domain.incidents, `echoes`).
    echoes: ClassVar[Mapping[str, str]] = MappingProxyType({})
    # Whose events it must see together. USER_SCOPE: one user's (its own
    # state is keyed by the user, if it has any). POPULATION_SCOPE: events
    # of many users that share a key other than the user (`population_key`:
    # a source address, the whole organisation). One process sees every
    # event and runs both; the workers of a partitioned event log
    # (docs/scaling.md) run user detectors where events are partitioned by
    # user, and population detectors where they are re-keyed by that key.
    scope: ClassVar[str] = USER_SCOPE

    @classmethod
    def param_names(cls) -> tuple[str, ...]:
        """The hyper-parameters: the keyword arguments of `__init__`."""
        if cls.__init__ is object.__init__:
            return ()
        signature = inspect.signature(cls.__init__)
        return tuple(
            p.name
            for p in signature.parameters.values()
            if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        )

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.param_names()}

    def check_params(self) -> None:  # noqa: B027 - optional hook, no checks by default
        """Raises ValueError naming a hyper-parameter with a bad value. The
        registry calls it when building detectors from configuration."""

    def relevant_types(self) -> frozenset[ActivityType] | None:
        """Event types to route to this instance (may depend on parameters)."""
        return self.event_types

    def population_key(self, event: ActivityEvent) -> str | None:
        """A population detector's key of the event: the events it must see
        together share it ("" for the whole organisation). None: the event
        does not concern it. User detectors have none."""
        return None

    def scoped(self, scope: str) -> Detector | None:
        """The part of this detector that runs in `scope`: itself when that
        is its scope, else None. A detector with parts in both (threshold
        rules per user and per address) returns a detector for each."""
        return self if scope == self.scope else None

    @abc.abstractmethod
    def score_one(self, event: ActivityEvent, ctx: DetectionContext) -> list[Finding]:
        """Findings for the event, judged before it is learned; [] when it
        looks normal. Must not change any state."""

    def learn_one(  # noqa: B027 - optional hook: a detector without state of its own learns nothing
        self, event: ActivityEvent, ctx: DetectionContext
    ) -> None:
        """Updates the detector's own state with the event (the engine learns
        the baseline). Called for every event it is routed, quarantined or not."""

    def flush(self) -> list[tuple[ActivityEvent, Finding]]:
        """Findings a micro-batching detector deferred (scored together when
        the engine flushes, once per ingest group), with their events."""
        return []

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({params})"


# -- parameter checks ----------------------------------------------------------


def require_positive(detector: Detector, *names: str) -> None:
    for name in names:
        value = getattr(detector, name)
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not value > 0
            or not math.isfinite(value)
        ):
            raise ValueError(f"{detector.name}.{name} must be a positive number, got {value!r}")


def require_fraction(detector: Detector, *names: str) -> None:
    for name in names:
        value = getattr(detector, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise ValueError(f"{detector.name}.{name} must be between 0 and 1, got {value!r}")


def require_severity(detector: Detector, *names: str) -> None:
    for name in names:
        try:
            Severity.parse(getattr(detector, name))
        except ValueError as exc:
            raise ValueError(f"{detector.name}.{name}: {exc}") from None


# -- judging against a baseline or prior -------------------------------------------


@dataclass(slots=True, frozen=True)
class Reference:
    """The statistics an event is judged against, and whose they are."""

    stats: RunningStats
    label: str  # "user", "peer group sales", "population"
    mature: bool  # True: the user's own mature baseline


def reference_stats(ctx: DetectionContext, attribute: str, min_count: int) -> Reference | None:
    """The user's own statistics once the baseline is mature and they hold
    `min_count` values; else the prior's; else None (not enough to judge)."""
    own: RunningStats = getattr(ctx.baseline, attribute)
    if ctx.baseline.mature and own.count >= min_count:
        return Reference(own, "user", True)
    if ctx.prior is not None:
        pooled: RunningStats = getattr(ctx.prior, attribute)
        if pooled.count >= min_count:
            return Reference(pooled, ctx.prior_label, False)
    return None


def spike_threshold(stats: RunningStats, z: float, floor: float, min_std: float) -> float:
    """The value above which a per-day/per-hour count is a spike: mean +
    z standard deviations (at least `min_std`, and at least 10% of the
    mean, so a flat history does not make every +1 a spike), and at least
    `floor`."""
    spread = max(stats.stddev, min_std, 0.1 * abs(stats.mean))
    return max(floor, stats.mean + z * spread)


def escalation_level(value: float, threshold: float) -> int:
    """0 below the threshold; 1 from it; +1 at each doubling. A rate
    detector reports when the level rises, not on every event above it."""
    if value < threshold or threshold <= 0:
        return 0
    return int(math.floor(math.log2(value / threshold))) + 1


def zscore(value: float, stats: RunningStats, min_std: float) -> float:
    return (value - stats.mean) / max(stats.stddev, min_std)


# -- formatting for reasons -----------------------------------------------------------


def fmt_count(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() or abs(value) >= 100 else f"{value:,.1f}"


def fmt_bytes(value: float) -> str:
    value = float(value)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(value) < 1000 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} TB"  # unreachable


def fmt_duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, _ = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def fmt_window(seconds: float) -> str:
    return fmt_duration(seconds)
