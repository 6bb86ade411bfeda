"""The benchmark suite keeps working: a smoke run (tiny sizes) writes the
report with every figure, the machine it ran on and the plots.

Benchmarks are not tests: this asserts that each figure is reported, never
what it measured.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import postgres

ROOT = Path(__file__).resolve().parent.parent
NEEDS = ("numpy", "sklearn", "matplotlib")


def _report_module():
    spec = importlib.util.spec_from_file_location("bench_report", ROOT / "bench" / "report.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _run_smoke(backends: list[str], out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "suite.py"),
            "--smoke",
            "--backends",
            ",".join(backends),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=720,
    )


def _tail(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        output = output.decode(errors="replace")
    return (output or "")[-4000:]


@pytest.mark.skipif(
    not all(importlib.util.find_spec(m) for m in NEEDS),
    reason=(
        "the suite measures enhanced mode and draws plots: needs numpy, scikit-learn, matplotlib"
    ),
)
# About three minutes on an idle 2-core machine, twice that when it is busy:
# the subprocess's own limit comes first, so a hang shows where it stopped.
@pytest.mark.timeout(900)
def test_smoke_run_reports_every_figure(tmp_path):
    backends = ["sqlite"]
    why = postgres.available()
    if not why:
        backends.append("postgresql")
    elif os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL is required in CI and does not answer: {why}")
    out = tmp_path / "results"
    try:
        proc = _run_smoke(backends, out)
    except subprocess.TimeoutExpired as stopped:
        pytest.fail(f"the smoke run did not finish in {stopped.timeout} s: {_tail(stopped.stdout)}")
    assert proc.returncode == 0, proc.stdout[-4000:] + "\n" + proc.stderr[-4000:]

    report = _report_module()
    data = json.loads((out / "report.json").read_text())
    got = {(f["key"], f["backend"]) for f in data["figures"]}
    expected = report.expected_keys(backends)
    assert [k for k in expected if k not in got] == []
    assert "Failures" not in data["sections"], data["sections"].get("Failures")
    for f in data["figures"]:
        if f["key"] in report.RATIO_TARGETS:
            assert f["baseline_value"] is not None and f["ratio"] is not None, f["key"]

    markdown = (out / "report.md").read_text()
    for key, _backend in expected:
        assert report.FIGURES[key][0] in markdown, key
    machine = data["machine"]
    assert machine["cores"] and machine["cpu_model"] and machine["python"] and machine["libraries"]
    assert f"{machine['cores']} cores" in markdown and machine["cpu_model"] in markdown
    assert data["generated_at"][:10] in markdown
    plots = ["ratios.png", "throughput.png", "latency.png", "growth.png", "users.png"]
    plots += ["multicore.png"] if "postgresql" in backends else []
    for name in plots:
        assert (out / name).stat().st_size > 1000, name
        assert f"({name})" in markdown, name
