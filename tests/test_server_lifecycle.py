"""The server as an operator sees it: health, reflection, configuration,
graceful shutdown, and durability of acknowledged events across restarts."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from support.events import API_CALL, event, unique
from support.server import ServerProcess

from uba.v1 import service_pb2

SERVICE = "uba.v1.BehaviorAnalyticsService"


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh(request, tmp_path, make_database_url):
    """(data dir, database url) of an empty store, for servers a test starts itself."""
    return tmp_path, make_database_url(request.param)


def test_health_and_reflection(uba_server):
    health = health_pb2_grpc.HealthStub(uba_server.channel)
    for name in ("", SERVICE):
        assert (
            health.Check(health_pb2.HealthCheckRequest(service=name)).status
            == health_pb2.HealthCheckResponse.SERVING
        )
    reflect = reflection_pb2_grpc.ServerReflectionStub(uba_server.channel)
    reply = next(
        reflect.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")])
        )
    )
    names = {s.name for s in reply.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health"} <= names


def test_environment_configures_the_server(tmp_path):
    server = ServerProcess(tmp_path / "ignored", env={"UBA_DATA_DIR": str(tmp_path / "from-env")})
    # The flag wins over the environment; here only the environment names the data dir.
    server.extra_args = []
    server.data_dir = tmp_path / "ignored"
    server.start()
    try:
        server.stub.RecordActivity(service_pb2.RecordActivityRequest(event=event(unique())))
    finally:
        assert server.stop() == 0
    # --data-dir was given on the command line, so it wins over UBA_DATA_DIR.
    assert (tmp_path / "ignored" / "uba.db").exists()
    assert not (tmp_path / "from-env").exists()


def test_sigterm_drains_calls_and_keeps_every_acknowledged_event(fresh):
    data_dir, url = fresh
    server = ServerProcess(data_dir, url).start()
    user = unique("drain")
    acknowledged: list[str] = []
    refused: list[grpc.StatusCode] = []
    lock = threading.Lock()
    first_ack = threading.Event()

    def send(i: int) -> None:
        batch = [event(user, API_CALL, event_id=f"{user}-{i}-{j}") for j in range(200)]
        try:
            reply = server.stub.RecordActivities(
                service_pb2.RecordActivitiesRequest(events=batch), timeout=20
            )
        except grpc.RpcError as err:
            with lock:
                refused.append(err.code())
            return
        with lock:
            acknowledged.extend(
                r.event_id for r in reply.results if r.status == service_pb2.RECORD_STATUS_ACCEPTED
            )
        first_ack.set()

    health = health_pb2_grpc.HealthStub(server.channel)
    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(send, i) for i in range(40)]
        assert first_ack.wait(20)
        server.proc.send_signal(15)
        # Health turns NOT_SERVING (or the port closes) promptly.
        deadline = time.monotonic() + 5
        status = None
        while time.monotonic() < deadline:
            try:
                status = health.Check(
                    health_pb2.HealthCheckRequest(service=SERVICE), timeout=1
                ).status
            except grpc.RpcError:
                status = "closed"
            if status != health_pb2.HealthCheckResponse.SERVING:
                break
            time.sleep(0.05)
        assert status != health_pb2.HealthCheckResponse.SERVING
        for f in futures:
            f.result()
    assert server.proc.wait(30) == 0
    assert set(refused) <= {grpc.StatusCode.UNAVAILABLE}, refused

    # Every acknowledged event is there after a restart on the same store.
    again = ServerProcess(data_dir, url).start()
    try:
        ids, token = set(), ""
        while True:
            page = again.stub.ListLogs(
                service_pb2.ListLogsRequest(user_id=user, page_size=1000, page_token=token)
            )
            ids.update(e.event_id for e in page.events)
            token = page.next_page_token
            if not token:
                break
        assert set(acknowledged) <= ids
        assert len(acknowledged) > 0
    finally:
        assert again.stop() == 0
