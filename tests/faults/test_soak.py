"""A short soak (the long one is `make soak`): ingest, queries, exports and
subscriptions together lose nothing and leak no descriptors or threads."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from support.scale import scaled, scaled_timeout

pytestmark = scaled_timeout(300)


def load_soak():
    path = Path(__file__).resolve().parents[2] / "bench" / "soak.py"
    spec = importlib.util.spec_from_file_location("uba_bench_soak", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_short_soak(backend, make_database_url):
    report = load_soak().run(scaled(6), make_database_url(backend), quiet=True)
    assert report["acknowledged"] > 0 and report["lost"] == 0 and report["extra"] == 0
    assert report["errors"] == 0 and report["queries"] > 0 and report["exports"] >= 1
    samples = report["samples"]
    assert len(samples) >= 5
    # Nothing grows per request: descriptors and threads stay put after warm-up.
    assert samples[-1]["fds"] <= samples[1]["fds"] + 8
    assert samples[-1]["threads"] <= samples[1]["threads"] + 4
