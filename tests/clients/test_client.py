"""The Python client: retries that keep event ids, batching, following
alerts across reconnects and server restarts, export."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from support.server import ServerProcess

from uba.v1 import alerts_pb2, service_pb2, service_pb2_grpc
from uba_client import BatchRecorder, RetryPolicy, UbaClient, UbaError, event

UTC = UTC
FAST = RetryPolicy(max_attempts=10, initial_backoff=0.05, max_backoff=0.5)


def _status(code: int, message: str, *details) -> grpc.Status:
    status = status_pb2.Status(code=code, message=message)
    for detail in details:
        packed = any_pb2.Any()
        packed.Pack(detail)
        status.details.append(packed)
    return rpc_status.to_status(status)


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def stored_ids(client: UbaClient, user_id: str) -> list[str]:
    return [e.event_id for e in client.iter_logs(user_id=user_id)]


# -- retries against scripted servers -------------------------------------------


class Flaky(service_pb2_grpc.BehaviorAnalyticsServiceServicer):
    """Refuses the first `failures` ingest calls, then stores like the real
    server (insert-or-ignore by event_id); remembers what each attempt sent."""

    def __init__(self, failures: int, how: str):
        self.failures, self.how = failures, how
        self.attempts: list[list[str]] = []
        self.stored: set[str] = set()

    def _refuse(self, ids: list[str], context) -> bool:
        self.attempts.append(ids)
        if len(self.attempts) > self.failures:
            return False
        if self.how == "exhausted":
            info = error_details_pb2.RetryInfo()
            info.retry_delay.FromMilliseconds(400)
            context.abort_with_status(_status(code_pb2.RESOURCE_EXHAUSTED, "slow down", info))
        elif self.how == "slow":
            # Store it, but answer after the caller's deadline: the reply is lost.
            self.stored.update(ids)
            time.sleep(1.0)
        elif self.how == "invalid":
            bad = error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field="event.user_id", description="required"
                    )
                ]
            )
            context.abort_with_status(
                _status(code_pb2.INVALID_ARGUMENT, "event.user_id: required", bad)
            )
        return True

    def RecordActivity(self, request, context):
        refused = self._refuse([request.event.event_id], context)
        duplicate = request.event.event_id in self.stored and not refused
        self.stored.add(request.event.event_id)
        return service_pb2.RecordActivityResponse(
            event_id=request.event.event_id, duplicate=duplicate
        )

    def RecordActivities(self, request, context):
        ids = [e.event_id for e in request.events]
        self._refuse(ids, context)
        reply = service_pb2.RecordActivitiesResponse()
        for i, event_id in enumerate(ids):
            status = (
                service_pb2.RECORD_STATUS_DUPLICATE
                if event_id in self.stored
                else service_pb2.RECORD_STATUS_ACCEPTED
            )
            self.stored.add(event_id)
            reply.results.add(index=i, event_id=event_id, status=status)
        return reply


def test_resource_exhausted_waits_the_servers_retry_delay_and_resends_the_same_ids(fake_server):
    flaky = Flaky(failures=2, how="exhausted")
    client = UbaClient(fake_server(flaky), ingest_retry=FAST)
    started = time.monotonic()
    result = client.record_batch([event("alice", "login_success"), event("bob", "logout")])
    assert time.monotonic() - started >= 0.8  # 2 x the 400 ms RetryInfo, more than FAST's backoff
    assert len(flaky.attempts) == 3
    assert flaky.attempts[0] == flaky.attempts[1] == flaky.attempts[2]
    assert all(flaky.attempts[0]) and len(set(flaky.attempts[0])) == 2
    assert [r.status for r in result.results] == ["accepted", "accepted"]


def test_lost_reply_is_retried_with_the_same_id_and_deduplicated(fake_server):
    flaky = Flaky(failures=1, how="slow")
    client = UbaClient(fake_server(flaky), timeout=0.3, ingest_retry=FAST)
    result = client.record(user_id="alice", type="login_success")
    assert len(flaky.attempts) == 2 and flaky.attempts[0] == flaky.attempts[1]
    assert result.status == "duplicate" and result.event_id == flaky.attempts[0][0]


def test_refusals_are_not_retried_and_name_the_field(fake_server):
    flaky = Flaky(failures=5, how="invalid")
    client = UbaClient(fake_server(flaky), ingest_retry=FAST)
    with pytest.raises(UbaError) as caught:
        client.record(user_id="", type="login_success")
    assert len(flaky.attempts) == 1
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.violations == (("event.user_id", "required"),)


def test_unreachable_server_is_one_readable_error(free_address):
    client = UbaClient(free_address, retry=RetryPolicy(max_attempts=2, initial_backoff=0.01))
    with pytest.raises(UbaError) as caught:
        client.capabilities()
    assert str(caught.value) == f"cannot reach {free_address}: connection refused"


def test_api_key_goes_as_bearer_metadata(fake_server):
    seen = []

    class Echo(service_pb2_grpc.BehaviorAnalyticsServiceServicer):
        def GetCapabilities(self, request, context):
            seen.append(dict(context.invocation_metadata()).get("authorization"))
            return service_pb2.GetCapabilitiesResponse(version="x")

    UbaClient(fake_server(Echo()), api_key="s3cret").capabilities()
    assert seen == ["Bearer s3cret"]


# -- follow_alerts against a scripted stream --------------------------------------


def _alert(seq: int) -> service_pb2.StreamAlertsResponse:
    return service_pb2.StreamAlertsResponse(
        seq=seq, alert=alerts_pb2.Alert(alert_id=f"a{seq}", seq=seq)
    )


def _heartbeat(seq: int) -> service_pb2.StreamAlertsResponse:
    reply = service_pb2.StreamAlertsResponse(seq=seq)
    reply.heartbeat.sent_at.GetCurrentTime()
    return reply


class ScriptedStream(service_pb2_grpc.BehaviorAnalyticsServiceServicer):
    """Each StreamAlerts call plays the next script: messages, then an
    error code, 'end' (a clean end) or 'hang' (silence until cancelled)."""

    def __init__(self, scripts, head: int = 0):
        self.scripts = list(scripts)
        self.head = head
        self.after_seqs: list[int] = []

    def ListAlerts(self, request, context):
        reply = service_pb2.ListAlertsResponse()
        if self.head:
            reply.alerts.add(alert_id="head", seq=self.head)
        return reply

    def StreamAlerts(self, request, context):
        self.after_seqs.append(request.after_seq)
        messages, ending = self.scripts.pop(0) if self.scripts else ([], "hang")
        yield from messages
        if ending == "hang":
            while context.is_active():
                time.sleep(0.02)
        elif ending != "end":
            context.abort(ending, "scripted failure")


def test_follower_resumes_from_the_last_seq_and_drops_replayed_changes(fake_server):
    stream = ScriptedStream(
        [
            ([_alert(6), _alert(7), _heartbeat(9)], grpc.StatusCode.UNAVAILABLE),
            ([_alert(9), _alert(10)], "end"),  # 9 again: a generous replay
            ([_alert(11)], grpc.StatusCode.INTERNAL),
            ([_alert(12)], "hang"),
        ]
    )
    client = UbaClient(fake_server(stream))
    follower = client.follow_alerts(after_seq=5, retry=FAST)
    seen = []
    for alert in follower:
        seen.append(alert.seq)
        if len(seen) == 5:
            follower.close()
    assert seen == [6, 7, 10, 11, 12]
    assert stream.after_seqs == [5, 9, 10, 11]
    assert follower.seq == 12 and follower.reconnects == 3


def test_follower_from_now_pins_the_head_so_a_early_reconnect_loses_nothing(fake_server):
    stream = ScriptedStream([([], grpc.StatusCode.UNAVAILABLE), ([_alert(43)], "hang")], head=42)
    follower = UbaClient(fake_server(stream)).follow_alerts(retry=FAST)
    assert next(iter(follower)).seq == 43
    follower.close()
    assert stream.after_seqs == [42, 42]


def test_follower_reconnects_a_silent_stream_and_gives_up_on_refusals(fake_server):
    stream = ScriptedStream([([], "hang"), ([_alert(3)], "hang")])
    follower = UbaClient(fake_server(stream)).follow_alerts(
        after_seq=2, idle_timeout=0.5, retry=FAST
    )
    assert next(iter(follower)).seq == 3
    follower.close()
    assert follower.reconnects == 1

    refusing = ScriptedStream([([], grpc.StatusCode.PERMISSION_DENIED)])
    with pytest.raises(UbaError) as caught:
        next(iter(UbaClient(fake_server(refusing)).follow_alerts(after_seq=1, retry=FAST)))
    assert caught.value.code == grpc.StatusCode.PERMISSION_DENIED


# -- against the real server -------------------------------------------------------


def _failures(user: str, ip: str, n: int = 12) -> list:
    """A brute-force burst: enough failed logins to raise an alert."""
    start = datetime.now(UTC) - timedelta(minutes=2)
    return [
        event(user, "login_failure", start + timedelta(seconds=5 * i), source_ip=ip)
        for i in range(n)
    ]


def test_record_waits_for_a_server_that_is_not_up_yet(tmp_path, free_address):
    server = ServerProcess(
        tmp_path, listen=free_address, anonymous=True
    )  # the client exists before any key
    starter = threading.Timer(1.0, server.start)
    starter.start()
    sleeps: list[float] = []
    try:
        with UbaClient(free_address, sleep=lambda s: (sleeps.append(s), time.sleep(s))) as client:
            result = client.record(user_id="early-bird", type="login_success")
            assert result.status == "accepted" and sleeps, "expected at least one retry"
            assert stored_ids(client, "early-bird") == [result.event_id]
    finally:
        starter.join()
        server.stop()


def test_batches_survive_a_killed_and_restarted_server_without_duplicates(tmp_path, free_address):
    server = ServerProcess(tmp_path, listen=free_address).start()
    retried = []
    results: dict[str, str] = {}
    lock = threading.Lock()

    def on_result(result, _event) -> None:
        with lock:
            results[result.event_id] = result.status

    client = UbaClient(
        free_address, api_key=server.api_key, sleep=lambda s: (retried.append(s), time.sleep(s))
    )
    restarter = None
    try:
        added = []
        with BatchRecorder(
            client, max_batch=200, flush_interval=0.2, on_result=on_result
        ) as recorder:
            start = datetime.now(UTC) - timedelta(hours=1)
            for i in range(5000):
                added.append(
                    recorder.add(
                        event(
                            "restart-user",
                            "api_call",
                            start + timedelta(milliseconds=i),
                            api_method="GET",
                            api_path="/v1/x",
                            status_code=200,
                        )
                    )
                )
                if i == 1500:
                    server.kill()  # SIGKILL: no drain, replies may be lost after commit
                    server = ServerProcess(tmp_path, listen=free_address)
                    restarter = threading.Timer(0.5, server.start)
                    restarter.start()
        assert recorder.stats.failed == 0 and retried
        assert len(results) == 5000 and set(results.values()) <= {"accepted", "duplicate"}
        ids = stored_ids(client, "restart-user")
        assert len(ids) == len(set(ids)) == 5000
        assert set(ids) == set(added)
    finally:
        client.close()
        if restarter is not None:
            restarter.join()
        server.stop()


def test_batch_recorder_from_many_threads_and_by_time(stub, uba_server):
    statuses: list[str] = []
    lock = threading.Lock()

    def on_result(result, _event) -> None:
        with lock:
            statuses.append(result.status)

    with UbaClient(uba_server.address, api_key=uba_server.api_key) as client:
        with BatchRecorder(
            client, max_batch=300, flush_interval=0.3, on_result=on_result
        ) as recorder:

            def produce(n: int) -> None:
                for i in range(1000):
                    recorder.add(
                        event(f"thread-{n}", "logout", datetime.now(UTC) - timedelta(seconds=i))
                    )

            threads = [threading.Thread(target=produce, args=(n,)) for n in range(6)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            recorder.add(
                event("thread-late", "login_success", source_ip="999.1.1.1")
            )  # invalid address
            # Flushed by the timer, without flush() or close().
            wait_for(lambda: len(statuses) == 6001, 10, "the timed flush")
        assert statuses.count("accepted") == 6000 and statuses.count("invalid") == 1
        assert recorder.stats.accepted == 6000 and recorder.stats.invalid == 1
        assert len(stored_ids(client, "thread-3")) == 1000


def test_export_writes_the_file_and_leaves_none_on_failure(uba_server, tmp_path):
    with UbaClient(uba_server.address, api_key=uba_server.api_key) as client:
        client.record_batch([event("exporter", "login_success"), event("exporter", "logout")])
        target = tmp_path / "out.csv"
        written = client.export(target, "csv", user_id="exporter")
        text = target.read_bytes().decode()
        assert written == len(text.encode()) and text.count("exporter") == 2
        assert text.startswith("event_id,user_id,type,occurred_at")
        with pytest.raises(UbaError):
            client.export(tmp_path / "bad.xml", "xml")
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_follow_alerts_across_a_server_restart(tmp_path, free_address):
    args = ["--heartbeat-interval", "0.5"]
    server = ServerProcess(tmp_path, listen=free_address, extra_args=args).start()
    client = UbaClient(free_address, api_key=server.api_key)
    seen: list = []
    errors: list = []
    follower = None
    try:
        # after_seq=0 means "live only", so replay needs an alert before the
        # one to replay: follow from the first warm-up alert's seq.
        client.record_batch(_failures("warmup-0", "203.0.113.9"))
        client.record_batch(_failures("warmup", "203.0.113.10"))
        wait_for(lambda: client.list_alerts(user_id="warmup").alerts, 10, "the warm-up alert")
        first = max(a.seq for a in client.list_alerts(user_id="warmup-0").alerts)
        # Enough retries (about 20 s) to outlast a restart on a loaded machine.
        follower = client.follow_alerts(
            after_seq=first,
            idle_timeout=5,
            retry=RetryPolicy(max_attempts=45, initial_backoff=0.05, max_backoff=0.5),
        )

        def collect() -> None:
            try:
                for alert in follower:
                    seen.append(alert)
            except Exception as exc:  # noqa: BLE001 - reported by the assertion below
                errors.append(exc)

        thread = threading.Thread(target=collect, daemon=True)
        thread.start()
        wait_for(
            lambda: any(a.user_id == "warmup" for a in seen) or errors,
            10,
            f"the replayed alert (after seq {first}; seen {seen}; errors {errors}; "
            f"log:\n{server.log()})",
        )
        assert not errors
        client.record_batch(_failures("before-restart", "203.0.113.11"))
        wait_for(lambda: any(a.user_id == "before-restart" for a in seen), 10, "a live alert")

        assert server.stop() == 0
        server = ServerProcess(tmp_path, listen=free_address, extra_args=args).start()
        client.record_batch(_failures("after-restart", "203.0.113.12"))
        wait_for(
            lambda: any(a.user_id == "after-restart" for a in seen),
            30,
            f"an alert after the restart (errors {errors}; log:\n{server.log()})",
        )

        seqs = [a.seq for a in seen]
        assert seqs == sorted(set(seqs)), "a change was repeated or out of order"
        stored = list(client.iter_alerts())
        assert {a.alert_id for a in seen} == {a.alert_id for a in stored if a.user_id != "warmup-0"}
        assert max(seqs) == max(a.seq for a in stored)
        assert follower.reconnects >= 1 and not errors
    finally:
        if follower is not None:
            follower.close()
        client.close()
        server.stop()
