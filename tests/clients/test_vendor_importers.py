"""The vendor importers (OCSF, ECS, Okta, Entra ID, CloudTrail, Windows) on
small files in each vendor's published shape, RFC 5424 syslog, and format
sniffing. No server needed."""

from __future__ import annotations

import io
import json
import os
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from uba.importers import ImportStats, make_importer, sniff
from uba.importers.jsondoc import read_records
from uba_client import events as ev

pytestmark = pytest.mark.unit

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "importers"


def run(fmt: str, name: str, **options):
    importer = make_importer(fmt, **options)
    with (FIXTURES / name).open(encoding="utf-8") as f:
        events = list(importer.parse(f))
    return events, importer.stats


def kinds(events) -> list[str]:
    return [ev.type_name(e.type) for e in events]


def by_kind(events, kind: str):
    return next(e for e in events if ev.type_name(e.type) == kind)


def test_ocsf_authentication_and_api_activity():
    events, stats = run("ocsf", "ocsf.jsonl")
    assert kinds(events) == [
        "login_success",
        "login_failure",
        "mfa_challenge",
        "mfa_denied",
        "logout",
        "api_call",
        "api_call",
    ]
    login = events[0]
    assert (login.user_id, login.source_ip, login.session_id, login.country_code) == (
        "ann.ocsf",
        "203.0.113.10",
        "sess-ann-1",
        "DE",
    )
    assert (login.latitude, login.longitude, login.city) == (52.52, 13.405, "Berlin")
    assert login.occurred_at.ToJsonString() == "2025-10-11T22:14:15.003Z"  # epoch ms
    assert login.attributes["mfa"] == "true" and login.attributes["logon_type"] == "network"
    assert login.user_agent.startswith("Mozilla/5.0") and login.source == "ocsf:Example IdP"
    api = events[5]
    assert (api.api_method, api.api_path, api.status_code) == ("GET", "/v1/customers/42", 200)
    failed_api = events[6]  # no http_request: the operation is the endpoint, Delete -> DELETE
    assert (failed_api.user_id, failed_api.api_method, failed_api.api_path) == (
        "AIDAEXAMPLEBOB",
        "DELETE",
        "DeleteBucket",
    )
    assert failed_api.status_code == 400
    # a Kerberos service ticket is skipped with its line; a process event ignored
    assert stats.skip_samples == [(5, "authentication activity_id 4 is no logon or logoff")]
    assert (stats.ignored, stats.unparsed, stats.samples[0][0]) == (1, 1, 10)


def test_ecs_nested_and_dotted_fields():
    events, stats = run("ecs", "ecs.ndjson")
    assert kinds(events) == ["login_success", "login_failure", "api_call", "logout"]
    login, failure, api, _ = events
    assert (login.user_id, login.country_code, login.city, login.timezone) == (
        "dana",
        "PT",
        "Lisbon",
        "Europe/Lisbon",
    )
    assert (login.latitude, login.longitude) == (38.72, -9.14)
    assert failure.attributes["reason"] == "bad password"
    assert (api.api_method, api.api_path, api.status_code, api.bytes_transferred) == (
        "DELETE",
        "/admin/users/7",
        403,
        120,
    )
    assert login.event_id.startswith("ecs-")
    assert stats.skip_reasons == {
        "authentication with event.outcome unknown": 1,
        "no user name": 1,
    }
    assert [n for n, _ in stats.skip_samples] == [6, 7] and stats.ignored == 1


def test_okta_api_page_with_mfa_push_flow():
    events, stats = run("okta", "okta.json")
    assert kinds(events) == [
        "login_success",
        "mfa_challenge",
        "mfa_denied",
        "mfa_approved",
        "login_failure",
        "logout",
    ]
    login = events[0]
    assert login.user_id == "eve.okta@example.com"  # alternateId, lower-cased
    assert login.session_id == "102nZJHfdEyT7CuaHxxtj1wSg" == events[-1].session_id
    assert (login.source_ip, login.city, login.latitude) == ("203.0.113.30", "Toronto", 43.6532)
    assert login.attributes["country"] == "Canada" and not login.country_code
    assert "Safari" in login.user_agent
    assert events[1].session_id == ""  # Okta's "unknown" is no session
    assert events[4].attributes["reason"] == "INVALID_CREDENTIALS"
    assert stats.skip_reasons == {"actor is a PublicClientApp, not a user": 1}
    assert stats.ignored == 1  # user.lifecycle.create
    # the id is the uuid's: the same record in JSON Lines gets the same id
    records = json.loads((FIXTURES / "okta.json").read_text())
    again = list(make_importer("okta").parse(json.dumps(r) + "\n" for r in records))
    assert [e.event_id for e in again] == [e.event_id for e in events]


