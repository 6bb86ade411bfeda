"""Fault: many concurrent writers on the embedded SQLite default, from
several server processes on one database file. BEGIN IMMEDIATE and the busy
timeout serialise them: no "database is locked" reaches a client, and
every acknowledged event is stored once."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import grpc
from support.events import stored_events
from support.scale import scaled, scaled_timeout
from support.server import ServerProcess

from uba.v1 import events_pb2, service_pb2

PROCESSES = 3
WRITERS = 12
CALLS = scaled(40)

pytestmark = scaled_timeout(300)


def test_many_writers_on_one_sqlite_file(tmp_path):
    first = ServerProcess(tmp_path).start()
    key = getattr(first, "api_key", "") or None
    servers = [first] + [
        ServerProcess(tmp_path, api_key=key) if key else ServerProcess(tmp_path)
        for _ in range(PROCESSES - 1)
    ]
    for server in servers[1:]:
        server.start()
    start = datetime.now(UTC) - timedelta(hours=1, seconds=CALLS * 5)
    try:

        def write(w: int) -> tuple[list[str], list[str]]:
            stub = servers[w % PROCESSES].stub
            acked, failures = [], []
            for c in range(CALLS):
                events = [
                    events_pb2.ActivityEvent(
                        event_id=f"w{w}-c{c}-{i}",
                        user_id=f"writer-{w % 4}",
                        type=events_pb2.ACTIVITY_TYPE_API_CALL,
                        api_method="GET",
                        api_path="/v1/x",
                    )
                    for i in range(5)
                ]
                for i, m in enumerate(events):
                    m.occurred_at.FromDatetime(start + timedelta(seconds=c * 5 + i))
                try:
                    reply = stub.RecordActivities(
                        service_pb2.RecordActivitiesRequest(events=events), timeout=30
                    )
                    acked.extend(
                        r.event_id
                        for r in reply.results
                        if r.status == service_pb2.RECORD_STATUS_ACCEPTED
                    )
                except grpc.RpcError as err:
                    failures.append(f"{err.code().name}: {err.details()}")
            return acked, failures

        with ThreadPoolExecutor(WRITERS) as pool:
            results = list(pool.map(write, range(WRITERS)))
        failures = [f for _, fs in results for f in fs]
        assert not failures, failures[:5]
        acked = [i for a, _ in results for i in a]
        assert len(acked) == WRITERS * CALLS * 5
        stored = sum(len(stored_events(first.stub, f"writer-{u}")) for u in range(4))
        assert stored == len(acked)
        # Three processes learned into the same baselines without losing an update.
        learned = sum(
            first.stub.GetUserBaseline(
                service_pb2.GetUserBaselineRequest(user_id=f"writer-{u}")
            ).baseline.observation_count
            for u in range(4)
        )
        assert learned == stored
    finally:
        for server in servers:
            server.stop()
