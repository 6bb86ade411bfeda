"""Alert and incident delivery with real receivers: a signed webhook that
fails first, a receiver that refuses for good, a wrong notify file, the
operator's commands."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import pytest
from support.events import FAILURE, event, unique
from support.receivers import WebhookReceiver
from support.server import ServerProcess

from uba.v1 import alerts_pb2, notifications_pb2, service_pb2

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DELIVERED = notifications_pb2.NOTIFICATION_STATUS_DELIVERED
DEAD = notifications_pb2.NOTIFICATION_STATUS_DEAD


def burst(user: str, ip: str) -> list:
    """Eleven failed logins in half a minute: an alert on the spot."""
    start = datetime.now(UTC) - timedelta(minutes=5)
    return [
        event(user, FAILURE, at=start + timedelta(seconds=3 * i), source_ip=ip) for i in range(11)
    ]


def notify_file(tmp_path, **destinations) -> str:
    path = tmp_path / "notify.json"
    path.write_text(json.dumps({"destinations": destinations}))
    return str(path)


def outbox(stub, destination: str = "") -> list:
    rows, token = [], ""
    while True:
        page = stub.ListNotifications(
            service_pb2.ListNotificationsRequest(
                destination=destination, page_size=1000, page_token=token
            )
        )
        rows.extend(page.notifications)
        token = page.next_page_token
        if not token:
            return rows


def all_delivered(server: ServerProcess, destination: str, at_least: int = 1):
    """A wait_until predicate: the destination's outbox once it holds at
    least `at_least` messages and all are delivered."""

    def check():
        rows = outbox(server.stub, destination)
        return rows if len(rows) >= at_least and all(r.status == DELIVERED for r in rows) else None

    return check


def notify_cli(server: ServerProcess, *args: str) -> subprocess.CompletedProcess:
    """`uba notify ARGS` against the server, with its key."""
    return subprocess.run(
        [sys.executable, "-m", "uba", "notify", *args, "--server", server.address],
        capture_output=True,
        text=True,
        env={"UBA_API_KEY": server.api_key, "PATH": "/usr/bin:/bin"},
        timeout=60,
    )


def wait_until(predicate, timeout: float = 60.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_alerts_reach_a_signed_webhook_in_order_after_retries(backend, tmp_path, make_database_url):
    receiver = WebhookReceiver(secret=SECRET, fail_first=3, fail_status=503, retry_after="0")
    config = notify_file(
        tmp_path,
        soc={
            "kind": "webhook",
            "url": receiver.url,
            "secret": SECRET,
            "headers": {"X-Team-Token": "t0k"},
            "min_severity": "low",
            "retry_initial_seconds": 0.05,
            "retry_max_seconds": 0.5,
        },
    )
    server = ServerProcess(
        tmp_path / "data", make_database_url(backend), extra_args=["--notify", config]
    ).start()
    try:
        users = [unique("victim") for _ in range(3)]
        for i, user in enumerate(users):
            server.stub.RecordActivities(
                service_pb2.RecordActivitiesRequest(events=burst(user, f"198.51.100.{i + 7}"))
            )

        def alerts_of_users() -> list:
            listed = server.stub.ListAlerts(service_pb2.ListAlertsRequest(page_size=100)).alerts
            ours = [a for a in listed if a.user_id in users]
            return ours if {a.user_id for a in ours} == set(users) else []

        alerts = wait_until(alerts_of_users, what="an alert for each user")
        rows = wait_until(all_delivered(server, "soc"), what="every notification delivered")
        received = receiver.messages()
        # Exactly the outbox, once each, in the outbox's order.
        assert [m["id"] for m in received] == [r.message_id for r in rows]
        assert [r.position for r in rows] == sorted(r.position for r in rows)
        # Every alert raised reached the receiver, as the API shows it.
        delivered_alerts = {m["data"]["alert"]["alertId"] for m in received if "alert" in m["data"]}
        assert {a.alert_id for a in alerts} <= delivered_alerts
        first = next(m for m in received if m["type"] == "alert.created")
        assert first["data"]["alert"]["userId"] in users
        assert first["data"]["anomalies"], "an alert carries its evidence"
        assert first["data"]["anomalies"][0]["eventIds"]
        # The first three attempts failed and were retried with the same id.
        assert receiver.requests[0]["answer"] == 503
        assert receiver.requests[0]["headers"]["webhook-id"] == rows[0].message_id
        assert rows[0].attempts == 4
        assert receiver.bad_signatures == 0
        assert all(r["headers"]["x-team-token"] == "t0k" for r in receiver.requests)
        assert all(
            r["headers"]["idempotency-key"] == r["headers"]["webhook-id"] for r in receiver.requests
        )
        page = server.stub.ListNotifications(service_pb2.ListNotificationsRequest())
        (soc,) = page.destinations
        assert (soc.name, soc.kind, soc.pending, soc.delivered, soc.dead) == (
            "soc",
            "webhook",
            0,
            len(rows),
            0,
        )
    finally:
        server.stop()
        receiver.close()


def test_a_refused_message_is_a_dead_letter_with_the_answer_until_retried(tmp_path):
    receiver = WebhookReceiver(fail_first=1, fail_status=400)
    config = notify_file(
        tmp_path,
        soc={"kind": "webhook", "url": receiver.url, "secret": SECRET, "min_severity": "low"},
    )
    server = ServerProcess(tmp_path / "data", extra_args=["--notify", config]).start()
    try:
        test = server.stub.SendTestNotification(
            service_pb2.SendTestNotificationRequest(destination="soc", text="first")
        ).notification
        dead = wait_until(
            lambda: next(
                (
                    r
                    for r in outbox(server.stub)
                    if r.message_id == test.message_id and r.status == DEAD
                ),
                None,
            ),
            what="the dead letter",
        )
        assert dead.last_error.startswith("HTTP 400")
        assert dead.attempts == 1, "a 400 is not retried"
        assert receiver.messages() == []
        # The operator sends it again from the command line; now it is taken.
        cli = notify_cli(server, "retry", "soc")
        assert cli.returncode == 0, cli.stderr
        assert "1 dead letter" in cli.stdout
        (message,) = receiver.wait_for(lambda m: len(m) == 1)
        assert message["id"] == test.message_id
        assert message["type"] == "test" and message["data"]["message"] == "first"
        # `uba notify test` waits for the delivery and says how it went.
        cli = notify_cli(server, "test", "soc")
        assert cli.returncode == 0, cli.stdout + cli.stderr
        assert "delivered after 1 attempt" in cli.stdout
        unknown = notify_cli(server, "test", "nope")
        assert unknown.returncode != 0
        assert "no destination 'nope'; configured: soc" in unknown.stderr
    finally:
        server.stop()
        receiver.close()


@pytest.mark.parametrize(
    "destinations, message",
    [
        (
            {
                "soc": {
                    "kind": "webhook",
                    "url": "https://x.example/h",
                    "secret": SECRET,
                    "colour": 1,
                }
            },
            "destinations.soc.colour: unknown key for kind webhook",
        ),
        (
            {"soc": {"kind": "webhook", "url": "http://x.example/h", "secret": SECRET}},
            "destinations.soc.url: plain http is allowed to loopback addresses only",
        ),
        (
            {"soc": {"kind": "webhook", "url": "https://x.example/h", "secret": "hunter2"}},
            "destinations.soc.secret: a signing secret 'whsec_<base64>'",
        ),
        (
            {"siem": {"kind": "syslog", "address": "siem.example", "format": "cef"}},
            "destinations.siem.address: HOST:PORT",
        ),
        (
            {"team": {"kind": "chat", "url": "https://chat.example/h", "min_severity": "urgent"}},
            "destinations.team.min_severity: one of low, medium, high, critical",
        ),
    ],
)
def test_a_wrong_notify_file_stops_the_server_naming_the_key(tmp_path, destinations, message):
    config = notify_file(tmp_path, **destinations)
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "uba",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            str(tmp_path / "data"),
            "--notify",
            config,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert message in proc.stderr, proc.stderr


def test_chat_and_ocsf_destinations_get_their_formats(tmp_path):
    chat, siem = WebhookReceiver(), WebhookReceiver(secret=SECRET)
    config = notify_file(
        tmp_path,
        team={
            "kind": "chat",
            "url": chat.url,
            "min_severity": "low",
            "incidents": False,
            "base_url": "https://uba.example/",
        },
        lake={
            "kind": "webhook",
            "url": siem.url,
            "secret": SECRET,
            "format": "ocsf",
            "min_severity": "low",
            "incidents": False,
        },
    )
    server = ServerProcess(tmp_path / "data", extra_args=["--notify", config]).start()
    try:
        user = unique("victim")
        server.stub.RecordActivities(
            service_pb2.RecordActivitiesRequest(events=burst(user, "198.51.100.77"))
        )
        (message,) = chat.wait_for(lambda m: len(m) >= 1)[:1]
        assert user in message["text"]
        assert message["blocks"][0]["type"] == "header"
        assert "https://uba.example/alerts/" in json.dumps(message), "it links to the alert"
        assert "webhook-signature" not in chat.requests[0]["headers"], "chat has no secret"
        (finding,) = siem.wait_for(lambda m: len(m) >= 1)[:1]
        assert (finding["class_uid"], finding["category_uid"]) == (2004, 2)
        assert finding["type_uid"] == 200401  # Create
        assert finding["finding_info"]["uid"]
        alerts = server.stub.ListAlerts(service_pb2.ListAlertsRequest(user_id=user)).alerts
        assert finding["finding_info"]["uid"] in {a.alert_id for a in alerts}
        assert finding["metadata"]["uid"] == siem.requests[0]["headers"]["webhook-id"]
        assert siem.bad_signatures == 0
    finally:
        server.stop()
        chat.close()
        siem.close()


def test_an_incident_resolved_notifies_the_incident_and_its_member_alerts(tmp_path):
    receiver = WebhookReceiver(secret=SECRET)
    config = notify_file(
        tmp_path,
        soc={"kind": "webhook", "url": receiver.url, "secret": SECRET, "min_severity": "low"},
    )
    server = ServerProcess(tmp_path / "data", extra_args=["--notify", config]).start()
    try:
        user = unique("victim")
        server.stub.RecordActivities(
            service_pb2.RecordActivitiesRequest(events=burst(user, "198.51.100.88"))
        )
        created = receiver.wait_for(lambda m: any(x["type"] == "incident.created" for x in m))
        incident = next(x for x in created if x["type"] == "incident.created")["data"]["incident"]
        server.stub.ResolveIncident(
            service_pb2.ResolveIncidentRequest(
                incident_id=incident["incidentId"],
                resolution=alerts_pb2.RESOLUTION_TRUE_POSITIVE,
                note="confirmed",
            )
        )
        members = set(incident["alertIds"])

        def resolved(messages: list) -> bool:
            updates = [m for m in messages if m["type"].endswith(".updated")]
            incidents = {
                m["data"]["incident"]["incidentId"]
                for m in updates
                if "incident" in m["data"]
                and m["data"]["incident"]["status"] == "INCIDENT_STATUS_RESOLVED"
            }
            alerts = {
                m["data"]["alert"]["alertId"]
                for m in updates
                if "alert" in m["data"] and m["data"]["alert"]["status"] == "ALERT_STATUS_RESOLVED"
            }
            return incident["incidentId"] in incidents and members <= alerts

        receiver.wait_for(resolved)
    finally:
        server.stop()
        receiver.close()
