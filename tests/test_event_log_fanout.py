"""Alert and incident changes fanned out through NATS (issue #22,
docs/scaling.md): two front ends, one worker, a real nats-server and
PostgreSQL. A StreamAlerts subscriber of front end A gets the alerts the
worker raised from events sent through front end B, and B's workflow
changes, while both front ends poll PostgreSQL only once an hour: in seq
order, each once. A subscriber that was away resumes from storage by
after_seq and gets what it missed. GetCapabilities, the metrics and `uba
capabilities` show the workers' lag."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from support.eventlog import NatsServer, WorkerProcess, require_nats
from support.events import FAILURE, event, stored_events, unique
from support.server import ServerProcess
from support.tcp_proxy import TcpProxy

from uba.v1 import alerts_pb2, service_pb2

# --alert-poll-interval of both front ends: nothing here may come from polling.
POLL_SECONDS = "3600"
# Generous for a busy 2-core machine; the fan-out itself takes milliseconds.
DEADLINE = 30.0


@pytest.fixture
def nats_server(tmp_path):
    require_nats()
    server = NatsServer(tmp_path / "nats").start()
    yield server
    server.stop()


def burst(user: str) -> list:
    """Failed logins enough for a failed_login_burst alert."""
    now = datetime.now(UTC)
    return [
        event(user, FAILURE, at=now - timedelta(minutes=30) + timedelta(seconds=3 * i))
        for i in range(11)
    ]


def wait_for(condition, what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.1)


class Subscriber:
    """A StreamAlerts call (alerts and incidents) read on a thread."""

    def __init__(self, server: ServerProcess, after_seq: int = 0):
        self.call = server.stub.StreamAlerts(
            service_pb2.StreamAlertsRequest(after_seq=after_seq, include_incidents=True)
        )
        self.messages: list[service_pb2.StreamAlertsResponse] = []
        self.started = threading.Event()
        self.error: grpc.RpcError | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self.started.wait(DEADLINE), "the stream did not start"

    def _read(self) -> None:
        try:
            for message in self.call:
                self.started.set()
                if message.WhichOneof("kind") in ("alert", "incident"):
                    self.messages.append(message)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                self.error = err
        finally:
            self.started.set()

    def alerts(self) -> list[alerts_pb2.Alert]:
        return [m.alert for m in list(self.messages) if m.HasField("alert")]

    def users(self) -> set[str]:
        return {a.user_id for a in self.alerts()}

    def seqs(self) -> list[int]:
        return [m.seq for m in list(self.messages)]

    def stop(self) -> None:
        self.call.cancel()
        self._thread.join(10)


def stored_alerts(stub, users: set[str]) -> dict[str, alerts_pb2.Alert]:
    page = stub.ListAlerts(service_pb2.ListAlertsRequest(page_size=1000))
    return {a.alert_id: a for a in page.alerts if a.user_id in users}


def assert_in_order_once(seqs: list[int]) -> None:
    assert seqs == sorted(set(seqs)), f"not in seq order or repeated: {seqs}"


def test_alerts_reach_another_front_end_through_nats_and_resume_from_storage(
    nats_server, tmp_path, make_database_url
):
    url = make_database_url("postgresql")
    args = ["--event-log", nats_server.url, "--alert-poll-interval", POLL_SECONDS]
    a = ServerProcess(tmp_path / "a", url, extra_args=args).start()  # migrates, makes the key
    b = worker = None
    try:
        b = ServerProcess(tmp_path / "b", url, extra_args=args, api_key=a.api_key).start()
        worker = WorkerProcess(
            tmp_path / "w", url, nats_server.url, "--metrics-listen", "127.0.0.1:0"
        ).start()
        prefix = unique("fan")
        first = {f"{prefix}-{i}" for i in range(3)}

        live = Subscriber(a)
        began = time.monotonic()
        for user in sorted(first):
            b.stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=burst(user)))
        wait_for(lambda: live.users() >= first, "A's subscriber to get the three alerts")
        took = time.monotonic() - began
        assert live.error is None
        assert_in_order_once(live.seqs())
        stored = stored_alerts(b.stub, first)
        assert {a.alert_id for a in live.alerts()} == set(stored)
        assert took < DEADLINE  # and far below the hour between polls

        # A workflow change committed by front end B reaches A's subscriber too.
        target = next(iter(stored.values()))
        b.stub.AcknowledgeAlert(service_pb2.AcknowledgeAlertRequest(alert_id=target.alert_id))
        wait_for(
            lambda: any(
                x.alert_id == target.alert_id and x.status == alerts_pb2.ALERT_STATUS_ACKNOWLEDGED
                for x in live.alerts()
            ),
            "A's subscriber to see B's acknowledgement",
        )
        assert_in_order_once(live.seqs())
        resume_from = live.seqs()[-1]
        live.stop()

        # Away: more alerts are raised; the subscriber comes back with after_seq.
        missed = {f"{prefix}-later-{i}" for i in range(2)}
        for user in sorted(missed):
            b.stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=burst(user)))
        wait_for(
            lambda: {x.user_id for x in stored_alerts(b.stub, missed).values()} == missed,
            "the missed alerts in storage",
        )
        back = Subscriber(a, after_seq=resume_from)
        wait_for(lambda: back.users() >= missed, "the resumed subscriber to get what it missed")
        back.stop()
        assert back.error is None
        assert_in_order_once(back.seqs())
        assert min(back.seqs()) > resume_from  # nothing it had already
        assert {x.alert_id for x in back.alerts()} == set(stored_alerts(b.stub, missed))
    finally:
        for process in (worker, b, a):
            if process is not None:
                process.kill()


def capabilities(server: ServerProcess) -> service_pb2.GetCapabilitiesResponse:
    return server.stub.GetCapabilities(service_pb2.GetCapabilitiesRequest(), timeout=15)


def metric_samples(server: ServerProcess | WorkerProcess, name: str) -> dict[str, float]:
    """The samples of one metric on a process's /metrics page, by labels."""
    match = next(m for line in server.output if (m := re.search(r"metrics on (\S+)", line)))
    with urllib.request.urlopen(match.group(1), timeout=15) as page:
        text = page.read().decode()
    samples = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line[len(name) :].rpartition(" ")
            samples[labels] = float(value)
    return samples


