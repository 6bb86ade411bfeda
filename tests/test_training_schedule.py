"""The scheduled Isolation Forest training through a real server: a
deployment that imports months-old history gets a model (the window is the
latest stored data by event time, not the last 30 days of the wall clock),
and importing older history later trains a new one."""

from __future__ import annotations

import importlib.util
import random
import time
from datetime import timedelta

import pytest
from support.scenario import personas, send
from support.server import ServerProcess

from uba.domain.events import ActivityType
from uba.testing.synthetic import HISTORY_START, day_after_history
from uba.v1 import service_pb2

ML = all(importlib.util.find_spec(m) is not None for m in ("numpy", "scipy", "sklearn"))
pytestmark = pytest.mark.skipif(not ML, reason="enhanced mode needs numpy, scipy and scikit-learn")


def wait_for_log(server: ServerProcess, text: str, after: int = 0, timeout: float = 240.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in server.output[after:]:
            if text in line:
                return line
        time.sleep(0.5)
    raise AssertionError(
        f"no log line with {text!r} within {timeout:.0f} s:\n" + "".join(server.output[-20:])
    )


def test_imported_history_gets_a_model_and_older_history_a_new_one(tmp_path):
    # A train interval of 18 s: the schedule checks every 18 s.
    server = ServerProcess(tmp_path, extra_args=["--train-interval", "0.005"]).start()
    try:
        stub = server.stub
        people = personas(12, seed=21)
        rng = random.Random(4)
        history = sorted((e for p in people for e in p.history(rng)), key=lambda e: e.occurred_at)
        # History ended months ago; the newest four weeks of it first.
        split = HISTORY_START.replace(tzinfo=history[0].occurred_at.tzinfo) + timedelta(days=14)
        send(stub, [e for e in history if e.occurred_at >= split])
        line = wait_for_log(server, "isolation forest trained (no model yet)")
        assert "on " in line and " rows" in line
        mark = len(server.output)
        send(stub, [e for e in history if e.occurred_at < split])
        wait_for_log(
            server, "isolation forest trained (older history stored since the model", after=mark
        )

        # The model scores new events: everything a little off at once.
        p = people[0]
        at = p.local(day_after_history(), 4, 40)
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
    finally:
        server.stop()


def test_train_model_without_a_window_uses_the_newest_stored_events(tmp_path):
    server = ServerProcess(tmp_path, extra_args=["--train-interval", "0"]).start()
    try:
        stub = server.stub
        people = personas(12, seed=22)
        history = [e for p in people for e in p.history(random.Random(5))]
        send(stub, history)
        model = stub.TrainModel(service_pb2.TrainModelRequest())  # no start or end time
        newest = max(e.occurred_at for e in history)
        window = [e for e in history if e.occurred_at > newest - timedelta(days=30)]
        # The 30 days up to the newest stored event (months ago), not up to now.
        assert model.event_count == len(window) and model.row_count >= 1000
    finally:
        server.stop()
