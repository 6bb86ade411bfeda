"""The detector registry, in the style of fsspec's: a private dict of
entries with a read-only public view, built-ins registered by dotted path
and imported only when first needed, third-party detectors added from the
`uba.detectors` entry-point group:

    # a plug-in's pyproject.toml
    [project.entry-points."uba.detectors"]
    my_detector = "my_package.detectors:MyDetector"

Configuration picks and tunes detectors, one object per detector name:

    {"login_time": {"enabled": true, "min_probability": 0.005},
     "new_ip": {"enabled": false},
     "threshold_rules": {"rules": [{"name": "...", "type": "login_failure", ...}]}}

Names not mentioned run with their defaults if `default_enabled`. Unknown
detector names and unknown parameters are errors, so a typo cannot switch
a detector off silently.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from uba.detectors.base import USER_SCOPE, Detector

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "uba.detectors"

# Built-in detectors by name; imported on first use.
BUILTIN_DETECTORS: Mapping[str, str] = MappingProxyType(
    {
        "login_time": "uba.detectors.login_time:LoginTimeDetector",
        "login_frequency": "uba.detectors.login_frequency:LoginFrequencyDetector",
        "failed_login_burst": "uba.detectors.failed_logins:FailedLoginBurstDetector",
        "password_spraying": "uba.detectors.failed_logins:PasswordSprayingDetector",
        "credential_stuffing": "uba.detectors.population:CredentialStuffingDetector",
        "mfa_fatigue": "uba.detectors.mfa:MfaFatigueDetector",
        "session_duration": "uba.detectors.session_duration:SessionDurationDetector",
        "api_rate": "uba.detectors.api_usage:ApiRateDetector",
        "api_new_endpoint": "uba.detectors.api_usage:NewEndpointDetector",
        "data_volume": "uba.detectors.api_usage:DataVolumeDetector",
        "sustained_volume": "uba.detectors.volume:SustainedVolumeDetector",
        "api_error_rate": "uba.detectors.api_usage:ApiErrorRateDetector",
        "new_country": "uba.detectors.novelty:NewCountryDetector",
        "new_device": "uba.detectors.novelty:NewDeviceDetector",
        "new_ip": "uba.detectors.novelty:NewIpDetector",
        "impossible_travel": "uba.detectors.travel:ImpossibleTravelDetector",
        "threshold_rules": "uba.detectors.rules:ThresholdRulesDetector",
        "session_hijack": "uba.detectors.session_hijack:SessionHijackDetector",
        "session_risk": "uba.detectors.session_risk:SessionRiskDetector",
        "dormant_account": "uba.detectors.session_risk:DormantAccountDetector",
    }
)

# Enhanced detectors (the `ml` extra: numpy, scipy, scikit-learn), registered
# with the built-ins by the default registry. Off unless configured; listed
# as unavailable, with the missing library named, when it does not import.
ENHANCED_DETECTORS: Mapping[str, str] = MappingProxyType(
    {
        "isolation_forest": "uba.detectors.isolation_forest:IsolationForestDetector",
        "distribution_shift": "uba.detectors.distribution_shift:DistributionShiftDetector",
    }
)
DEFAULT_DETECTORS: Mapping[str, str] = MappingProxyType({**BUILTIN_DETECTORS, **ENHANCED_DETECTORS})

# Import names whose distribution is called differently, for messages.
_DISTRIBUTION_NAMES = {"sklearn": "scikit-learn", "yaml": "PyYAML"}


def _import_target(target: str) -> type:
    """Imports "package.module:Class" or "package.module.Class"."""
    module_name, sep, attribute = target.partition(":")
    if not sep:
        module_name, _, attribute = target.rpartition(".")
    module = importlib.import_module(module_name)
    obj = module
    for part in attribute.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[return-value]


@dataclass(frozen=True, slots=True)
class DetectorInfo:
    """What the registry knows about one detector, for listings and logs."""

    name: str
    target: str
    source: str  # "builtin" or "entry point <distribution>"
    available: bool
    unavailable_reason: str
    family: str
    version: str
    description: str
    requires: tuple[str, ...]
    # USER_SCOPE or POPULATION_SCOPE (Detector.scope); the threshold rules
    # say "user" though their rules by address are a population part.
    scope: str = USER_SCOPE


class DetectorEntry:
    """One registered detector: where it lives, and (once asked) its class
    and whether its requirements import."""

    __slots__ = ("name", "target", "source", "_cls", "_reason", "_checked", "_lock")

    def __init__(self, name: str, target: str | type[Detector], source: str):
        self.name = name
        self.source = source
        if isinstance(target, str):
            self.target = target
            self._cls: type[Detector] | None = None
        else:
            self.target = f"{target.__module__}:{target.__qualname__}"
            self._cls = target
        self._reason = ""
        self._checked = False
        self._lock = threading.Lock()

    def _check(self) -> None:
        if self._checked:
            return
        with self._lock:
            if self._checked:
                return
            try:
                if self._cls is None:
                    cls = _import_target(self.target)
                    if not (isinstance(cls, type) and issubclass(cls, Detector)):
                        raise TypeError(f"{self.target} is not a Detector subclass")
                    self._cls = cls
                if getattr(self._cls, "name", None) != self.name:
                    raise ValueError(
                        f"its name is {getattr(self._cls, 'name', None)!r}, registered as "
                        f"{self.name!r}"
                    )
                missing = [m for m in self._cls.requires if importlib.util.find_spec(m) is None]
                if missing:
                    self._reason = (
                        ", ".join(_DISTRIBUTION_NAMES.get(m, m) for m in missing) + " not installed"
                    )
            except Exception as exc:  # a broken plug-in must not stop the server
                self._reason = f"cannot load {self.target}: {type(exc).__name__}: {exc}"
            self._checked = True

    @property
    def available(self) -> bool:
        self._check()
        return not self._reason

    @property
    def unavailable_reason(self) -> str:
        self._check()
        return self._reason

    def load(self) -> type[Detector]:
        """The detector class; ValueError when it cannot be used."""
        self._check()
        if self._cls is None or self._reason:
            raise ValueError(f"detector {self.name} is unavailable: {self._reason}")
        return self._cls

    def info(self) -> DetectorInfo:
        self._check()
        cls = self._cls
        return DetectorInfo(
            name=self.name,
            target=self.target,
            source=self.source,
            available=not self._reason,
            unavailable_reason=self._reason,
            family=getattr(cls, "family", ""),
            version=getattr(cls, "version", ""),
            description=getattr(cls, "description", ""),
            requires=tuple(getattr(cls, "requires", ())),
            scope=getattr(cls, "scope", USER_SCOPE),
        )


class DetectorRegistry:
    """Detectors by name. `entries` is a read-only view of the private dict;
    change it only through `register`."""

    def __init__(
        self, builtins: Mapping[str, str] = DEFAULT_DETECTORS, *, entry_points: bool = True
    ):
        self._entries: dict[str, DetectorEntry] = {}
        self.entries: Mapping[str, DetectorEntry] = MappingProxyType(self._entries)
        for name, target in builtins.items():
            self.register(name, target)
        if entry_points:
            self._load_entry_points()

    def register(
        self,
        name: str,
        target: str | type[Detector],
        *,
        source: str = "builtin",
        clobber: bool = False,
    ) -> None:
        """Adds a detector by dotted path ("pkg.module:Class") or class."""
        if not name or not name.replace("_", "").isalnum():
            raise ValueError(f"detector name {name!r} must be letters, digits and underscores")
        if name in self._entries and not clobber:
            raise ValueError(
                f"detector {name} is already registered ({self._entries[name].target})"
            )
        self._entries[name] = DetectorEntry(name, target, source)

    def _load_entry_points(self) -> None:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            distribution = ep.dist.name if ep.dist is not None else "unknown distribution"
            if ep.name in self._entries:
                log.warning(
                    "detector entry point %s from %s ignored: the name is taken by %s",
                    ep.name,
                    distribution,
                    self._entries[ep.name].target,
                )
                continue
            try:
                self.register(ep.name, ep.value, source=f"entry point {distribution}")
            except ValueError as exc:
                log.warning(
                    "detector entry point %s from %s ignored: %s", ep.name, distribution, exc
                )

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return list(self._entries)

    def get(self, name: str) -> type[Detector]:
        """The class registered as `name` (imported now if need be)."""
        entry = self._entries.get(name)
        if entry is None:
            raise ValueError(
                f"unknown detector {name!r}; known: {', '.join(sorted(self._entries))}"
            )
        return entry.load()

    def describe(self) -> list[DetectorInfo]:
        return [entry.info() for entry in self._entries.values()]

    def build(
        self,
        config: Mapping[str, Mapping[str, Any]] | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> list[Detector]:
        """Instances of the enabled, available detectors, tuned by `config`.
        `defaults` are parameters given to every detector that takes them
        unless its configuration sets them (the composition root's bounds on
        state, uba.detectors.base.STATE_BOUNDS).

        ValueError for: unknown detector names; a non-boolean `enabled`;
        unknown parameters or bad values; a detector enabled explicitly but
        unavailable (say, its library is not installed). A detector enabled
        only by default but unavailable is skipped (`describe` says why)."""
        return [detector for detector, enabled in self._instantiate(config, defaults) if enabled]

    def effective_config(
        self,
        config: Mapping[str, Mapping[str, Any]] | None = None,
        defaults: Mapping[str, Any] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Every available detector with `enabled` and all its parameters,
        defaults filled in; building from the result gives equal detectors."""
        return {
            detector.name: {"enabled": enabled, **detector.get_params()}
            for detector, enabled in self._instantiate(config, defaults)
        }

    def _instantiate(
        self,
        config: Mapping[str, Mapping[str, Any]] | None,
        defaults: Mapping[str, Any] | None = None,
    ) -> list[tuple[Detector, bool]]:
        config = dict(config or {})
        unknown = sorted(set(config) - set(self._entries))
        if unknown:
            raise ValueError(
                f"unknown detector(s) in configuration: {', '.join(unknown)}; "
                f"known: {', '.join(sorted(self._entries))}"
            )
        result: list[tuple[Detector, bool]] = []
        for name, entry in self._entries.items():
            settings = config.get(name, {})
            if not isinstance(settings, Mapping):
                raise ValueError(
                    f"configuration of detector {name} must be an object, got "
                    f"{type(settings).__name__}"
                )
            params = dict(settings)
            enabled = params.pop("enabled", None)
            if enabled is not None and not isinstance(enabled, bool):
                raise ValueError(f"{name}.enabled must be true or false, got {enabled!r}")
            if not entry.available:
                if enabled:
                    raise ValueError(
                        f"detector {name} is enabled but unavailable: {entry.unavailable_reason}"
                    )
                continue
            cls = entry.load()
            allowed = cls.param_names()
            bad = sorted(set(params) - set(allowed))
            if bad:
                raise ValueError(
                    f"unknown parameter(s) for detector {name}: {', '.join(bad)}; "
                    f"allowed: {', '.join(('enabled',) + allowed)}"
                )
            for key, value in (defaults or {}).items():
                if key in allowed and key not in params:
                    params[key] = value
            detector = cls(**params)
            detector.check_params()  # also for disabled ones, so typos show
            result.append((detector, cls.default_enabled if enabled is None else enabled))
        return result


_default: DetectorRegistry | None = None
_default_lock = threading.Lock()


def default_registry() -> DetectorRegistry:
    """The process-wide registry: built-ins plus installed plug-ins."""
    global _default
    with _default_lock:
        if _default is None:
            _default = DetectorRegistry()
        return _default
