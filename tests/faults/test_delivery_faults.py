"""Faults in delivery: the server killed while a receiver holds a request,
a receiver down for 15 s (150 s in make test-faults-large), two server
processes on one PostgreSQL.
Nothing committed is lost; a message arrives twice only after a crash, and
then with the same id (the receiver's idempotency key)."""

from __future__ import annotations

import json
import time

import pytest
from support.events import unique
from support.ports import free_port
from support.receivers import WebhookReceiver
from support.scale import scaled, scaled_timeout
from support.server import ServerProcess
from test_delivery import DELIVERED, SECRET, all_delivered, burst, outbox, wait_until

from uba.v1 import service_pb2

# How long the receiver is away in the outage test: long enough for several
# retries at the test's backoff (3 s at most); the minute and more
# at UBA_FAULT_SCALE 4 and up (make test-faults-large).
OUTAGE_SECONDS = min(scaled(15), 150)

pytestmark = scaled_timeout(300)


def config(tmp_path, url: str) -> str:
    path = tmp_path / "notify.json"
    path.write_text(
        json.dumps(
            {
                "destinations": {
                    "soc": {
                        "kind": "webhook",
                        "url": url,
                        "secret": SECRET,
                        "min_severity": "low",
                        "retry_initial_seconds": 0.2,
                        "retry_max_seconds": 3,
                    }
                }
            }
        )
    )
    return str(path)


def attack(server: ServerProcess, count: int, offset: int = 0) -> None:
    for i in range(count):
        server.stub.RecordActivities(
            service_pb2.RecordActivitiesRequest(
                events=burst(unique("victim"), f"198.51.100.{offset + i + 1}")
            )
        )


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_sigkill_mid_delivery_delivers_after_restart_with_the_same_ids(
    backend, tmp_path, make_database_url
):
    receiver = WebhookReceiver(secret=SECRET, hold=4.0)
    url = make_database_url(backend)
    notify = config(tmp_path, receiver.url)
    server = ServerProcess(tmp_path / "data", url, extra_args=["--notify", notify]).start()
    key = server.api_key
    try:
        attack(server, 3)
        wait_until(lambda: receiver.requests, what="the first request")
        server.kill()  # while the receiver holds the first request
        server = ServerProcess(
            tmp_path / "data", url, extra_args=["--notify", notify], api_key=key
        ).start()
        attack(server, 2, offset=10)
        rows = wait_until(all_delivered(server, "soc", 5), timeout=120, what="every notification")
        accepted = receiver.messages()
        ids = [m["id"] for m in accepted]
        assert set(ids) == {r.message_id for r in rows}, "nothing lost, nothing invented"
        for message_id in {i for i in ids if ids.count(i) > 1}:
            copies = [m for m in accepted if m["id"] == message_id]
            assert all(c == copies[0] for c in copies), "a duplicate is the same message"
        # Apart from the re-sent one, each destination's order is the outbox's.
        first_seen = list(dict.fromkeys(ids))
        assert first_seen == [r.message_id for r in rows]
        assert receiver.bad_signatures == 0
    finally:
        server.stop()
        receiver.close()


def test_a_receiver_down_for_a_while_loses_nothing(tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}/hook"
    server = ServerProcess(tmp_path / "data", extra_args=["--notify", config(tmp_path, url)])
    server.start()
    receiver = None
    try:
        started = time.monotonic()
        for round_ in range(3):  # alerts keep coming while it is away
            attack(server, 2, offset=10 * round_)
            time.sleep(OUTAGE_SECONDS / 4)
        pending = outbox(server.stub, "soc")
        assert pending and all(r.status != DELIVERED for r in pending)
        assert max(r.attempts for r in pending) >= 2, "it kept trying"
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - started)))
        receiver = WebhookReceiver(secret=SECRET, port=port)
        rows = wait_until(
            all_delivered(server, "soc", len(pending)), timeout=60, what="the backlog"
        )
        ids = [m["id"] for m in receiver.messages()]
        assert ids == [r.message_id for r in rows], "each once, in order"
    finally:
        server.stop()
        if receiver is not None:
            receiver.close()


def test_two_processes_on_one_postgresql_deliver_each_message_once(tmp_path, make_database_url):
    receiver = WebhookReceiver(secret=SECRET)
    url = make_database_url("postgresql")
    notify = config(tmp_path, receiver.url)
    first = ServerProcess(tmp_path / "a", url, extra_args=["--notify", notify]).start()
    second = ServerProcess(
        tmp_path / "b", url, extra_args=["--notify", notify], api_key=first.api_key
    ).start()
    try:
        attack(first, 3)
        attack(second, 3, offset=20)
        rows = wait_until(all_delivered(first, "soc", 6), timeout=120, what="every notification")
        ids = [m["id"] for m in receiver.messages()]
        assert ids == [r.message_id for r in rows], "each once, in the outbox's order"
    finally:
        second.stop()
        first.stop()
        receiver.close()
