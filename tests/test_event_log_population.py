"""A spray split across two front ends is detected once (issue #22,
docs/scaling.md): two front ends and two workers of the event log on one
nats-server and one PostgreSQL. A credential-stuffing wave, a password
spray from one address and a rule by address get their events through both
front ends, for users whose partitions both workers own, so that neither
worker sees more than half of any of them. Each is detected exactly once,
by the owner of its population partition; a rule per user still runs where
the user's events are. The workers keep their detector windows per
partition, never in the one shared row."""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from support.eventlog import (
    NatsServer,
    WorkerProcess,
    kill_and_show,
    require_nats,
    wait_until_split,
)
from support.events import FAILURE, event
from support.postgres import query
from support.server import ServerProcess
from support.waiting import wait_for

from uba.eventlog.layout import POPULATION_STREAM, partition_of
from uba.v1 import service_pb2

PARTITIONS = 4
LEASE = 5.0
RULES = {
    "threshold_rules": {
        "rules": [
            {"name": "per user", "type": "login_failure", "count": 3, "window_seconds": 600},
            {
                "name": "per address",
                "type": "login_failure",
                "count": 6,
                "window_seconds": 3600,
                "group_by": "source_ip",
            },
        ]
    }
}
SPRAY_IP = "198.51.100.7"


def waiting_in(nats_url: str, stream: str) -> int:
    """Messages of the stream no worker has acknowledged yet (a work queue
    drops a message once acknowledged)."""
    import nats

    async def ask() -> int:
        nc = await nats.connect(nats_url, connect_timeout=5)
        try:
            return (await nc.jetstream().stream_info(stream)).state.messages
        finally:
            await nc.close()

    return asyncio.run(ask())


def users_of(owners: list[set[int]], prefix: str, per_worker: int) -> list[str]:
    """User ids, alternating between the workers' partitions."""
    picked: list[list[str]] = [[] for _ in owners]
    i = 0
    while any(len(p) < per_worker for p in picked):
        user = f"{prefix}-{i}"
        i += 1
        for side, owned in enumerate(owners):
            if partition_of(user, PARTITIONS) in owned and len(picked[side]) < per_worker:
                picked[side].append(user)
                break
    return [u for pair in zip(*picked, strict=True) for u in pair]


def test_a_spray_split_across_two_front_ends_is_detected_once(tmp_path, make_database_url):
    require_nats()
    database_url = make_database_url("postgresql")
    detectors = tmp_path / "detectors.json"
    detectors.write_text(json.dumps(RULES))
    nats = NatsServer(tmp_path / "nats").start()
    processes: list = []
    try:
        args = ["--event-log", nats.url, "--detectors", str(detectors)]
        # The first front end migrates the database and creates the streams.
        first = ServerProcess(
            tmp_path / "front1",
            database_url,
            extra_args=[*args, "--event-log-partitions", str(PARTITIONS)],
            anonymous=True,
        ).start(timeout=90)
        processes.append(first)
        second = ServerProcess(tmp_path / "front2", database_url, extra_args=args, anonymous=True)
        workers = [
            WorkerProcess(
                tmp_path / f"w{i}",
                database_url,
                nats.url,
                "--detectors",
                str(detectors),
                "--worker-lease-seconds",
                str(LEASE),
            )
            for i in (1, 2)
        ]
        processes += [second, *workers]
        # Started together: each imports the analytics libraries for seconds.
        with ThreadPoolExecutor(3) as pool:
            for started in [pool.submit(p.start, timeout=90) for p in (second, *workers)]:
                started.result()

        wait_until_split(workers, PARTITIONS)
        owners = [w.owned() for w in workers]

        now = datetime.now(UTC)
        sent: list = []
        # Failed logins through both front ends, for users of both workers.
        # The wave: 16 accounts, one failure each from addresses of their
        # own, within 5 minutes: a wave from 12 failures on (credential
        # stuffing), 8 per worker.
        wave_start = now - timedelta(hours=3)
        for i, user in enumerate(users_of(owners, "wave", 8)):
            sent.append(
                event(
                    user,
                    FAILURE,
                    at=wave_start + timedelta(seconds=20 * i),
                    source_ip=f"203.0.113.{i + 1}",
                )
            )
        # The spray: one address against 10 accounts within 100 seconds:
        # spraying at 10 (and the slow tier at 5), the rule by address at 6;
        # 5 accounts per worker.
        spray_start = now - timedelta(hours=1)
        for i, user in enumerate(users_of(owners, "spray", 5)):
            sent.append(
                event(user, FAILURE, at=spray_start + timedelta(seconds=10 * i), source_ip=SPRAY_IP)
            )
        # A rule per user, on its user's partition.
        for i in range(3):
            sent.append(
                event(
                    "rule-user",
                    FAILURE,
                    at=now - timedelta(minutes=10 - i),
                    source_ip="192.0.2.50",
                )
            )
        for i, message in enumerate(sent):
            message.event_id = f"pop-{i:03d}"
            front = (first, second)[(i // 2) % 2]
            front.stub.RecordActivity(service_pb2.RecordActivityRequest(event=message), timeout=30)

        wait_for(
            lambda: query(database_url, "SELECT count(*) FROM events")[0][0] == len(sent),
            60,
            f"the {len(sent)} events in PostgreSQL",
        )
        wait_for(
            lambda: waiting_in(nats.url, POPULATION_STREAM) == 0,
            60,
            "the population partitions to acknowledge every copy",
        )
        anomalies = query(
            database_url,
            "SELECT detector, user_id, severity, reason FROM anomalies "
            "WHERE detector IN ('credential_stuffing', 'password_spraying', 'threshold_rules') "
            "ORDER BY occurred_at_us",
        )
        found = "\n".join(map(str, anomalies))
        stuffing = [a for a in anomalies if a[0] == "credential_stuffing"]
        assert len(stuffing) == 1, found
        assert stuffing[0][3].startswith("12 failed logins across 12 accounts"), found
        spraying = [a for a in anomalies if a[0] == "password_spraying"]
        assert all(SPRAY_IP in a[3] for a in spraying), found
        fast = [a for a in spraying if "slow spraying" not in a[3]]
        slow = [a for a in spraying if "slow spraying" in a[3]]
        assert len(fast) == 1 and "10 distinct users" in fast[0][3], found
        assert len(slow) == 1 and "5 distinct users" in slow[0][3], found
        rules = [a for a in anomalies if a[0] == "threshold_rules"]
        by_address = [a for a in rules if "'per address'" in a[3]]
        assert len(by_address) == 1 and "6 login_failure events" in by_address[0][3], found
        per_user = [a for a in rules if "'per user'" in a[3]]
        assert [a[1] for a in per_user] == ["rule-user"], found
        alerts = query(
            database_url,
            "SELECT count(*) FROM alerts WHERE detector = 'credential_stuffing'",
        )
        assert alerts == [(1,)], "one alert for the wave"

        # A clean stop saves each partition's windows in a row of its own;
        # nobody writes the one row of an embedded server.
        with ThreadPoolExecutor(2) as pool:
            assert list(pool.map(lambda w: w.stop(timeout=60), workers)) == [0, 0]
        names = {r[0] for r in query(database_url, "SELECT name FROM state")}
        assert {f"detector_windows.p{p}" for p in range(PARTITIONS)} <= names, names
        assert any(n.startswith("detector_windows.population.") for n in names), names
        assert "detector_windows" not in names, names
    finally:
        kill_and_show(processes)
        nats.stop()
