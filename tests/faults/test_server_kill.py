"""Fault: the server is killed with SIGKILL in the middle of ingest, again
and again. Clients retry with the same event ids. Nothing acknowledged is
lost, nothing is stored twice, and what detection keeps (baselines, alert
seq numbers) agrees with the stored events after every restart, because
both are written in one transaction."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from support.events import stored_events
from support.ports import free_port
from support.scale import scaled, scaled_timeout
from support.server import ServerProcess

from uba.v1 import events_pb2, service_pb2
from uba_client import UbaClient
from uba_client.retry import RetryPolicy

USERS = 10
BATCHES = scaled(60)
BATCH = 100
KILLS = scaled(3)

pytestmark = scaled_timeout(300)


def batch(n: int) -> list[events_pb2.ActivityEvent]:
    # One event a second, all in the past.
    start = datetime.now(UTC) - timedelta(days=1, seconds=BATCHES * BATCH)
    out = []
    for i in range(BATCH):
        k = n * BATCH + i
        m = events_pb2.ActivityEvent(
            event_id=f"kill-{k:06d}",
            user_id=f"victim-{k % USERS}",
            type=events_pb2.ACTIVITY_TYPE_LOGIN_FAILURE
            if k % 7 == 0
            else events_pb2.ACTIVITY_TYPE_API_CALL,
            source_ip=f"10.0.0.{k % USERS + 1}",
            api_method="GET",
            api_path="/v1/items",
            status_code=200,
        )
        m.occurred_at.FromDatetime(start + timedelta(seconds=k))
        out.append(m)
    return out


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_mid_ingest_loses_nothing_acknowledged(backend, tmp_path, make_database_url):
    url = make_database_url(backend)
    listen = f"127.0.0.1:{free_port()}"
    server = ServerProcess(tmp_path, url, listen=listen).start()
    acknowledged: set[str] = set()
    errors: list[str] = []
    done = threading.Event()

    key = getattr(server, "api_key", "") or None  # the server's admin key, where keys are checked

    def ingest() -> None:
        # Retries for as long as a restart takes; same event ids every time.
        client = UbaClient(
            listen,
            api_key=key,
            timeout=5,
            ingest_retry=RetryPolicy(max_attempts=0, max_backoff=0.5),
        )
        try:
            for n in range(BATCHES):
                result = client.record_batch(batch(n))
                acknowledged.update(
                    r.event_id for r in result.results if r.status in ("accepted", "duplicate")
                )
                time.sleep(0.01)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))
        finally:
            client.close()
            done.set()

    sender = threading.Thread(target=ingest)
    sender.start()
    kills = 0
    try:
        while kills < KILLS and not done.is_set():
            time.sleep(0.4)
            server.kill()  # SIGKILL: no grace, no goodbye
            kills += 1
            server = ServerProcess(tmp_path, url, listen=listen).start()
        sender.join(scaled(120))
        assert not errors, errors
        assert kills == KILLS, "ingest finished before the kills; make the run longer"
        assert len(acknowledged) == BATCHES * BATCH

        stub = server.stub
        stored: dict[str, int] = {}
        for u in range(USERS):
            for e in stored_events(stub, f"victim-{u}"):
                stored[e.event_id] = stored.get(e.event_id, 0) + 1
        assert set(stored) == acknowledged  # nothing lost, nothing extra
        assert max(stored.values()) == 1  # nothing twice
        for u in range(USERS):
            user = f"victim-{u}"
            baseline = stub.GetUserBaseline(
                service_pb2.GetUserBaselineRequest(user_id=user)
            ).baseline
            # Every stored event learned once, except those a HIGH finding quarantined.
            quarantined = {
                e
                for a in stub.ListAnomalies(
                    service_pb2.ListAnomaliesRequest(user_id=user, page_size=1000)
                ).anomalies
                if a.quarantined
                for e in a.event_ids
            }
            assert baseline.observation_count == sum(
                1 for e in stored if int(e.split("-")[1]) % USERS == u and e not in quarantined
            )
        seqs = [
            a.seq for a in stub.ListAlerts(service_pb2.ListAlertsRequest(page_size=1000)).alerts
        ]
        assert len(seqs) == len(set(seqs))
    finally:
        server.stop()
