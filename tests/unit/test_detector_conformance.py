"""Every registered detector keeps the interface's promises."""

import math

import pytest

from uba.detectors.registry import BUILTIN_DETECTORS, DetectorRegistry
from uba.testing import checks
from uba.testing.synthetic import builtin_scenario

REGISTRY = DetectorRegistry()  # with installed plug-ins, if any
NAMES = [name for name, entry in REGISTRY.entries.items() if entry.available]


def test_every_builtin_is_registered_and_available():
    for name in BUILTIN_DETECTORS:
        assert REGISTRY.entries[name].available, REGISTRY.entries[name].unavailable_reason


@pytest.mark.parametrize("name", NAMES)
def test_attributes(name):
    cls = REGISTRY.get(name)
    checks.check_attributes(cls)
    assert cls.name == name


@pytest.mark.parametrize("name", NAMES)
def test_params_round_trip(name):
    cls = REGISTRY.get(name)
    scenario_params = builtin_scenario(name).params if name in BUILTIN_DETECTORS else {}
    checks.check_params_round_trip(cls)
    checks.check_params_round_trip(cls, scenario_params)


@pytest.mark.parametrize("name", [n for n in NAMES if n in BUILTIN_DETECTORS])
def test_higher_score_means_more_anomalous(name):
    run = checks.check_scenario(REGISTRY, name, builtin_scenario(name))
    assert all(
        isinstance(a.score, float) and math.isfinite(a.score) and a.score >= 0
        for a in run.anomalous
    )


def test_config_round_trip():
    config = {
        "login_time": {"min_probability": 0.005},
        "new_ip": {"enabled": False},
        "threshold_rules": builtin_scenario("threshold_rules").params,
    }
    effective = REGISTRY.effective_config(config)
    assert set(effective) == set(NAMES)
    assert (
        effective["login_time"]["min_probability"] == 0.005
        and effective["new_ip"]["enabled"] is False
    )
    assert REGISTRY.effective_config(effective) == effective
    built = {d.name: d.get_params() for d in REGISTRY.build(effective)}
    assert built == {
        n: {k: v for k, v in c.items() if k != "enabled"}
        for n, c in effective.items()
        if c["enabled"]
    }
