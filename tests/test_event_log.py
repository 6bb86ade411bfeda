"""The front end of the event log (issue #22) against a real nats-server:
backpressure when the stream is full, and an unreachable NATS."""

from __future__ import annotations

import time

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from support.eventlog import NatsServer, require_nats
from support.events import event, unique
from support.server import ServerProcess

from uba.v1 import service_pb2

pytestmark = pytest.mark.one_mode

MAX_MSGS = 20


@pytest.fixture
def nats_server(tmp_path):
    require_nats()
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


def record(stub, user: str):
    return stub.RecordActivity(service_pb2.RecordActivityRequest(event=event(user)), timeout=15)


def test_full_stream_answers_resource_exhausted_with_a_retry_hint(
    nats_server, tmp_path, make_database_url
):
    # No worker drains the stream: after MAX_MSGS events it is full.
    front = ServerProcess(
        tmp_path / "front",
        make_database_url("postgresql"),
        extra_args=["--event-log", nats_server.url, "--event-log-max-msgs", str(MAX_MSGS)],
    ).start()
    try:
        user = unique("full")
        for _ in range(MAX_MSGS):
            assert record(front.stub, user).event_id
        with pytest.raises(grpc.RpcError) as info:
            record(front.stub, user)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        status = rpc_status.from_call(info.value)
        hints = []
        for detail in status.details if status else ():
            if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                hint = error_details_pb2.RetryInfo()
                detail.Unpack(hint)
                hints.append(hint.retry_delay.ToTimedelta().total_seconds())
        assert hints and hints[0] > 0
    finally:
        front.stop()


def test_unreachable_nats_answers_unavailable_promptly_and_recovers(
    nats_server, tmp_path, make_database_url
):
    front = ServerProcess(
        tmp_path / "front",
        make_database_url("postgresql"),
        extra_args=["--event-log", nats_server.url],
    ).start()
    try:
        user = unique("down")
        assert record(front.stub, user).event_id
        nats_server.stop()
        time.sleep(0.5)  # the client notices the closed connection
        began = time.monotonic()
        with pytest.raises(grpc.RpcError) as info:
            record(front.stub, user)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert time.monotonic() - began < 2.0
        nats_server.start()  # same port, same store: the stream is still there
        deadline = time.monotonic() + 20
        while True:
            try:
                assert record(front.stub, user).event_id
                break
            except grpc.RpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        front.stop()
