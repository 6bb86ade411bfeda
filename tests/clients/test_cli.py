"""The client commands end to end: `python -m uba ...` against a live
server on SQLite and PostgreSQL, with the address from UBA_SERVER."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from support.server import KEYS

from uba_client import UbaClient

LOGHUB = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "loghub"


def loghub(name: str) -> Path:
    path = LOGHUB / name
    if not path.is_file():
        pytest.skip(
            f"{path} missing: the loghub sample logs live outside the repository, at "
            "../shared/data/loghub"
        )
    return path


def count_logs(address: str, **filters) -> int:
    with UbaClient(address, api_key=KEYS.get(address)) as client:
        return sum(1 for _ in client.iter_logs(**filters))


def test_ingest_sshd_log_then_again_stores_nothing_twice(uba_server, uba_cli):
    log = str(loghub("OpenSSH_2k.log"))
    first = uba_cli(
        "ingest", "--format", "sshd", "--year", "2024", "--json", log, server=uba_server.address
    )
    assert first.code == 0, first.err
    summary = json.loads(first.out)
    assert (summary["read"], summary["events"], summary["accepted"], summary["duplicate"]) == (
        2000,
        535,
        535,
        0,
    )
    assert summary["by_type"] == {"login_failure": 533, "login_success": 1, "logout": 1}
    assert summary["unparsed"] == 0 and summary["invalid"] == 0
    stored = count_logs(uba_server.address, source_ip="173.234.31.186")

    again = uba_cli("ingest", "--year", "2024", log, server=uba_server.address)
    assert again.code == 0, again.err
    assert "0 accepted, 535 duplicate, 0 invalid" in again.out
    assert count_logs(uba_server.address, source_ip="173.234.31.186") == stored > 0


def test_ingest_reports_unparsed_lines_and_refused_events(uba_server, uba_cli, tmp_path):
    log = tmp_path / "auth.log"
    log.write_text(
        "Mar  1 10:00:00 web1 sshd[11]: Accepted password for cli-ann from 10.1.1.1 port 22 ssh2\n"
        "garbage that is no syslog line\n"
        "Mar  1 10:00:05 web1 sshd[12]: Something sshd says that nobody taught us\n"
        "Mar  1 10:01:00 web1 sshd[11]: pam_unix(sshd:session): session closed for user cli-ann\n"
    )
    ok = uba_cli(
        "ingest",
        "--year",
        "2025",
        "--timezone",
        "Europe/Berlin",
        "--source",
        "web1",
        str(log),
        server=uba_server.address,
    )
    assert ok.code == 0, ok.err
    assert "2 events" in ok.out and "2 unparsed" in ok.out
    assert "auth.log:2: skipped, not a syslog line" in ok.err
    assert "auth.log:3: skipped, sshd message not understood" in ok.err
    with UbaClient(uba_server.address, api_key=uba_server.api_key) as client:
        (logout, login) = client.list_logs(user_id="cli-ann").events
    assert login.source == "web1" and logout.session_duration.seconds == 60
    assert login.occurred_at.ToJsonString() == "2025-03-01T09:00:00Z"

    records = tmp_path / "events.jsonl"
    records.write_text(
        json.dumps(
            {
                "who": "cli-bob",
                "type": "login_success",
                "at": "2025-03-01T10:00:00Z",
                "source_ip": "10.0.0.1",
            }
        )
        + "\n"
        + json.dumps(
            {
                "who": "cli-bob",
                "type": "login_success",
                "at": "2025-03-01T10:00:00Z",
                "source_ip": "not-an-ip",
            }
        )
        + "\n"
    )
    refused = uba_cli(
        "ingest",
        str(records),
        "--map",
        "who=user_id",
        "--map",
        "at=occurred_at",
        server=uba_server.address,
    )
    assert refused.code == 1
    assert "1 accepted, 0 duplicate, 1 invalid" in refused.out
    assert "source_ip: not an IPv4 or IPv6 address" in refused.err


FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "importers"


def test_ingest_vendor_logs_recognised_then_again_stores_nothing_twice(uba_server, uba_cli):
    files = [str(FIXTURES / n) for n in ("okta.json", "cloudtrail.json", "winlogbeat.ndjson")]
    first = uba_cli("ingest", "--json", *files, server=uba_server.address)  # formats sniffed
    assert first.code == 0, first.err
    summary = json.loads(first.out)
    assert (summary["events"], summary["accepted"], summary["invalid"]) == (18, 18, 0)
    assert summary["by_type"] == {
        "api_call": 2,
        "login_failure": 6,
        "login_success": 4,
        "logout": 2,
        "mfa_approved": 2,
        "mfa_challenge": 1,
        "mfa_denied": 1,
    }
    assert summary["skip_reasons"]["machine account"] == 1
    assert "winlogbeat.ndjson:7: not imported, machine account" in first.err
    with UbaClient(uba_server.address, api_key=uba_server.api_key) as client:
        okta = client.list_logs(user_id="eve.okta@example.com").events
        assert len(okta) == 6 and {e.source for e in okta} == {"okta"}
        (call,) = client.list_logs(user_id="hank@example.com").events
        assert call.api_path == "iam.amazonaws.com/CreateAccessKey"
        logout = next(e for e in client.list_logs(user_id="ivan").events if e.type == 3)
        assert logout.session_duration.seconds == 3600

    again = uba_cli("ingest", "--format", "cloudtrail", files[1], server=uba_server.address)
    assert again.code == 0, again.err
    assert "0 accepted, 5 duplicate, 0 invalid" in again.out

    wrong = uba_cli("ingest", "--format", "entra", files[0], server=uba_server.address)
    assert wrong.code == 2
    assert "this looks like an Okta System Log file" in wrong.err
    assert "use --format okta" in wrong.err


def test_logs_export_and_reimport_round_trip(uba_server, uba_cli, tmp_path):
    with UbaClient(uba_server.address, api_key=uba_server.api_key) as client:
        from uba_client import event

        client.record_batch(
            [
                event(
                    "cli-carol",
                    "api_call",
                    "2026-01-05T10:00:00Z",
                    api_method="GET",
                    api_path="/v1/x",
                    status_code=200,
                    bytes_transferred=1234,
                    attributes={"formula": "=1+1"},
                ),
                event("cli-carol", "logout", "2026-01-05T11:00:00Z", session_duration=3600),
            ]
        )
    listed = uba_cli("logs", "--user", "cli-carol", "--json", server=uba_server.address)
    assert listed.code == 0, listed.err
    assert [e["type"] for e in json.loads(listed.out)["events"]] == [
        "ACTIVITY_TYPE_LOGOUT",
        "ACTIVITY_TYPE_API_CALL",
    ]
    table = uba_cli("logs", "--user", "cli-carol", "--type", "api_call", server=uba_server.address)
    assert "GET /v1/x -> 200" in table.out and "login" not in table.out

    for fmt in ("csv", "json", "ndjson"):
        out = tmp_path / f"carol.{fmt}"
        exported = uba_cli(
            "export",
            "--user",
            "cli-carol",
            "--format",
            fmt,
            "--output",
            str(out),
            server=uba_server.address,
        )
        assert exported.code == 0 and f"of {fmt} to" in exported.err
        # Re-importing an export adds nothing: same ids.
        again = uba_cli("ingest", "--json", str(out), server=uba_server.address)
        summary = json.loads(again.out)
        assert (again.code, summary["events"], summary["duplicate"]) == (0, 2, 2), again.err
    rows = list(csv.DictReader(io.StringIO((tmp_path / "carol.csv").read_text())))
    assert rows[1]["session_duration_seconds"] == "3600.0"
    to_stdout = uba_cli(
        "export", "--user", "cli-carol", "--format", "ndjson", server=uba_server.address
    )
    assert len(to_stdout.out.splitlines()) == 2


def test_capabilities_dashboard_and_errors(uba_server, uba_cli):
    caps = uba_cli("capabilities", "--json", server=uba_server.address)
    assert caps.code == 0 and json.loads(caps.out)["storage_backend"] == uba_server.backend
    text = uba_cli("capabilities", server=uba_server.address)
    assert "failed_login_burst" in text.out
    board = uba_cli("dashboard", "--window", "90d", server=uba_server.address)
    assert board.code == 0 and "events" in board.out

    refused = uba_cli("dashboard", "--window", "200d", server=uba_server.address)
    assert (
        refused.code == 1
        and refused.err.startswith("uba: invalid argument: window")
        and refused.out == ""
    )
    assert len(refused.err.splitlines()) == 1
    missing = uba_cli("alerts", "ack", "no-such-alert", server=uba_server.address)
    assert missing.code == 1 and missing.err.startswith("uba: not found")


def test_unreachable_server_and_usage_errors(uba_cli, free_address, tmp_path):
    down = uba_cli("logs", "--server", free_address)
    assert down.code == 1
    assert down.err == f"uba: cannot reach {free_address}: connection refused\n"
    assert uba_cli("ingest", str(tmp_path / "nope.log"), "--server", free_address).code == 2
    assert uba_cli("logs", "--since", "last tuesday").code == 2
    assert uba_cli("ingest", "--map", "nonsense", str(Path(__file__))).code == 2
    assert uba_cli("alerts").code == 2
    for command in (
        "ingest",
        "logs",
        "export",
        "alerts",
        "dashboard",
        "baseline",
        "capabilities",
        "demo",
    ):
        helped = uba_cli(command, "--help")
        assert helped.code == 0 and "--server" in helped.out or command == "alerts", command


def test_demo_raises_every_attack_kind_then_alerts_are_worked(uba_server, uba_cli):
    demo = uba_cli(
        "demo",
        "--users",
        "16",
        "--days",
        "21",
        "--seed",
        "3",
        "--attacks",
        "--json",
        server=uba_server.address,
    )
    assert demo.code == 0, demo.err
    summary = json.loads(demo.out)
    assert summary["invalid"] == 0 and summary["accepted"] == summary["events"] > 5000
    expected = {d for a in summary["attacks"] for d in a["detectors"]}

    listed = uba_cli("alerts", "list", "--all", "--json", server=uba_server.address)
    assert listed.code == 0, listed.err
    alerts = json.loads(listed.out)["alerts"]
    raised = {a["detector"] for a in alerts}
    assert expected - {"new_ip"} <= raised, f"no alert from {expected - raised}"

    victim = next(a for a in summary["attacks"] if a["kind"] == "data_exfiltration")["users"][0]
    alert = next(a for a in alerts if a["user_id"] == victim and a["detector"] == "data_volume")
    acked = uba_cli(
        "alerts", "ack", alert["alert_id"], "--note", "looking", "--json", server=uba_server.address
    )
    assert acked.code == 0 and json.loads(acked.out)["status"] == "ALERT_STATUS_ACKNOWLEDGED"
    resolved = uba_cli(
        "alerts",
        "resolve",
        alert["alert_id"],
        "--resolution",
        "true_positive",
        server=uba_server.address,
    )
    assert resolved.code == 0 and "resolution: true_positive" in resolved.out

    followed = uba_cli(
        "alerts",
        "follow",
        "--after-seq",
        str(int(alert["seq"]) - 1),
        "--count",
        "2",
        "--json",
        server=uba_server.address,
        timeout=60,
    )
    assert followed.code == 0, followed.err
    changes = [json.loads(line) for line in followed.out.splitlines()]
    assert len(changes) == 2 and int(changes[0]["seq"]) >= int(alert["seq"])
    assert "resume with --after-seq" in followed.err

    baseline = uba_cli("baseline", victim, server=uba_server.address)
    assert baseline.code == 0 and f"baseline of {victim}: mature" in baseline.out

    # The same seed and end again: nothing new.
    again = uba_cli(
        "demo",
        "--users",
        "16",
        "--days",
        "21",
        "--seed",
        "3",
        "--attacks",
        "--json",
        "--end",
        summary["end"],
        server=uba_server.address,
    )
    assert json.loads(again.out)["duplicate"] == summary["events"]
