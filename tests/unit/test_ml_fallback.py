"""Basic mode: without numpy, scipy and scikit-learn the enhanced detectors
are listed as unavailable with the reason, nothing else imports them, and
basic detection works. Each check runs in a fresh interpreter, where the
ML packages are blocked (basic mode) or simply not imported yet."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# The checkout's code first (the server and the ids package it shares with the client).
SOURCES = os.pathsep.join(str(ROOT / d) for d in ("server", "clients/python"))
ML = ("numpy", "scipy", "sklearn", "joblib")

# Makes the ML packages look not installed: `import numpy` fails and
# importlib.util.find_spec("numpy") is None, as in an environment without them.
BLOCK_ML = textwrap.dedent(f"""
    import sys
    BLOCKED = {ML!r}
    for name in BLOCKED:
        sys.modules[name] = None  # find_spec -> None; import -> ImportError

    class BlockML:
        # Refuses any route to a submodule too.
        def find_spec(self, name, path=None, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked)", name=name)
            return None

    sys.meta_path.insert(0, BlockML())
""")

# Imports every module of uba.detectors and uba.domain, lists the
# registry, and runs the default (basic) detection on a 3 a.m. login.
EXERCISE = textwrap.dedent("""
    import importlib, json, pkgutil, random, sys
    import uba.detectors, uba.domain
    modules = sorted(m.name for pkg in (uba.detectors, uba.domain)
                     for m in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + "."))
    for name in modules:
        importlib.import_module(name)
    from uba.testing.checks import Simulation
    from uba.detectors.registry import DetectorRegistry
    from uba.testing.synthetic import Persona, day_after_history
    from uba.detectors.engine import DetectionEngine
    from uba.domain.events import ActivityType

    registry = DetectorRegistry(entry_points=False)
    described = {i.name: [i.available, i.unavailable_reason, i.family] for i in registry.describe()}
    sim = Simulation(DetectionEngine(registry))
    alice = Persona()
    sim.feed(alice.history(random.Random(7)))
    login = alice.event(ActivityType.LOGIN_SUCCESS, alice.local(day_after_history(), 3, 12))
    found = sim.feed([login])
    refused = {}
    for name in ("isolation_forest", "distribution_shift"):
        try:
            registry.build({name: {"enabled": True}})
        except ValueError as exc:
            refused[name] = str(exc)
    print(json.dumps({
        "modules": modules,
        "described": described,
        "built": sorted(d.name for d in sim.engine.detectors),
        "found": sorted(a.detector for a in found),
        "refused": refused,
        "ml_imported": sorted(
            m for m in sys.modules
            if m.partition(".")[0] in ("numpy", "scipy", "sklearn") and sys.modules[m] is not None
        ),
    }))
""")


def run(code: str) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": SOURCES},
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_basic_mode_lists_enhanced_detectors_as_unavailable_and_still_detects():
    out = run(BLOCK_ML + EXERCISE)
    assert {
        "uba.detectors.isolation_forest",
        "uba.detectors.distribution_shift",
        "uba.detectors.features",
        "uba.detectors.model_files",
    } <= set(out["modules"])  # all imported fine
    described = out["described"]
    assert described["isolation_forest"] == [False, "numpy, scikit-learn not installed", "enhanced"]
    assert described["distribution_shift"] == [False, "numpy, scipy not installed", "enhanced"]
    assert all(available for name, (available, _, family) in described.items() if family == "basic")
    assert "isolation_forest" not in out["built"] and "login_time" in out["built"]
    assert "login_time" in out["found"]
    assert "scikit-learn not installed" in out["refused"]["isolation_forest"]
    assert "scipy not installed" in out["refused"]["distribution_shift"]
    assert out["ml_imported"] == []


def test_basic_start_up_never_imports_the_ml_stack():
    """Even where the ML packages are installed, importing the detectors,
    listing them and detecting with the default configuration loads none."""
    out = run(EXERCISE)
    assert out["ml_imported"] == []
    assert set(out["refused"]) <= {"isolation_forest", "distribution_shift"}


def test_import_cost_of_the_ml_stack():
    """Start-up time and resident memory the enhanced detectors add (printed)."""
    pytest.importorskip("sklearn")
    pytest.importorskip("scipy")
    code = textwrap.dedent("""
        import json, time
        def rss_mb():
            for line in open("/proc/self/status"):
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        started = time.perf_counter()
        import uba.detectors.engine, uba.detectors.registry
        from uba.detectors.isolation_forest import IsolationForestDetector
        from uba.detectors.distribution_shift import DistributionShiftDetector
        basic = time.perf_counter() - started, rss_mb()
        started = time.perf_counter()
        IsolationForestDetector().warm_up()
        DistributionShiftDetector().warm_up()
        ml = time.perf_counter() - started, rss_mb()
        print(json.dumps(
            {"basic_s": basic[0], "basic_mb": basic[1], "ml_s": ml[0], "ml_mb": ml[1]}
        ))
    """)
    out = run(code)
    print(
        f"\nbasic start-up: imports {out['basic_s'] * 1e3:.0f} ms, RSS {out['basic_mb']:.0f} MB; "
        f"ML stack (numpy, scipy.stats, sklearn.ensemble): +{out['ml_s'] * 1e3:.0f} ms, "
        f"+{out['ml_mb'] - out['basic_mb']:.0f} MB RSS"
    )
    assert out["ml_mb"] > out["basic_mb"]
