"""`uba incidents list|show|ack|resolve|follow` end to end against a live
server on SQLite and PostgreSQL, through the client library."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from support.events import FAILURE, event, unique

from uba.v1 import service_pb2


def test_incident_commands(uba_server, uba_cli):
    user = unique("cli-inc")
    now = datetime.now(UTC)
    uba_server.stub.RecordActivities(
        service_pb2.RecordActivitiesRequest(
            events=[
                event(
                    user,
                    FAILURE,
                    at=now - timedelta(minutes=10) + timedelta(seconds=3 * i),
                    source_ip="203.0.113.61",
                )
                for i in range(11)
            ]
        )
    )

    listed = uba_cli("incidents", "list", "--user", user, "--json", server=uba_server.address)
    assert listed.code == 0, listed.err
    (incident,) = json.loads(listed.out)["incidents"]
    incident_id = incident["incident_id"]
    assert incident["entity_id"] == user and incident["techniques"][0]["technique_id"].startswith(
        "T1110"
    )
    text = uba_cli(
        "incidents",
        "list",
        "--tactic",
        "credential-access",
        "--status",
        "open",
        server=uba_server.address,
    )
    assert text.code == 0 and incident_id in text.out and "Credential Access" in text.out

    shown = uba_cli("incidents", "show", incident_id, server=uba_server.address)
    assert shown.code == 0, shown.err
    assert "score breakdown" in shown.out and "failed_login_burst" in shown.out
    assert (
        "timeline (UTC):" in shown.out and "login_failure" in shown.out and "T1110.001" in shown.out
    )

    alert_ack = uba_cli("alerts", "ack", incident["alert_ids"][0], server=uba_server.address)
    assert (
        alert_ack.code == 0
        and "ATT&CK: T1110.001 Brute Force: Password Guessing (Credential Access)" in alert_ack.out
    )

    acked = uba_cli(
        "incidents", "ack", incident_id, "--note", "on it", "--json", server=uba_server.address
    )
    assert acked.code == 0 and json.loads(acked.out)["status"] == "INCIDENT_STATUS_ACKNOWLEDGED"
    resolved = uba_cli(
        "incidents",
        "resolve",
        incident_id,
        "--resolution",
        "true_positive",
        server=uba_server.address,
    )
    assert resolved.code == 0 and "resolution: true_positive" in resolved.out
    alerts = json.loads(
        uba_cli("alerts", "list", "--user", user, "--json", server=uba_server.address).out
    )["alerts"]
    assert alerts and all(a["status"] == "ALERT_STATUS_RESOLVED" for a in alerts)

    # Follow replays the incident's latest change after a seq (the resolution,
    # which superseded the acknowledgement), with the alerts' changes skipped.
    followed = uba_cli(
        "incidents",
        "follow",
        "--after-seq",
        str(int(incident["seq"])),
        "--user",
        user,
        "--count",
        "1",
        "--json",
        server=uba_server.address,
        timeout=60,
    )
    assert followed.code == 0, followed.err
    changes = [json.loads(line) for line in followed.out.splitlines()]
    assert [(c["incident_id"], c["status"]) for c in changes] == [
        (incident_id, "INCIDENT_STATUS_RESOLVED")
    ]
    assert "resume with --after-seq" in followed.err

    again = uba_cli(
        "incidents", "resolve", incident_id, "--resolution", "benign", server=uba_server.address
    )
    assert again.code == 1 and "already resolved" in again.err
    missing = uba_cli("incidents", "show", "no-such-incident", server=uba_server.address)
    assert missing.code == 1 and "no-such-incident" in missing.err


def test_a_campaign_is_shown_with_its_addresses_and_victims(uba_server, uba_cli):
    """A spray from two addresses against thirty accounts is one incident;
    `show` names its addresses and its users."""
    victims = [unique("cli-camp") for _ in range(30)]
    sprayers = ["198.51.100.201", "198.51.100.202"]
    start = datetime.now(UTC) - timedelta(hours=5)  # hours away from the module's other failures
    uba_server.stub.RecordActivities(
        service_pb2.RecordActivitiesRequest(
            events=[
                event(
                    user,
                    FAILURE,
                    at=start + timedelta(seconds=5 * i),
                    source_ip=sprayers[i % 2],
                )
                for i, user in enumerate(victims)
            ]
        )
    )
    listed = uba_cli("incidents", "list", "--json", server=uba_server.address)
    assert listed.code == 0, listed.err
    (campaign,) = [
        i
        for i in json.loads(listed.out)["incidents"]
        if set(i.get("source_ips", [])) & set(sprayers)
    ]
    assert campaign["entity_kind"] == "ENTITY_KIND_SOURCE_ADDRESS"
    assert set(campaign["source_ips"]) == set(sprayers)
    shown = uba_cli("incidents", "show", campaign["incident_id"], server=uba_server.address)
    assert shown.code == 0, shown.err
    assert "2 addresses: " in shown.out and all(ip in shown.out for ip in sprayers)
    assert f"{len(campaign['user_ids'])} users: " in shown.out
