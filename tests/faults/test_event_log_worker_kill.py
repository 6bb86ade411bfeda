"""Fault: the scale-out mode (issue #22, docs/scaling.md) on a real
nats-server with JetStream, a front end (`uba serve --event-log`) and two
`uba worker` processes on PostgreSQL. Clients retry with the same ids; one
worker is killed with SIGKILL in the middle of ingest. Every acknowledged
event is stored exactly once, the survivor takes the dead worker's
partitions over, and detection still works through the log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from support.eventlog import NatsServer, WorkerProcess, require_nats
from support.events import FAILURE, event
from support.postgres import stored_ids
from support.scale import scaled, scaled_timeout
from support.server import ServerProcess
from support.waiting import wait_for

from uba.v1 import events_pb2, service_pb2

PARTITIONS = 8
USERS = 40
BATCHES = scaled(40)
BATCH = 50
KILL_AFTER = BATCHES // 2
LEASE = 2.0  # seconds: the failover bound is about lease + ack wait
ACK_WAIT = 4.0

pytestmark = scaled_timeout(120)


def batch(n: int, start: datetime) -> list[events_pb2.ActivityEvent]:
    out = []
    for i in range(BATCH):
        k = n * BATCH + i
        out.append(
            event(
                f"el-user-{k % USERS}",
                events_pb2.ACTIVITY_TYPE_API_CALL,
                at=start + timedelta(seconds=k),
                event_id=f"el-{k:06d}",
                source_ip=f"10.1.0.{k % USERS + 1}",
                api_method="GET",
                api_path="/v1/items",
                status_code=200,
            )
        )
    return out


def test_worker_killed_mid_stream_loses_nothing_acknowledged(tmp_path, make_database_url):
    require_nats()
    database_url = make_database_url("postgresql")
    nats = NatsServer(tmp_path / "nats").start()
    front = workers = None
    try:
        # The front end first: it migrates the database and creates the stream.
        front = ServerProcess(
            tmp_path / "front",
            database_url,
            extra_args=["--event-log", nats.url, "--event-log-partitions", str(PARTITIONS)],
        ).start()
        worker_args = ("--worker-lease-seconds", str(LEASE), "--worker-ack-wait", str(ACK_WAIT))
        workers = [
            WorkerProcess(tmp_path / f"w{i}", database_url, nats.url, *worker_args) for i in (1, 2)
        ]
        for w in workers:
            w.start()
        victim, survivor = workers
        wait_for(
            lambda: (
                victim.owned()
                and survivor.owned()
                and victim.owned() | survivor.owned() == set(range(PARTITIONS))
            ),
            20,
            "the two workers to share the partitions",
        )
        assert not victim.owned() & survivor.owned()

        stub = front.stub
        acknowledged: set[str] = set()
        duplicates_seen = 0
        start = datetime.now(UTC) - timedelta(days=1)
        for n in range(BATCHES):
            events = batch(n, start)
            reply = stub.RecordActivities(
                service_pb2.RecordActivitiesRequest(events=events), timeout=30
            )
            assert all(r.status == service_pb2.RECORD_STATUS_ACCEPTED for r in reply.results)
            acknowledged.update(r.event_id for r in reply.results)
            if n % 5 == 0:  # a client that did not see the answer retries
                again = stub.RecordActivities(
                    service_pb2.RecordActivitiesRequest(events=events), timeout=30
                )
                assert all(
                    r.status == service_pb2.RECORD_STATUS_DUPLICATE for r in again.results
                ), "JetStream's duplicate window answers a retry as DUPLICATE"
                duplicates_seen += len(again.results)
            if n == KILL_AFTER:
                victim.kill()  # SIGKILL: no lease given back, fetched messages unacknowledged

        # A burst of failed logins of one user, through the log, after the kill.
        now = datetime.now(UTC)
        burst_user = "el-burst-user"
        stub.RecordActivities(
            service_pb2.RecordActivitiesRequest(
                events=[
                    event(
                        burst_user,
                        FAILURE,
                        at=now - timedelta(minutes=5) + timedelta(seconds=3 * i),
                        event_id=f"el-burst-{i}",
                    )
                    for i in range(12)
                ]
            ),
            timeout=30,
        )

        wait_for(
            lambda: survivor.owned() == set(range(PARTITIONS)),
            LEASE * 4 + 10,
            "the survivor to take every partition over",
        )
        expected = len(acknowledged)
        wait_for(
            lambda: len(set(stored_ids(database_url, "el-0"))) >= expected,
            LEASE + ACK_WAIT + 20,
            f"{expected} acknowledged events in PostgreSQL",
        )
        ids = stored_ids(database_url, "el-0")
        assert len(ids) == len(set(ids)) == expected  # each once
        assert set(ids) == acknowledged  # nothing acknowledged lost, nothing else
        assert duplicates_seen > 0

        def burst_alerted() -> bool:
            page = stub.ListAlerts(service_pb2.ListAlertsRequest(user_id=burst_user))
            return any(a.detector == "failed_login_burst" for a in page.alerts)

        wait_for(burst_alerted, 20, "the failed-login burst's alert")
        assert survivor.proc is not None and survivor.proc.poll() is None
    finally:
        for w in workers or ():
            w.kill()
        if front is not None:
            front.kill()
        nats.stop()
