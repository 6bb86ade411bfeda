"""The detection engine: score an event with every enabled detector, then
learn it, unless it looks like an attack.

Order matters: an event is judged against what was learned before it, and
only then becomes part of the baseline. Events with a HIGH or CRITICAL
anomaly are quarantined instead: kept out of the baseline so an attacker
cannot teach it that the attack is normal. `admit` learns such an event
later, when an analyst resolves its alert as benign or a false positive.

The engine holds no per-user state: the caller (the ingest pipeline) loads
the user's baseline, the priors and the shared detector state, calls
`process`, and saves what it mutated.

An engine may run only the detectors of one scope (a partitioned event
log's workers, docs/scaling.md): the user detectors where events are
partitioned by user, the population detectors where they are re-keyed by
each detector's `population_key`. A population engine reads the user's
baseline but neither learns it nor quarantines the event: both are the
user's partition's to do.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from uba.detectors.base import (
    POPULATION_SCOPE,
    SCOPES,
    USER_SCOPE,
    DetectionContext,
    Detector,
    Finding,
)
from uba.detectors.registry import DetectorRegistry
from uba.domain.anomalies import Anomaly, Severity
from uba.domain.events import ActivityEvent, ActivityType
from uba.domain.ids import new_uuid7
from uba.domain.priors import PriorBaselines
from uba.domain.shared_state import SharedState
from uba.domain.user_baseline import UserBaseline
from uba.observability.histogram import FastHistogram

# Most events have no finding: no set to build for them.
_NO_ONE: frozenset[str] = frozenset()

log = logging.getLogger(__name__)


def utcnow() -> datetime:
    return datetime.now(UTC)


class DetectionEngine:
    """Runs the configured detectors over events, one user's event at a time.

    Not thread-safe for one user: the caller serialises events of a user
    (and shared state updates) as it serialises their storage."""

    def __init__(
        self,
        registry: DetectorRegistry,
        config: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        quarantine_at: Severity = Severity.HIGH,
        clock: Callable[[], datetime] = utcnow,
        scope: str | None = None,
        accept: Callable[[ActivityEvent, Detector], bool] | None = None,
        defaults: Mapping[str, Any] | None = None,
    ):
        """`scope`: run only that scope's part of each detector (None: every
        detector whole). `accept(event, detector)`: whether the detector
        takes the event (a population partition takes the events whose key
        falls in it); None: all. `defaults`: parameters for every detector
        that takes them (see DetectorRegistry.build), e.g. the bounds on
        state in memory."""
        if scope is not None and scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        built = registry.build(config, defaults)
        self.detectors: list[Detector] = (
            built
            if scope is None
            else [part for d in built if (part := d.scoped(scope)) is not None]
        )
        self.scope = scope
        # Population detectors' parts, whose keys a front end of the event
        # log routes each event by.
        self.population: tuple[Detector, ...] = tuple(
            part for d in self.detectors if (part := d.scoped(POPULATION_SCOPE)) is not None
        )
        self._accept = accept
        self.quarantine_at = quarantine_at
        self._clock = clock
        # Detectors per event type, resolved once: most detectors care about
        # one or two types, and skipping the rest is the cheapest call.
        routes: dict[ActivityType, list[Detector]] = {kind: [] for kind in ActivityType}
        for detector in self.detectors:
            kinds = detector.relevant_types()
            for kind in ActivityType:
                if kinds is None or kind in kinds:
                    routes[kind].append(detector)
        self._routes = {kind: tuple(ds) for kind, ds in routes.items()}
        # Exceptions per detector; a failing detector must not stop ingest.
        self.failures: Counter[str] = Counter()
        # Anomalies found, by (detector, severity name): read by the metrics.
        self.found: Counter[tuple[str, str]] = Counter()
        # Seconds per event per detector (score and learn), once
        # `measure_time` turned them on (--metrics-listen): by detector name,
        # and per event type aligned with its route.
        self.timings: dict[str, FastHistogram] = {}
        self._route_timings: dict[ActivityType, tuple[FastHistogram, ...]] = {}

    def measure_time(self) -> None:
        """Times each detector on each event from now on (metrics)."""
        self.timings = {d.name: FastHistogram() for d in self.detectors}
        self._route_timings = {
            kind: tuple(self.timings[d.name] for d in ds) for kind, ds in self._routes.items()
        }

    @property
    def learns_baselines(self) -> bool:
        """False for a population engine: the baselines are the user
        partitions' (read here, never learned or saved)."""
        return self.scope != POPULATION_SCOPE

    def population_keys(self, event: ActivityEvent) -> set[str]:
        """The keys under which population detectors must see the event
        with other users' (a source address, "" for the organisation)."""
        keys: set[str] = set()
        for detector in self.population:
            kinds = detector.relevant_types()
            if kinds is None or event.type in kinds:
                key = detector.population_key(event)
                if key is not None:
                    keys.add(key)
        return keys

    @property
    def titles(self) -> dict[str, str]:
        """Alert titles by detector name, for the alert policy."""
        return {d.name: d.title or d.name.replace("_", " ").capitalize() for d in self.detectors}

    def process(
        self,
        event: ActivityEvent,
        baseline: UserBaseline,
        prior: PriorBaselines | None,
        shared: SharedState,
    ) -> list[Anomaly]:
        """Scores the event, then learns it into `baseline` and the detectors'
        `shared` state (or, when quarantined, only counts it in the open
        day/hour). Returns its anomalies, flagged quarantined when they are.
        When the baseline turns mature, it is added to `prior`."""
        if baseline.user_id != event.user_id:
            raise ValueError(
                f"event of user {event.user_id!r} given the baseline of {baseline.user_id!r}"
            )
        event = baseline.as_seen(event)
        clock = baseline.clock(event)
        if prior is not None:
            group_prior, prior_label = prior.select(event.peer_group or baseline.peer_group)
        else:
            group_prior, prior_label = None, "no prior"
        ctx = DetectionContext(baseline, group_prior, prior_label, shared, clock)
        detectors = self._routes[event.type]
        timed = self._route_timings.get(event.type) if self._route_timings else None
        if self._accept is not None:
            accept = self._accept
            taken = [i for i, d in enumerate(detectors) if accept(event, d)]
            if len(taken) < len(detectors):
                detectors = tuple(detectors[i] for i in taken)
                timed = tuple(timed[i] for i in taken) if timed is not None else None

        spent = [0.0] * len(detectors) if timed is not None else None
        findings: list[tuple[Detector, Finding]] = []
        for i, detector in enumerate(detectors):
            started = time.perf_counter() if spent is not None else 0.0
            try:
                for finding in detector.score_one(event, ctx):
                    findings.append((detector, finding))
            except Exception:
                self.failures[detector.name] += 1
                log.exception("detector %s failed to score event %s", detector.name, event.event_id)
            if spent is not None:
                spent[i] = time.perf_counter() - started

        learns = self.learns_baselines
        quarantined = learns and any(f.severity >= self.quarantine_at for _, f in findings)
        anomalies = (
            [self._anomaly(event, baseline, d, f, quarantined) for d, f in findings]
            if findings
            else []
        )

        # User detectors' findings only: a worker of a partitioned event log
        # sees no others, and the findings must be the same embedded.
        if findings:
            user_findings = [(d.name, f) for d, f in findings if d.scope == USER_SCOPE]
            ctx.found_by = frozenset(name for name, _ in user_findings)
            ctx.alarmed_by = frozenset(
                name for name, f in user_findings if f.severity >= Severity.MEDIUM
            )
        else:
            ctx.found_by = ctx.alarmed_by = _NO_ONE
        was_mature = baseline.mature
        if learns:  # a population engine leaves the baseline to the user's partition
            if quarantined:
                baseline.note_quarantined(event, clock)
            else:
                baseline.learn(event, clock, alarmed=bool(ctx.alarmed_by))
        ctx.quarantined = quarantined
        for i, detector in enumerate(detectors):
            started = time.perf_counter() if spent is not None else 0.0
            try:
                detector.learn_one(event, ctx)
            except Exception:
                self.failures[detector.name] += 1
                log.exception("detector %s failed to learn event %s", detector.name, event.event_id)
            if spent is not None and timed is not None:
                timed[i].observe(spent[i] + time.perf_counter() - started)
        if prior is not None and not was_mature and baseline.mature:
            prior.include(baseline)
        return anomalies

    def flush(self) -> list[Anomaly]:
        """Anomalies of detectors that score in micro-batches (one library
        call per ingest group instead of one per event). Their findings
        never quarantine: the event has been learned by then."""
        anomalies = []
        for detector in self.detectors:
            try:
                for event, finding in detector.flush():
                    anomalies.append(self._anomaly(event, None, detector, finding, False))
            except Exception:
                self.failures[detector.name] += 1
                log.exception("detector %s failed to flush", detector.name)
        return anomalies

    def admit(self, event: ActivityEvent, baseline: UserBaseline) -> None:
        """Learns a quarantined event into the baseline after all (an analyst
        found it benign). Detector state already saw it in `process`. If its
        day or hour has closed meanwhile, only its non-rate parts (hours,
        places, devices, endpoints, session length) are learned."""
        if baseline.user_id != event.user_id:
            raise ValueError(
                f"event of user {event.user_id!r} given the baseline of {baseline.user_id!r}"
            )
        baseline.learn(baseline.as_seen(event))

    def _anomaly(
        self,
        event: ActivityEvent,
        baseline: UserBaseline | None,
        detector: Detector,
        finding: Finding,
        quarantined: bool,
    ) -> Anomaly:
        score = float(finding.score)
        if not score >= 0.0 or score == float("inf"):
            # Keep the contract (finite, >= 0) even for a misbehaving plug-in.
            log.warning("detector %s returned score %r; clamped", detector.name, finding.score)
            score = 0.0 if not score >= 0.0 else 1e308
        self.found[(detector.name, finding.severity.name.lower())] += 1
        return Anomaly(
            anomaly_id=new_uuid7(),
            user_id=event.user_id,
            detector=detector.name,
            detector_version=detector.version,
            score=score,
            severity=finding.severity,
            event_ids=list(finding.event_ids) or [event.event_id],
            reason=finding.reason,
            observed=finding.observed,
            expected=finding.expected,
            baseline_observations=(
                finding.baseline_observations
                if finding.baseline_observations is not None
                else baseline.observation_count
                if baseline is not None
                else 0
            ),
            baseline_mature=(
                finding.baseline_mature
                if finding.baseline_mature is not None
                else baseline is not None and baseline.mature
            ),
            features=list(finding.features),
            occurred_at=event.occurred_at,
            detected_at=self._clock(),
            quarantined=quarantined,
        )