def test_entra_graph_page():
    events, stats = run("entra", "entra-signins.json")
    assert kinds(events) == ["login_success", "login_failure", "mfa_challenge", "mfa_denied"]
    ok, failed, *_ = events
    assert (ok.user_id, ok.device_id, ok.country_code, ok.session_id) == (
        "frank.entra@contoso.com",
        "d1e2f3a4-0000-4000-8000-000000000001",
        "US",
        "d79f5bee-5860-4832-928f-3133e22ae912",
    )
    assert ok.attributes["conditional_access"] == "success" and ok.attributes["os"] == "Windows 10"
    assert (failed.attributes["error_code"], failed.country_code, failed.latitude) == (
        "50126",
        "BR",
        -23.55,
    )
    assert stats.skip_reasons == {"sign-in interrupt (errorCode 50140)": 1}
    assert stats.lines == 5 and stats.unparsed == 0


def test_cloudtrail_records_file():
    events, stats = run("cloudtrail", "cloudtrail.json")
    assert kinds(events) == [
        "login_success",
        "login_failure",
        "api_call",
        "api_call",
        "mfa_approved",
    ]
    login, failure, sso_call, denied, root = events
    assert (login.user_id, login.attributes["mfa"]) == ("gina", "true")
    assert failure.attributes["mfa"] == "false"
    # an IAM Identity Center session is the person; a CI role session is role/session
    assert sso_call.user_id == "hank@example.com"
    assert sso_call.api_path == "iam.amazonaws.com/CreateAccessKey"
    assert sso_call.session_id == "ASIAEXAMPLEHANK01" and sso_call.status_code == 200
    assert (denied.user_id, denied.status_code) == ("ci-deploy/gitlab-runner-42", 403)
    assert root.user_id == "root@111122223333"
    assert stats.skip_reasons == {
        "sign-in of a user name that does not exist (name hidden by AWS)": 1,
        "userIdentity.type AWSService is no person": 1,
    }
    assert stats.ignored == 1  # AwsServiceEvent
    # a trail file written on one line reads the same
    one_line = json.dumps(json.loads((FIXTURES / "cloudtrail.json").read_text())) + "\n"
    again = list(make_importer("cloudtrail").parse([one_line]))
    assert [e.event_id for e in again] == [e.event_id for e in events]


def test_winlogbeat_security_events():
    events, stats = run("winlog", "winlogbeat.ndjson")
    assert kinds(events) == [
        "login_success",
        "login_failure",
        "login_failure",
        "login_failure",
        "login_failure",
        "login_success",
        "logout",
    ]
    logon, bad_password, no_user, locked, lockout, explicit, logoff = events
    assert (logon.user_id, logon.source_ip, logon.device_id) == ("ivan", "10.20.30.40", "ivan-pc")
    assert logon.attributes["logon_type"] == "remote_interactive"
    assert logon.session_id == "DC01.corp.example.com/0x8dcdc" == logoff.session_id
    assert logoff.session_duration.ToTimedelta() == timedelta(hours=1)
    assert [e.attributes["reason"] for e in (bad_password, no_user, locked, lockout)] == [
        "bad_password",
        "no_such_user",
        "account_locked_out",
        "account_locked_out",
    ]
    assert lockout.attributes["windows_event"] == "4740"
    assert explicit.user_id == "adm-ivan" and explicit.attributes["subject_user"] == "ivan"
    assert stats.skip_reasons == {"machine account": 1, "system or anonymous logon": 2}
    assert [n for n, _ in stats.skip_samples] == [7, 8, 9]
    assert stats.ignored == 1  # 4672


def test_evtx_records_map_like_winlogbeat():
    """The records the evtx parser yields for an .evtx file (no .evtx file
    is in the repository: see the test below for real files)."""
    importer = make_importer("winlog")
    with (FIXTURES / "evtx-records.jsonl").open() as f:
        events = list(importer.parse_evtx_records(json.loads(line) for line in f))
    assert kinds(events) == ["login_failure", "login_success", "logout"]
    assert events[0].attributes["reason"] == "bad_password"
    assert events[0].attributes["logon_type"] == "remote_interactive"  # LogonType 10 as a number
    assert events[2].session_duration.ToTimedelta() == timedelta(minutes=30)
    assert importer.stats.ignored == 1


