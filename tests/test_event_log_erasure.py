"""Erasure through the event log (docs/scaling.md, "Erasure"): ForgetUser on
a front end reaches the workers, in order with the user's events, on a real
nats-server and PostgreSQL.

- The owner of the user's partition erases what is stored and what it
  holds of the user (cached baseline, detector windows, saved partition
  row), every population partition forgets the user too, and the other
  worker drops the user's entries from its share of the peer aggregates.
  ForgetUser answers once all of that is applied: what was acknowledged
  before the call is gone, what is sent after the answer stays.
- Events published before the erasure and delivered again after it (a
  worker died holding them unacknowledged) do not bring the user back.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from support.eventlog import (
    NatsServer,
    WorkerProcess,
    kill_and_show,
    log_settled,
    require_nats,
    wait_until_split,
)
from support.events import API_CALL, FAILURE, LOGIN, event, unique
from support.postgres import query
from support.server import ServerProcess
from support.waiting import wait_for

from uba.domain.shared_state import names
from uba.eventlog.layout import EVENTS, POPULATION, partition_of
from uba.v1 import service_pb2

PARTITIONS = 4
LEASE = 5.0


def user_on(owned: set[int], prefix: str) -> str:
    while True:
        user = unique(prefix)
        if partition_of(user, PARTITIONS) in owned:
            return user


def stored_ids(database_url: str, user: str) -> set[str]:
    return {
        r[0] for r in query(database_url, "SELECT event_id FROM events WHERE user_id = %s", (user,))
    }


def window_entries(
    database_url: str, user: str, records: bool = True
) -> list[tuple[str, str, str, float]]:
    """(state row, window, key, time) of every saved window entry that names
    the user, as key or as value; with `records`, also the detectors'
    records (uba.detectors.records: saved as windows of no span, at time 0)."""
    found = []
    for name, data in query(database_url, "SELECT name, data FROM state"):
        if not name.startswith("detector_windows"):
            continue
        for window, saved in json.loads(data).items():
            if not records and not saved["window_seconds"]:
                continue
            for key, entries in saved["keys"].items():
                for ts, value in entries:
                    if names(key, user) or names(value, user):
                        found.append((name, window, key, ts))
    return found


class Holder:
    """Pulls what waits for these durable consumers and holds it
    unacknowledged, telling JetStream it is being worked on, until
    `release`: then it goes as a worker that died, and the messages come
    back after the consumers' ack wait."""

    def __init__(self, nats_url: str, consumers: list[tuple[str, str]]):
        self.held = 0
        self._release = threading.Event()
        pulled = threading.Event()
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._hold(nats_url, consumers, pulled),)
        )
        self._thread.start()
        assert pulled.wait(30), "nothing pulled"

    async def _hold(self, nats_url: str, consumers: list[tuple[str, str]], pulled) -> None:
        import nats
        import nats.errors

        nc = await nats.connect(nats_url, connect_timeout=5)
        try:
            js = nc.jetstream()
            msgs = []
            for stream, durable in consumers:
                sub = await js.pull_subscribe_bind(durable=durable, stream=stream)
                try:
                    msgs += await sub.fetch(100, timeout=2)
                except nats.errors.TimeoutError:
                    pass
            self.held = len(msgs)
            pulled.set()
            while not self._release.is_set():
                for msg in msgs:
                    await msg.in_progress()
                await asyncio.sleep(0.5)
        finally:
            pulled.set()
            await nc.close()

    def release(self) -> None:
        self._release.set()
        self._thread.join(30)


