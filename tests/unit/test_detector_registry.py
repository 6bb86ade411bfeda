import importlib.metadata
import importlib.util

import pytest

from uba.detectors import registry as registry_module
from uba.detectors.base import Detector
from uba.detectors.registry import DetectorRegistry
from uba.domain.events import ActivityType


class NeedsSklearn(Detector):
    name = "needs_sklearn"
    family = "enhanced"
    description = "needs scikit-learn"
    title = "Needs scikit-learn"
    requires = ("sklearn", "definitely_missing_module_xyz")
    event_types = frozenset({ActivityType.API_CALL})

    def __init__(self, contamination: float = 0.01):
        self.contamination = contamination

    def score_one(self, event, ctx):
        return []


class Plugin(Detector):
    name = "plugin_detector"
    description = "a plug-in"
    title = "Plug-in"
    default_enabled = False

    def score_one(self, event, ctx):
        return []


def test_unknown_detector_in_config_is_named():
    with pytest.raises(ValueError, match="unknown detector.*login_tme"):
        DetectorRegistry(entry_points=False).build({"login_tme": {"enabled": True}})


def test_unknown_parameter_is_named_with_its_detector():
    with pytest.raises(ValueError, match=r"parameter\(s\) for detector login_time: min_prob"):
        DetectorRegistry(entry_points=False).build({"login_time": {"min_prob": 0.1}})


def test_bad_values_are_refused():
    reg = DetectorRegistry(entry_points=False)
    with pytest.raises(ValueError, match="enabled must be true or false"):
        reg.build({"new_ip": {"enabled": "no"}})
    with pytest.raises(ValueError, match="min_probability"):
        reg.build({"login_time": {"min_probability": 2}})
    with pytest.raises(ValueError, match="severity"):
        reg.build(
            {"new_country": {"enabled": False, "severity": "dire"}}
        )  # checked even when disabled


def test_enable_disable_and_tune():
    reg = DetectorRegistry(entry_points=False)
    everything = reg.build()
    assert {d.name for d in everything} == set(registry_module.BUILTIN_DETECTORS)
    tuned = {
        d.name: d
        for d in reg.build(
            {"new_ip": {"enabled": False}, "impossible_travel": {"max_speed_kmh": 900}}
        )
    }
    assert "new_ip" not in tuned and tuned["impossible_travel"].max_speed_kmh == 900


def test_entries_view_is_read_only_and_imports_lazily():
    reg = DetectorRegistry({"ghost": "no_such_package.detectors:Ghost"}, entry_points=False)
    with pytest.raises(TypeError):
        reg.entries["x"] = None  # type: ignore[index]
    entry = reg.entries["ghost"]  # registering did not import anything
    assert not entry.available and "ModuleNotFoundError" in entry.unavailable_reason
    assert reg.build() == []  # unavailable by default: skipped
    with pytest.raises(ValueError, match="ghost is enabled but unavailable"):
        reg.build({"ghost": {"enabled": True}})


def test_missing_requirements_make_a_detector_unavailable_with_a_reason(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "sklearn" else real_find_spec(name, *a),
    )
    reg = DetectorRegistry({}, entry_points=False)
    reg.register("needs_sklearn", NeedsSklearn)
    (info,) = reg.describe()
    assert not info.available
    assert info.unavailable_reason == "scikit-learn, definitely_missing_module_xyz not installed"
    assert info.family == "enhanced"
    with pytest.raises(ValueError, match="scikit-learn"):
        reg.build({"needs_sklearn": {"enabled": True}})


def test_registered_name_must_match_the_class():
    reg = DetectorRegistry({}, entry_points=False)
    reg.register("other_name", Plugin)
    assert "registered as 'other_name'" in reg.entries["other_name"].unavailable_reason
    with pytest.raises(ValueError, match="already registered"):
        reg.register("other_name", Plugin)


def test_entry_points_add_plugins_but_not_over_builtins(monkeypatch):
    module = type(importlib)("uba_test_plugin")
    module.Plugin = Plugin
    monkeypatch.setitem(__import__("sys").modules, "uba_test_plugin", module)
    eps = importlib.metadata.EntryPoints(
        [
            importlib.metadata.EntryPoint(
                "plugin_detector", "uba_test_plugin:Plugin", "uba.detectors"
            ),
            importlib.metadata.EntryPoint("login_time", "uba_test_plugin:Plugin", "uba.detectors"),
        ]
    )
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda group=None: eps)
    reg = DetectorRegistry()
    assert reg.entries["plugin_detector"].source.startswith("entry point")
    assert reg.get("login_time").__module__ == "uba.detectors.login_time"
    assert "plugin_detector" not in {d.name for d in reg.build()}  # off by default
    assert "plugin_detector" in {d.name for d in reg.build({"plugin_detector": {"enabled": True}})}