EVTX_SAMPLE = os.environ.get("UBA_EVTX_SAMPLE", "")


@pytest.mark.skipif(not EVTX_SAMPLE, reason="set UBA_EVTX_SAMPLE to a Security .evtx file")
def test_real_evtx_file():
    pytest.importorskip("evtx")
    importer = make_importer("winlog")
    events = list(importer.parse_evtx(EVTX_SAMPLE))
    assert importer.stats.lines > 0 and importer.stats.unparsed == 0
    assert len({e.event_id for e in events}) == len(events)


def test_rfc5424_and_bsd_syslog_lines():
    lines = [
        "<38>1 2026-10-11T22:14:15.003Z web1 sshd 1234 - - "
        "Accepted password for ann from 10.0.0.1 port 22 ssh2\n",
        '<38>1 2026-10-11T22:14:16Z web1 sshd 1235 ID47 [exampleSDID@32473 iut="3" a="b\\]"]'
        " Failed password for bob from 10.0.0.2 port 22 ssh2\n",
        "<38>1 2026-10-11T22:20:15.003Z web1 sshd 1234 - - "
        "pam_unix(sshd:session): session closed for user ann\n",
        "<38>Oct 11 22:30:00 web1 sshd[99]: "
        "Accepted publickey for carl from 10.0.0.3 port 22 ssh2\n",
        "Oct 11 22:31:00 web1 sshd[99]: Accepted publickey for dora from 10.0.0.4 port 22 ssh2\n",
        "<38>1 - web1 sshd 1 - - Accepted password for x from 10.0.0.5 port 2 ssh2\n",
        "<38>1 2026-10-11T22:14:15Z web1 cron 1 - - (root) CMD (true)\n",
    ]
    importer = make_importer("sshd", year=2026)
    events = list(importer.parse(lines))
    assert [(e.user_id, ev.type_name(e.type)) for e in events] == [
        ("ann", "login_success"),
        ("bob", "login_failure"),
        ("ann", "logout"),
        ("carl", "login_success"),
        ("dora", "login_success"),
    ]
    assert events[0].occurred_at.ToJsonString() == "2026-10-11T22:14:15.003Z"
    assert events[0].attributes["host"] == "web1" and events[0].attributes["pid"] == "1234"
    assert events[2].session_duration.ToTimedelta() == timedelta(minutes=6)
    assert importer.stats.ignored == 1
    assert importer.stats.samples[0][:2] == (6, "RFC 5424 line without a timestamp")


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("ocsf.jsonl", "ocsf"),
        ("ecs.ndjson", "ecs"),
        ("okta.json", "okta"),
        ("entra-signins.json", "entra"),
        ("cloudtrail.json", "cloudtrail"),
        ("winlogbeat.ndjson", "winlog"),
        ("evtx-records.jsonl", "winlog"),
    ],
)
def test_sniff_recognises_each_fixture(name, fmt):
    assert sniff((FIXTURES / name).read_text().splitlines(True)[:200]) == fmt


def test_sniff_syslog_csv_and_uba_records():
    assert sniff(["<34>1 2026-10-11T22:14:15.003Z host sshd 1234 ID47 - msg\n"]) == "sshd"
    assert sniff(["garbage\n", "Mar  1 10:00:00 web1 sshd[11]: Accepted\n"]) == "sshd"
    assert sniff(["event_id,user_id,type,occurred_at\n"]) == "csv"
    assert sniff(['{"user_id": "a", "type": "login_success", "occurred_at": 1}\n']) == "jsonl"
    assert sniff(["def f():\n", "    pass\n"]) is None


def test_json_reader_keeps_line_numbers_and_stops_at_broken_document():
    stats = ImportStats()
    text = '[\n {"a": 1},\n {"b": \n'
    assert list(read_records(io.StringIO(text), stats)) == [(2, {"a": 1}), (3, None)]
    assert stats.samples[0][0] == 3 and "rest of the file" in stats.samples[0][1]
    stats = ImportStats()
    records = list(read_records(io.StringIO('{"a": 1}\n\n[1]\n{"b": 2}\n'), stats))
    assert records == [(1, {"a": 1}), (3, None), (4, {"b": 2})]
    assert Counter(r for _, r, _ in stats.samples) == {"not a JSON object": 1}