def test_forget_reaches_the_workers_in_order_with_the_users_events(tmp_path, make_database_url):
    require_nats()
    url = make_database_url("postgresql")
    nats = NatsServer(tmp_path / "nats").start()
    front = ServerProcess(
        tmp_path / "front",
        url,
        extra_args=["--event-log", nats.url, "--event-log-partitions", str(PARTITIONS)],
    )
    workers = [
        WorkerProcess(tmp_path / f"w{i}", url, nats.url, "--worker-lease-seconds", str(LEASE))
        for i in (1, 2)
    ]
    processes = [front, *workers]
    sending = threading.Event()
    try:
        front.start(timeout=90)
        with ThreadPoolExecutor(2) as pool:
            for started in [pool.submit(w.start, timeout=90) for w in workers]:
                started.result()
        wait_until_split(workers, PARTITIONS)
        owners = [w.owned() for w in workers]
        user = user_on(owners[0], "forget")
        other = user_on(owners[1], "keep")
        stub = front.stub

        # What the user leaves in every kind of state: a login from a
        # country and a device (the peer aggregates, shared by both
        # workers), six failed logins from an address (the user's burst
        # window, and the spraying and stuffing windows of the population
        # partitions).
        base = datetime.now(UTC) - timedelta(seconds=60)
        history = [
            event(
                user,
                LOGIN,
                at=base,
                source_ip="203.0.113.77",
                country_code="FR",
                device_id="dev-forget",
                event_id=f"{user}-login",
            ),
            *(
                event(
                    user,
                    FAILURE,
                    at=base + timedelta(seconds=2 * i + 1),
                    source_ip="203.0.113.77",
                    event_id=f"{user}-fail-{i}",
                )
                for i in range(6)
            ),
            event(
                other,
                LOGIN,
                at=base,
                source_ip="203.0.113.78",
                country_code="FR",
                event_id=f"{other}-login",
            ),
        ]
        stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=history), timeout=30)
        wait_for(lambda: len(stored_ids(url, user)) == 7, 60, "the user's events stored")
        wait_for(lambda: log_settled(nats.url, 2), 60, "the log to settle")

        # The user keeps sending while being erased.
        acked: list[tuple[float, str]] = []  # (acknowledged at, event id)
        sent: list[tuple[float, str]] = []  # (sent at, event id)
        sending.set()

        def sender() -> None:
            i = 0
            while sending.is_set():
                batch = [
                    event(user, API_CALL, at=datetime.now(UTC), event_id=f"{user}-api-{i + k}")
                    for k in range(10)
                ]
                i += 10
                started = time.monotonic()
                stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=batch), timeout=30)
                done = time.monotonic()
                sent.extend((started, e.event_id) for e in batch)
                acked.extend((done, e.event_id) for e in batch)

        thread = threading.Thread(target=sender)
        thread.start()
        time.sleep(1.5)
        began_wall = datetime.now(UTC)
        began = time.monotonic()
        reply = stub.ForgetUser(service_pb2.ForgetUserRequest(user_id=user), timeout=60)
        ended = time.monotonic()
        time.sleep(1.5)
        sending.clear()
        thread.join(60)

        # The workers saved the windows of the user's partition and of every
        # population partition without the user, in the erasure's
        # transactions (and save them next 30 s later).
        assert window_entries(url, user) == []
        alias = reply.pseudonym
        assert alias.startswith("erased_") and user not in alias
        before = {i for t, i in acked if t < began}
        after = {i for t, i in sent if t > ended}
        assert before and after
        # Applied when answered: what was acknowledged before is gone.
        assert reply.events_deleted >= 7 + len(before), reply
        assert not stored_ids(url, user) & (before | {e.event_id for e in history[:7]})
        wait_for(lambda: after <= stored_ids(url, user), 60, "the events sent after it stored")
        assert stored_ids(url, other) == {f"{other}-login"}
        # The worker wrote the erasure into the audit trail, naming the pseudonym.
        (entry,) = query(
            url, "SELECT actor, target, detail FROM audit_log WHERE action = 'users.forget'"
        )
        assert entry[0] == "admin" and entry[1] == alias and user not in entry[2], entry

        # Four more failures after the erasure: with the six before it, a
        # burst (ten); without them, nothing.
        later = datetime.now(UTC)
        stub.RecordActivities(
            service_pb2.RecordActivitiesRequest(
                events=[
                    event(
                        user,
                        FAILURE,
                        at=later + timedelta(seconds=i),
                        source_ip="203.0.113.79",
                        event_id=f"{user}-again-{i}",
                    )
                    for i in range(4)
                ]
            ),
            timeout=30,
        )
        wait_for(lambda: f"{user}-again-3" in stored_ids(url, user), 60, "the later failures")
        wait_for(lambda: log_settled(nats.url, 2), 60, "the log to settle")
        bursts = "SELECT count(*) FROM anomalies WHERE user_id = %s AND detector = %s"
        assert query(url, bursts, (user, "failed_login_burst")) == [(0,)]

        # The other worker dropped the user's peer entries it had received.
        assert re.search(r"aggregates: dropped \d+ entries of an erased user", workers[1].log()), (
            workers[1].log()[-5000:]
        )
        # A clean stop saves every partition's windows: nothing there names
        # the user from before the erasure, in the user's partition or in
        # any population partition.
        with ThreadPoolExecutor(2) as pool:
            assert list(pool.map(lambda w: w.stop(timeout=60), workers)) == [0, 0]
        stale = [
            entry
            for entry in window_entries(url, user, records=False)
            if entry[3] < began_wall.timestamp() - 1
        ]
        assert stale == [], stale
        assert window_entries(url, user, records=False), "what came after the erasure is there"
    finally:
        sending.clear()
        kill_and_show(processes)
        nats.stop()


