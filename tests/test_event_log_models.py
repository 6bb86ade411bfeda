"""The Isolation Forest behind the event log (docs/scaling.md): a model
trained through a front end (TrainModel, as `uba train` calls it) is the
one a worker scores with, and a retrained model reaches the worker. Models
live in the shared database; each process loads the newest version on its
reload check. One nats-server, one PostgreSQL, a front end and a worker
with data dirs of their own."""

from __future__ import annotations

import importlib.util
import json
import random
from datetime import timedelta

import pytest
from support.eventlog import NatsServer, WorkerProcess, log_settled, require_nats
from support.scenario import personas, send
from support.server import ServerProcess
from support.waiting import wait_for

from uba.domain.events import ActivityType
from uba.testing.synthetic import day_after_history
from uba.v1 import service_pb2

ML = all(importlib.util.find_spec(m) is not None for m in ("numpy", "scipy", "sklearn"))
pytestmark = pytest.mark.skipif(not ML, reason="enhanced mode needs numpy, scipy and scikit-learn")


# Where each attack comes from: the second differs from the first, which
# the retrained model has seen in its window.
PLACES = (
    dict(country_code="RU", city="Omsk", latitude=54.98, longitude=73.37, source_ip="203.0.113.66"),
    dict(
        country_code="BR",
        city="Manaus",
        latitude=-3.12,
        longitude=-60.02,
        source_ip="198.51.100.77",
    ),
)


def combined_attack(p, rng: random.Random, day_offset: int = 0) -> list:
    """Everything a little off at once: a night login from a new device and
    country, then a burst of heavy API calls."""
    at = p.local(day_after_history() + timedelta(days=day_offset), 4, 40)
    device = f"unknown-tablet-{day_offset}"
    events = [p.event(ActivityType.LOGIN_SUCCESS, at, device_id=device, **PLACES[day_offset % 2])]
    events += [
        p.api_call(
            at + timedelta(seconds=5 * i), rng, device_id=device, bytes_transferred=30_000_000
        )
        for i in range(60)
    ]
    return events


def loaded(worker: WorkerProcess, version: str) -> bool:
    return any(
        f"isolation forest model {version} loaded from the database" in line
        for line in worker.output
    )


def test_a_model_trained_through_a_front_end_is_scored_with_by_a_worker(
    tmp_path, make_database_url
):
    require_nats()
    database_url = make_database_url("postgresql")
    detectors = tmp_path / "detectors.json"
    # Look for a new model every second rather than every five minutes.
    detectors.write_text(json.dumps({"isolation_forest": {"enabled": True, "reload_seconds": 1}}))
    nats = NatsServer(tmp_path / "nats").start()
    processes: list = []
    try:
        args = ["--event-log", nats.url, "--detectors", str(detectors)]
        front = ServerProcess(
            tmp_path / "front",
            database_url,
            extra_args=[*args, "--train-interval", "0"],
            anonymous=True,
        ).start(timeout=90)
        processes.append(front)
        worker = WorkerProcess(
            tmp_path / "worker", database_url, nats.url, "--detectors", str(detectors)
        )
        processes.append(worker)
        worker.start(timeout=90)
        stub = front.stub

        people = personas(12, seed=21)
        rng = random.Random(4)
        send(stub, [e for p in people for e in p.history(rng)])
        wait_for(lambda: log_settled(nats.url, 1), 180, "the worker to store the history")

        # Trained on the front end, which scores nothing itself.
        model = stub.TrainModel(service_pb2.TrainModelRequest())
        assert model.row_count >= 1000
        assert not (tmp_path / "front" / "models").exists()  # in the database, not the data dir

        def flagged(victim, version: str) -> list:
            found = stub.ListAnomalies(
                service_pb2.ListAnomaliesRequest(
                    detector="isolation_forest", user_id=victim.user_id, page_size=100
                )
            ).anomalies
            return [a for a in found if f"model {version}" in a.reason]

        # Generous waits: a busy machine (CI runs other suites beside) slows
        # every step, and none of them is what this test is about. The
        # reload check runs as the worker scores, at most every second:
        # ordinary calls keep coming until it has looked again (a check
        # that fell just before the model was visible is not a failure).
        usual = people[2]
        moment = usual.local(day_after_history() + timedelta(days=1), 10, 0)

        def scoring_until_loaded(version: str):
            def loaded_yet() -> bool:
                nonlocal moment
                moment += timedelta(seconds=30)
                send(stub, [usual.api_call(moment, rng)])
                return loaded(worker, version)

            return loaded_yet

        wait_for(
            scoring_until_loaded(model.version),
            120,
            f"the worker to load {model.version}",
            show=lambda: worker.output[-20:],
        )
        first = people[0]
        send(stub, combined_attack(first, rng))
        wait_for(lambda: log_settled(nats.url, 1), 180, "the worker to score the attack")
        wait_for(lambda: flagged(first, model.version), 120, "the worker's anomalies")

        # Retrained (a later window, the first attack in it): the worker
        # switches to the new version as it scores the next events. (Whether
        # the new model flags the next attack is the model's business: its
        # window holds the first one, so it may find the second usual.)
        newer = stub.TrainModel(service_pb2.TrainModelRequest())
        assert newer.version != model.version
        send(stub, combined_attack(people[1], rng, day_offset=1))
        wait_for(
            scoring_until_loaded(newer.version),
            120,
            f"the worker to load {newer.version}",
            show=lambda: worker.output[-20:],
        )
    finally:
        for p in reversed(processes):
            p.stop()
        nats.stop()
