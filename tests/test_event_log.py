"""The front end of the event log (issue #22) against a real nats-server:
backpressure when the stream is full, and an unreachable NATS; replicas on
a three-node JetStream cluster, and refused when the servers are too few."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from support.eventlog import NatsCluster, NatsServer, WorkerProcess, require_nats
from support.events import event, stored_events, unique
from support.server import ServerProcess

from uba.v1 import service_pb2

MAX_MSGS = 20


@pytest.fixture
def nats_server(tmp_path):
    require_nats()
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


def retry_hints(err: grpc.RpcError) -> list[float]:
    """The delays of the google.rpc.RetryInfo details of a failed call."""
    status = rpc_status.from_call(err)
    hints = []
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            hint = error_details_pb2.RetryInfo()
            detail.Unpack(hint)
            hints.append(hint.retry_delay.ToTimedelta().total_seconds())
    return hints


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
        assert retry_hints(info.value) and retry_hints(info.value)[0] > 0
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
        assert retry_hints(info.value), "UNAVAILABLE says when to retry"
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


def uba(*args: str) -> subprocess.CompletedProcess:
    """`uba ARGS` that is expected to exit at once."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("UBA_")}
    return subprocess.run(
        [sys.executable, "-m", "uba", *args], env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(("command", "replicas"), [("serve", "6"), ("worker", "0")])
def test_replicas_outside_one_to_five_are_refused_naming_the_flag(
    command, replicas, nats_server, tmp_path, make_database_url
):
    done = uba(
        command,
        "--data-dir",
        str(tmp_path / "data"),
        "--database-url",
        make_database_url("postgresql"),
        "--event-log",
        nats_server.url,
        "--event-log-replicas",
        replicas,
    )
    assert done.returncode != 0
    assert f"--event-log-replicas must be 1 to 5 (JetStream's limit), got {replicas}" in (
        done.stdout + done.stderr
    )


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_more_replicas_than_servers_is_refused_clearly(
    command, nats_server, tmp_path, make_database_url
):
    done = uba(
        command,
        "--data-dir",
        str(tmp_path / "data"),
        "--database-url",
        make_database_url("postgresql"),
        "--event-log",
        nats_server.url,
        "--event-log-replicas",
        "3",
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "--event-log-replicas 3: the NATS servers refused 3 replicas" in output
    assert "a JetStream cluster of at least 3 servers" in output


def test_three_replicas_on_a_cluster_of_three(tmp_path, make_database_url):
    """The stream, the lease bucket and every consumer are on all three
    servers, and an event goes through the log into storage."""
    require_nats()
    cluster = NatsCluster(tmp_path / "nats").start()
    database_url = make_database_url("postgresql")
    log_args = ["--event-log", cluster.url, "--event-log-replicas", "3"]
    front = worker = None
    try:
        front = ServerProcess(
            tmp_path / "front", database_url, extra_args=[*log_args, "--event-log-partitions", "4"]
        ).start()
        worker = WorkerProcess(
            tmp_path / "worker", database_url, cluster.url, "--event-log-replicas", "3"
        ).start()
        user = unique("r3")
        assert record(front.stub, user).event_id
        deadline = time.monotonic() + 30
        while not stored_events(front.stub, user):
            assert time.monotonic() < deadline, "the event never reached storage"
            time.sleep(0.2)

        page = "jsz?accounts=true&streams=true&consumers=true&config=true"
        streams = {
            detail["name"]: detail
            for account in cluster.nodes[0].monitor(page)["account_details"]
            for detail in account.get("stream_detail") or ()
        }
        for name in ("UBA_EVENTS", "KV_UBA_EVENTLOG_LEASES"):
            assert streams[name]["config"]["num_replicas"] == 3, name
            assert len(streams[name]["cluster"]["replicas"]) == 2, name  # besides the leader
        consumers = streams["UBA_EVENTS"].get("consumer_detail") or []
        assert sorted(c["name"] for c in consumers) == [f"uba-p{p}" for p in range(4)]
        assert all(c["config"]["num_replicas"] == 3 for c in consumers)
    finally:
        if worker is not None:
            worker.stop()
        if front is not None:
            front.stop()
        cluster.stop()


def test_backfill_is_refused_through_the_log_and_touches_nothing(
    nats_server, tmp_path, make_database_url
):
    """The workers own the baselines, windows and priors (docs/scaling.md,
    "Backfill and imports"): a front end refuses to replay history itself,
    saying why and what to do instead, and leaves what the workers learnt
    as it was."""
    from support.postgres import query
    from support.waiting import wait_for

    database_url = make_database_url("postgresql")
    front = ServerProcess(
        tmp_path / "front", database_url, extra_args=["--event-log", nats_server.url]
    ).start(timeout=60)
    worker = WorkerProcess(tmp_path / "w", database_url, nats_server.url)
    try:
        worker.start(timeout=90)
        user = unique("backfill")
        for _ in range(3):
            record(front.stub, user)
        wait_for(lambda: len(stored_events(front.stub, user)) == 3, 60, "the events stored")
        baselines = query(database_url, "SELECT user_id, version FROM baselines")
        assert baselines
        since = service_pb2.BackfillRequest()
        since.start_time.FromSeconds(int(time.time()) - 86400)
        with pytest.raises(grpc.RpcError) as info:
            front.stub.Backfill(since, timeout=30)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "not available with --event-log" in info.value.details()
        assert "uba ingest" in info.value.details()
        done = uba(
            "backfill",
            "--since",
            "2000-01-01T00:00:00Z",
            "--server",
            front.address,
            "--api-key",
            front.api_key,
        )
        assert done.returncode != 0 and "not available with --event-log" in done.stderr, done
        assert query(database_url, "SELECT user_id, version FROM baselines") == baselines
        names = {r[0] for r in query(database_url, "SELECT name FROM state")}
        assert not names & {"priors", "detector_windows"}, names
    finally:
        worker.kill()
        front.stop()