def cli_capabilities(server: ServerProcess) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UBA_")}
    env.update(UBA_SERVER=server.address, UBA_API_KEY=server.api_key)
    done = subprocess.run(
        [sys.executable, "-m", "uba", "capabilities"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_capabilities_and_metrics_show_the_lag_until_a_worker_drains_it(
    nats_server, tmp_path, make_database_url
):
    url = make_database_url("postgresql")
    front = ServerProcess(
        tmp_path / "front",
        url,
        extra_args=[
            "--event-log",
            nats_server.url,
            "--event-log-partitions",
            "4",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    ).start()
    worker = None
    try:
        status = capabilities(front).event_log
        assert status.partitions == 4 and not status.unavailable_reason
        assert status.lag_events == 0 and status.live_workers == 0
        assert not status.HasField("oldest_lag_age")

        # No worker runs: what the front end acknowledges waits in the log.
        prefix = unique("lag")
        events = [event(f"{prefix}-{i % 6}", event_id=f"{prefix}-{i}") for i in range(30)]
        front.stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=events))
        wait_for(lambda: capabilities(front).event_log.lag_events == 30, "a lag of 30 events")
        status = capabilities(front).event_log
        assert [p.partition for p in status.partition_lags] == [0, 1, 2, 3]
        assert sum(p.lag_events for p in status.partition_lags) == 30
        assert status.oldest_lag_age.ToTimedelta() > timedelta(0)
        assert status.live_workers == 0
        assert sum(metric_samples(front, "uba_event_log_lag_events").values()) == 30
        assert "lag 30 events" in cli_capabilities(front)

        worker = WorkerProcess(
            tmp_path / "w", url, nats_server.url, "--metrics-listen", "127.0.0.1:0"
        ).start()
        wait_for(
            lambda: (lambda s: s.lag_events == 0 and s.live_workers == 1)(
                capabilities(front).event_log
            ),
            "the worker to drain the log",
        )
        status = capabilities(front).event_log
        assert all(p.lag_events == 0 for p in status.partition_lags)
        assert not status.HasField("oldest_lag_age")
        assert len(stored_events(front.stub, f"{prefix}-0")) == 5  # stored, not dropped
        assert sum(metric_samples(front, "uba_event_log_lag_events").values()) == 0
        assert metric_samples(front, "uba_event_log_live_workers") == {"": 1.0}
        # The worker's own page: the groups its writer stored, and the lag.
        assert metric_samples(worker, "uba_ingest_group_events_sum") == {"": 30.0}
        assert sum(metric_samples(worker, "uba_event_log_lag_events").values()) == 0
        assert metric_samples(worker, "uba_event_log_live_workers") == {"": 1.0}
    finally:
        for process in (worker, front):
            if process is not None:
                process.kill()


def test_changes_missed_while_cut_off_from_nats_are_read_from_storage_on_reconnect(
    nats_server, tmp_path, make_database_url
):
    """Front end A reaches NATS through a proxy that is cut while the worker
    raises alerts: those messages never reach A. Once A reconnects it reads
    storage, and its subscriber gets them, in order, once (A polls hourly)."""
    url = make_database_url("postgresql")
    proxy = TcpProxy(f"127.0.0.1:{nats_server.port}")
    a = b = worker = None
    try:
        a = ServerProcess(
            tmp_path / "a",
            url,
            extra_args=["--event-log", f"nats://{proxy.address}", "--alert-poll-interval", "3600"],
        ).start()
        b = ServerProcess(
            tmp_path / "b", url, extra_args=["--event-log", nats_server.url], api_key=a.api_key
        ).start()
        worker = WorkerProcess(
            tmp_path / "w", url, nats_server.url, "--metrics-listen", "127.0.0.1:0"
        ).start()
        prefix = unique("cut")
        live = Subscriber(a)
        b.stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=burst(f"{prefix}-0")))
        wait_for(lambda: f"{prefix}-0" in live.users(), "the first alert through the proxy")

        proxy.cut()
        missed = {f"{prefix}-{i}" for i in (1, 2)}
        for user in sorted(missed):
            b.stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=burst(user)))
        wait_for(
            lambda: {x.user_id for x in stored_alerts(b.stub, missed).values()} == missed,
            "the alerts raised meanwhile in storage",
        )
        time.sleep(1.0)  # their messages are published (and lost to A) by now
        assert not live.users() & missed  # A has no other way to learn of them

        proxy.mend()
        wait_for(lambda: live.users() >= missed, "A to read what it missed once reconnected")
        assert live.error is None
        assert_in_order_once(live.seqs())
        everyone = {f"{prefix}-0"} | missed
        assert {x.alert_id for x in live.alerts()} == set(stored_alerts(b.stub, everyone))
        live.stop()
    finally:
        for process in (worker, b, a):
            if process is not None:
                process.kill()
        proxy.close()
