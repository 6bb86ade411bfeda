"""Enhanced analytics through the API: the mode switches itself on when
numpy, scipy and scikit-learn import, and reports why when they do not;
the Isolation Forest trains on stored history and scores new events."""

from __future__ import annotations

import importlib.util
import random
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from support.scenario import personas, send
from support.server import ServerProcess

from uba.domain.events import ActivityType
from uba.testing.synthetic import day_after_history
from uba.v1 import service_pb2

# Its subject depends on the analytics mode: both passes of make test run it.
pytestmark = pytest.mark.both_modes

ML = all(importlib.util.find_spec(m) is not None for m in ("numpy", "scipy", "sklearn"))


def test_capabilities_report_the_analytics_mode(uba_server):
    caps = uba_server.stub.GetCapabilities(service_pb2.GetCapabilitiesRequest())
    detectors = {d.name: d for d in caps.detectors}
    assert {"login_time", "impossible_travel", "isolation_forest", "distribution_shift"} <= set(
        detectors
    )
    if ML:
        assert caps.analytics_mode == service_pb2.ANALYTICS_MODE_ENHANCED
        assert detectors["isolation_forest"].available and detectors["isolation_forest"].enabled
        assert detectors["distribution_shift"].family == "enhanced"
    else:
        assert caps.analytics_mode == service_pb2.ANALYTICS_MODE_BASIC
        forest = detectors["isolation_forest"]
        assert (
            not forest.available
            and not forest.enabled
            and "not installed" in forest.unavailable_reason
        )
        assert "scikit-learn" in forest.unavailable_reason
        assert all(d.available for d in caps.detectors if d.family == "basic")


def test_training_without_the_packages_or_history_is_refused(uba_server):
    with pytest.raises(grpc.RpcError) as info:
        uba_server.stub.TrainModel(service_pb2.TrainModelRequest())
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


@pytest.mark.skipif(
    not ML, reason="enhanced mode needs numpy, scipy and scikit-learn (pip install '.[ml]')"
)
def test_isolation_forest_trains_on_history_and_flags_a_combined_attack(tmp_path):
    server = ServerProcess(tmp_path, extra_args=["--train-interval", "0"]).start()
    try:
        stub = server.stub
        people = personas(12, seed=21)
        send(stub, [e for p in people for e in p.history(random.Random(4))])
        request = service_pb2.TrainModelRequest()
        request.start_time.FromDatetime(datetime(2025, 12, 1, tzinfo=UTC))
        model = stub.TrainModel(request)
        assert model.version and model.row_count >= 1000 and "hour_sin" in model.features
        assert model.event_count > model.row_count / 2 and model.threshold > 0

        # Everything a little off at once: the small hours, a new device, a
        # far-away place, heavy API use.
        p = people[0]
        day = day_after_history()
        at = p.local(day, 4, 40)
        rng = random.Random(1)
        attack = [
            p.event(
                ActivityType.LOGIN_SUCCESS,
                at,
                device_id="unknown-tablet",
                country_code="RU",
                city="Omsk",
                latitude=54.98,
                longitude=73.37,
                source_ip="203.0.113.66",
            )
        ]
        attack += [
            p.api_call(
                at + timedelta(seconds=5 * i),
                rng,
                device_id="unknown-tablet",
                bytes_transferred=30_000_000,
            )
            for i in range(60)
        ]
        send(stub, attack)
        found = stub.ListAnomalies(
            service_pb2.ListAnomaliesRequest(detector="isolation_forest", user_id=p.user_id)
        )
        assert found.anomalies, "the isolation forest flagged nothing"
        top = found.anomalies[0]
        assert top.features and "isolation score" in top.observed and top.reason
    finally:
        server.stop()


def test_train_command_reports_a_clear_error(uba_server):
    import subprocess
    import sys

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "uba",
            "train",
            "--server",
            uba_server.address,
            "--api-key",
            uba_server.api_key,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "\nuba: failed precondition: " in done.stderr and "Traceback" not in done.stderr
