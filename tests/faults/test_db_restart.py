"""Fault: PostgreSQL goes away (immediate shutdown) and comes back, three
times, while clients ingest. Clients retry with the same event ids. Health
says NOT_SERVING while the database is gone; the server recovers on its
own (stale pooled connections are replaced); no acknowledged event is
lost and none is stored twice."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from support.events import stored_events
from support.scale import scaled, scaled_timeout
from support.server import ServerProcess

from uba.v1 import events_pb2
from uba_client import UbaClient
from uba_client.retry import RetryPolicy

OUTAGES = scaled(3)
BATCHES = scaled(80)
BATCH = 100

pytestmark = [
    pytest.mark.skipif(
        shutil.which("pg_ctlcluster") is None or not Path("/etc/postgresql").is_dir(),
        reason="needs the local PostgreSQL cluster tools (pg_ctlcluster) to restart the server",
    ),
    scaled_timeout(300),
]


def cluster(action: str) -> None:
    version = sorted(os.listdir("/etc/postgresql"))[0]
    args = ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action]
    if action == "stop":
        args += ["-m", "immediate"]
    subprocess.run(args, check=True, capture_output=True, timeout=60)


def wait_ready(timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"]).returncode != 0:
        assert time.monotonic() < deadline, "PostgreSQL did not come back"
        time.sleep(0.2)


def test_database_restarts_under_ingest(tmp_path, make_database_url):
    url = make_database_url("postgresql")
    server = ServerProcess(tmp_path, url).start()
    key = getattr(server, "api_key", "") or None
    acknowledged: set[str] = set()
    errors: list[str] = []
    # One event a second, all in the past.
    start = datetime.now(UTC) - timedelta(hours=1, seconds=BATCHES * BATCH)

    def ingest() -> None:
        client = UbaClient(
            server.address,
            api_key=key,
            timeout=5,
            ingest_retry=RetryPolicy(max_attempts=0, max_backoff=0.5),
        )
        try:
            for n in range(BATCHES):
                events = []
                for i in range(BATCH):
                    k = n * BATCH + i
                    m = events_pb2.ActivityEvent(
                        event_id=f"pg-{k:06d}",
                        user_id=f"user-{k % 10}",
                        type=events_pb2.ACTIVITY_TYPE_API_CALL,
                        api_path="/v1/x",
                    )
                    m.occurred_at.FromDatetime(start + timedelta(seconds=k))
                    events.append(m)
                result = client.record_batch(events)
                acknowledged.update(
                    r.event_id for r in result.results if r.status in ("accepted", "duplicate")
                )
                time.sleep(0.03)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))
        finally:
            client.close()

    health = health_pb2_grpc.HealthStub(server.channel)
    sender = threading.Thread(target=ingest)
    sender.start()
    windows, saw_not_serving = [], 0
    try:
        for _ in range(OUTAGES):
            time.sleep(1.0)
            down_at = time.monotonic()
            cluster("stop")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    status = health.Check(
                        health_pb2.HealthCheckRequest(service=""), timeout=1
                    ).status
                except grpc.RpcError:
                    status = None
                if status == health_pb2.HealthCheckResponse.NOT_SERVING:
                    saw_not_serving += 1
                    break
                time.sleep(0.1)
            time.sleep(1.0)
            cluster("start")
            wait_ready()
            windows.append(time.monotonic() - down_at)
        sender.join(scaled(180))
        assert not errors, errors
        assert saw_not_serving == OUTAGES, (
            "health did not report NOT_SERVING while the database was down"
        )
        assert len(acknowledged) == BATCHES * BATCH
        stored = [e.event_id for u in range(10) for e in stored_events(server.stub, f"user-{u}")]
        assert set(stored) == acknowledged and len(stored) == len(set(stored))
        deadline = time.monotonic() + 10
        while (
            health.Check(health_pb2.HealthCheckRequest(service="")).status
            != health_pb2.HealthCheckResponse.SERVING
        ):
            assert time.monotonic() < deadline, "health did not return to SERVING"
            time.sleep(0.2)
        print(
            f"\n{len(acknowledged)} events acknowledged across {OUTAGES} PostgreSQL restarts: "
            f"0 lost, 0 duplicated; outages of {', '.join(f'{w:.1f}' for w in windows)} s"
        )
    finally:
        if subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"]).returncode != 0:
            cluster("start")
            wait_ready()
        server.stop()