def test_events_delivered_again_after_an_erasure_stay_erased(tmp_path, make_database_url):
    """A worker pulled the user's events and died before acknowledging
    them; the erasure behind them in the partition reaches the next owner
    first, and the events come back after the ack wait: they are dropped,
    in the user partition and in the population partitions."""
    require_nats()
    url = make_database_url("postgresql")
    nats = NatsServer(tmp_path / "nats").start()
    front = ServerProcess(
        tmp_path / "front",
        url,
        extra_args=["--event-log", nats.url, "--event-log-partitions", str(PARTITIONS)],
    )
    worker = WorkerProcess(
        tmp_path / "w",
        url,
        nats.url,
        "--worker-lease-seconds",
        str(LEASE),
        "--worker-ack-wait",
        "4",
    )
    processes = [front, worker]
    try:
        front.start(timeout=90)
        worker.start(timeout=90)  # creates the consumers (ack wait 4 s)
        wait_for(lambda: worker.owned() == set(range(PARTITIONS)), 60, "the worker to own all")
        assert worker.stop(timeout=60) == 0
        user = unique("held")
        now = datetime.now(UTC)
        events = [
            event(
                user,
                LOGIN,
                at=now - timedelta(minutes=5),
                source_ip="203.0.113.90",
                event_id=f"{user}-login",
            )
        ] + [
            event(
                user,
                FAILURE,
                at=now - timedelta(minutes=4) + timedelta(seconds=i),
                source_ip="203.0.113.91",
                event_id=f"{user}-fail-{i}",
            )
            for i in range(3)
        ]
        front.stub.RecordActivities(service_pb2.RecordActivitiesRequest(events=events), timeout=30)
        consumers = [(EVENTS.stream, EVENTS.durable(partition_of(user, PARTITIONS)))] + [
            (POPULATION.stream, POPULATION.durable(q)) for q in range(PARTITIONS)
        ]
        holder = Holder(nats.url, consumers)
        try:
            # The events, and the failures' population copies.
            assert holder.held > len(events), holder.held
            worker.start(timeout=90)
            reply = front.stub.ForgetUser(service_pb2.ForgetUserRequest(user_id=user), timeout=60)
        finally:
            holder.release()
        assert reply.events_deleted == 0  # none was stored yet
        assert window_entries(url, user) == []
        # The held messages come back after the ack wait and are dropped.
        wait_for(lambda: log_settled(nats.url, 1), 60, "the held messages to come back")
        assert stored_ids(url, user) == set()
        # Dropped on arrival, in the user partition and in the population ones.
        dropped = re.findall(r"dropped \d+ events delivered again after", worker.log())
        assert len(dropped) >= 2, worker.log()[-5000:]
        assert query(url, "SELECT count(*) FROM baselines WHERE user_id = %s", (user,)) == [(0,)]
        assert query(url, "SELECT count(*) FROM anomalies WHERE user_id = %s", (user,)) == [(0,)]
        # New activity after the erasure is stored as usual.
        front.stub.RecordActivity(
            service_pb2.RecordActivityRequest(event=event(user, LOGIN, event_id=f"{user}-new")),
            timeout=30,
        )
        wait_for(lambda: stored_ids(url, user) == {f"{user}-new"}, 60, "the new event stored")
        assert worker.stop(timeout=60) == 0
        old = [e for e in window_entries(url, user, records=False) if e[3] < now.timestamp() - 60]
        assert old == [], old
    finally:
        kill_and_show(processes)
        nats.stop()
