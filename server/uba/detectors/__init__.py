"""Detectors, and the plug-in API for writing one.

A third-party detector subclasses `Detector`, implements `score_one`
(returning `Finding`s) and, when it keeps state of its own, `learn_one`;
it validates its hyper-parameters in `check_params` with the `require_*`
helpers, and registers under the `uba.detectors` entry-point group
(`ENTRY_POINT_GROUP`). `DetectionContext` carries what it may consult: the
user's `UserBaseline`, the group `Prior`, the event's `EventClock`, and the
`SharedState` that holds its windows across users (`KeyedWindows`). A
detector that counts events of many users by another key (a source
address, the organisation) says so with `scope = POPULATION_SCOPE` and
`population_key`, so that a partitioned deployment shows it those events
together (docs/scaling.md).
`uba.testing.checks` has the conformance checks every detector must pass.

Everything named here is the supported API; the modules behind it may move.
"""

from uba.detectors.base import (
    POPULATION_SCOPE,
    USER_SCOPE,
    DetectionContext,
    Detector,
    Finding,
    Reference,
    escalation_level,
    reference_stats,
    require_fraction,
    require_positive,
    require_severity,
    spike_threshold,
    zscore,
)
from uba.detectors.registry import ENTRY_POINT_GROUP, DetectorRegistry, default_registry
from uba.domain.anomalies import Feature, Severity
from uba.domain.clock import EventClock
from uba.domain.events import ActivityEvent, ActivityType
from uba.domain.priors import Prior
from uba.domain.shared_state import KeyedWindows, SharedState
from uba.domain.stats import RunningStats
from uba.domain.user_baseline import UserBaseline

__all__ = [
    "ENTRY_POINT_GROUP",
    "POPULATION_SCOPE",
    "USER_SCOPE",
    "ActivityEvent",
    "ActivityType",
    "DetectionContext",
    "Detector",
    "DetectorRegistry",
    "EventClock",
    "Feature",
    "Finding",
    "KeyedWindows",
    "Prior",
    "Reference",
    "RunningStats",
    "Severity",
    "SharedState",
    "UserBaseline",
    "default_registry",
    "escalation_level",
    "reference_stats",
    "require_fraction",
    "require_positive",
    "require_severity",
    "spike_threshold",
    "zscore",
]
