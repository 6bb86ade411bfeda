"""Conformance checks every detector must pass, built-in or plug-in, in the
spirit of scikit-learn's `check_estimator`. Each raises AssertionError
with a message naming the detector and the broken promise."""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from uba.detectors.base import Detector
from uba.detectors.engine import DetectionEngine
from uba.detectors.registry import DetectorRegistry
from uba.domain.anomalies import Anomaly, Severity
from uba.domain.events import ActivityEvent
from uba.domain.priors import PriorBaselines
from uba.domain.shared_state import SharedState
from uba.domain.user_baseline import UserBaseline
from uba.testing.synthetic import Scenario


def check_attributes(cls: type[Detector]) -> None:
    name = getattr(cls, "name", "")
    assert isinstance(name, str) and name.isidentifier() and name.islower(), (
        f"{cls.__name__}: bad name {name!r}"
    )
    for attribute in ("version", "family", "description", "title"):
        value = getattr(cls, attribute, "")
        assert isinstance(value, str) and value.strip(), (
            f"{name}: {attribute} must be a non-empty string"
        )
    assert isinstance(cls.requires, tuple) and all(isinstance(m, str) for m in cls.requires), (
        f"{name}: requires must be a tuple of module names"
    )


def check_params_round_trip(cls: type[Detector], params: dict | None = None) -> None:
    """__init__ stores parameters as given and nothing else; get_params
    returns them; building from get_params gives the same parameters."""
    detector = cls(**(params or {}))
    names = cls.param_names()
    stored = (
        {k for k in vars(detector) if not k.endswith("_")}
        if hasattr(detector, "__dict__")
        else set(names)
    )
    assert stored == set(names), (
        f"{cls.name}: __init__ stores {sorted(stored)}, parameters are {sorted(names)}"
    )
    given = detector.get_params()
    for key, value in (params or {}).items():
        assert given[key] is value, f"{cls.name}: parameter {key} not stored as given"
    detector.check_params()
    again = cls(**given)
    assert again.get_params() == given, f"{cls.name}: get_params does not round-trip"


@dataclass
class ScenarioRun:
    """Anomalies of each continuation of a scenario."""

    normal: list[Anomaly] = field(default_factory=list)
    anomalous: list[Anomaly] = field(default_factory=list)

    @staticmethod
    def top(anomalies: list[Anomaly]) -> float:
        return max((a.score for a in anomalies), default=0.0)


class Simulation:
    """An engine with in-memory baselines of every user seen, priors and
    shared state: what storage provides in the server, for tests."""

    def __init__(self, engine: DetectionEngine, prior: PriorBaselines | None = None) -> None:
        self.engine = engine
        self.baselines: dict[str, UserBaseline] = {}
        self.prior = PriorBaselines() if prior is None else prior
        self.shared = SharedState()

    def baseline(self, user_id: str) -> UserBaseline:
        baseline = self.baselines.get(user_id)
        if baseline is None:
            baseline = self.baselines[user_id] = UserBaseline(user_id)
        return baseline

    def feed(self, events: Iterable[ActivityEvent]) -> list[Anomaly]:
        found: list[Anomaly] = []
        for event in events:
            found.extend(
                self.engine.process(event, self.baseline(event.user_id), self.prior, self.shared)
            )
        return found

    def copy(self) -> Simulation:
        """An independent copy of the state, sharing the engine."""
        clone = Simulation(self.engine, copy.deepcopy(self.prior))
        clone.baselines = copy.deepcopy(self.baselines)
        clone.shared = copy.deepcopy(self.shared)
        return clone


def only(registry: DetectorRegistry, name: str, **params) -> dict[str, dict]:
    """Configuration enabling detector `name` (with `params`) and no other."""
    config: dict[str, dict] = {
        other: {"enabled": False} for other in registry.names() if other != name
    }
    config[name] = {"enabled": True, **params}
    return config


def run_scenario(registry: DetectorRegistry, name: str, scenario: Scenario) -> ScenarioRun:
    """Learns the history with only detector `name` enabled, then feeds the
    normal and the anomalous continuation, each from the same state."""
    engine = DetectionEngine(registry, only(registry, name, **scenario.params))
    world = Simulation(engine)
    world.feed(scenario.history)
    run = ScenarioRun()
    run.normal = world.copy().feed(scenario.normal)
    run.anomalous = world.copy().feed(scenario.anomalous)
    assert not engine.failures, f"{name}: raised while scoring or learning: {dict(engine.failures)}"
    return run


def check_scenario(registry: DetectorRegistry, name: str, scenario: Scenario) -> ScenarioRun:
    """Scores are finite floats >= 0, anomalies are explained, and the
    anomalous continuation scores higher than the normal one."""
    run = run_scenario(registry, name, scenario)
    for anomaly in run.normal + run.anomalous:
        assert (
            isinstance(anomaly.score, float) and math.isfinite(anomaly.score) and anomaly.score >= 0
        ), f"{name}: score {anomaly.score!r} is not a finite float >= 0"
        assert isinstance(anomaly.severity, Severity), f"{name}: severity {anomaly.severity!r}"
        assert anomaly.reason and "\n" not in anomaly.reason, (
            f"{name}: reason must be one non-empty line"
        )
        assert anomaly.event_ids, f"{name}: anomaly without event ids"
    assert run.anomalous, f"{name}: nothing found in the anomalous continuation"
    assert ScenarioRun.top(run.anomalous) > ScenarioRun.top(run.normal), (
        f"{name}: anomalous continuation scored {ScenarioRun.top(run.anomalous)}, "
        f"normal {ScenarioRun.top(run.normal)}; higher must mean more anomalous"
    )
    return run
