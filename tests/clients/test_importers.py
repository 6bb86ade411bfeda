"""Importers on real logs (loghub) and on a small corpus of real-format
lines, malformed ones included. No server needed."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from uba.importers import make_importer
from uba.importers.records import parse_mapping
from uba.v1 import events_pb2

pytestmark = pytest.mark.unit

LOGHUB = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "loghub"
UTC = UTC


def loghub(name: str) -> Path:
    path = LOGHUB / name
    if not path.is_file():
        pytest.skip(
            f"{path} missing: the loghub sample logs live outside the repository, at "
            "../shared/data/loghub"
        )
    return path


def parse(fmt: str, lines, **options):
    importer = make_importer(fmt, **options)
    events = list(importer.parse(lines))
    return events, importer.stats


def kinds(events) -> Counter:
    return Counter(
        events_pb2.ActivityType.Name(e.type).removeprefix("ACTIVITY_TYPE_").lower() for e in events
    )


def at(e) -> datetime:
    return e.occurred_at.ToDatetime(UTC)


# -- loghub -------------------------------------------------------------------


def test_openssh_log_counts_each_attempt_once():
    with loghub("OpenSSH_2k.log").open(encoding="utf-8") as f:
        events, stats = parse("sshd", f, year=2024)
    # 522 "Failed ..." lines + 2 x "message repeated 5 times" + one PAM
    # failure whose Failed line lies beyond the file's last line.
    assert kinds(events) == {"login_failure": 533, "login_success": 1, "logout": 1}
    assert stats.lines == 2000 and stats.unparsed == 0 and stats.skipped == 0
    # 113 "Invalid user" + 494 PAM lines, all but the last folded into the
    # Failed line of the same attempt.
    assert stats.merged == 606
    assert len({e.event_id for e in events}) == len(events)
    login = next(e for e in events if e.type == events_pb2.ACTIVITY_TYPE_LOGIN_SUCCESS)
    logout = next(e for e in events if e.type == events_pb2.ACTIVITY_TYPE_LOGOUT)
    assert (login.user_id, login.source_ip, login.attributes["auth_method"]) == (
        "fztu",
        "119.137.62.142",
        "password",
    )
    assert logout.user_id == "fztu" and logout.session_id == login.session_id
    assert logout.session_duration.ToTimedelta() == timedelta(minutes=12, seconds=46)
    assert at(events[0]) == datetime(2024, 12, 10, 6, 55, 48, tzinfo=UTC)
    first = events[0]
    assert (first.user_id, first.source_ip, first.attributes["invalid_user"]) == (
        "webmaster",
        "173.234.31.186",
        "true",
    )


def test_linux_syslog_keeps_sshd_and_skips_failures_without_user():
    with loghub("Linux_2k.log").open(encoding="utf-8") as f:
        events, stats = parse("sshd", f, year=2005, timezone="Europe/Berlin")
    assert kinds(events) == {"login_failure": 372, "login_success": 36, "logout": 36}
    assert stats.skipped == 117 and stats.unparsed == 0
    failure = next(e for e in events if e.type == events_pb2.ACTIVITY_TYPE_LOGIN_FAILURE)
    # rhost is a host name there: kept as attribute, no source_ip.
    assert (
        failure.attributes["rhost"] == "220-135-151-1.hinet-ip.hinet.net"
        and failure.source_ip == ""
    )
    assert failure.user_id == "root"
    # Jun 15 02:04:59 in Berlin summer time is 00:04:59 UTC.
    assert at(failure) == datetime(2005, 6, 15, 0, 4, 59, tzinfo=UTC)


def test_reimport_gives_the_same_ids_and_is_fast():
    path = loghub("OpenSSH_2k.log")
    with path.open(encoding="utf-8") as f:
        first, _ = parse("sshd", f, year=2024, source_name="a.log")
    with path.open(encoding="utf-8") as f:
        again, _ = parse("sshd", f, year=2024, source_name="renamed.log")
    assert [e.event_id for e in first] == [e.event_id for e in again]
    with path.open(encoding="utf-8") as f:
        other_year, _ = parse("sshd", f, year=2023)
    assert not {e.event_id for e in first} & {e.event_id for e in other_year}


# -- real-format corpus, malformed lines included ------------------------------

CORPUS = """\
Dec 31 23:59:50 gw sshd[100]: Invalid user oracle from 203.0.113.5 port 40000
Dec 31 23:59:50 gw sshd[100]: input_userauth_request: invalid user oracle [preauth]
Dec 31 23:59:50 gw sshd[100]: pam_unix(sshd:auth): check pass; user unknown
Dec 31 23:59:50 gw sshd[100]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=203.0.113.5
Dec 31 23:59:52 gw sshd[100]: Failed password for invalid user oracle from 203.0.113.5 port 40000 ssh2
Dec 31 23:59:53 gw sshd[100]: Failed password for invalid user oracle from 203.0.113.5 port 40000 ssh2
Dec 31 23:59:54 gw sshd[100]: Connection closed by 203.0.113.5 port 40000 [preauth]
Jan  1 00:00:01 gw sshd[101]: Invalid user admin from 203.0.113.6
Jan  1 00:00:02 gw sshd[101]: Received disconnect from 203.0.113.6: 11: Bye Bye [preauth]
Jan  1 00:00:03 gw sshd[102]: pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=dsl.example.net  user=root
Jan  1 00:00:05 gw sshd[102]: Failed password for root from 198.51.100.9 port 2222 ssh2
Jan  1 00:00:20 gw sshd[102]: message repeated 3 times: [ Failed password for root from 198.51.100.9 port 2222 ssh2]
Jan  1 00:00:20 gw sshd[102]: PAM 3 more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= rhost=dsl.example.net  user=root
Jan  1 08:00:00 gw sshd[200]: Accepted publickey for alice from 2001:db8::7 port 51000 ssh2: ED25519 SHA256:abc
Jan  1 08:00:00 gw sshd[200]: pam_unix(sshd:session): session opened for user alice(uid=1000) by (uid=0)
Jan  1 09:30:00 gw sshd[200]: Received disconnect from 2001:db8::7 port 51000:11: disconnected by user
Jan  1 09:30:00 gw sshd[200]: Disconnected from user alice 2001:db8::7 port 51000
Jan  1 09:30:00 gw sshd[200]: pam_unix(sshd:session): session closed for user alice
Jan  1 10:00:00 gw sshd(pam_unix)[300]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=192.0.2.44  user=bob
Jan  1 10:00:01 gw sshd(pam_unix)[301]: authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=192.0.2.44
Jan  1 10:00:02 gw sshd(pam_unix)[302]: session opened for user carol by (uid=0)
Jan  1 10:05:02 gw sshd(pam_unix)[302]: session closed for user carol
Jan  1 10:06:00 gw su(pam_unix)[400]: session opened for user news by (uid=0)
Jan  1 10:06:00 gw CRON[401]: pam_unix(cron:session): session closed for user root
this is not a syslog line at all
Feb 30 10:00:00 gw sshd[500]: Accepted password for dave from 10.0.0.1 port 1 ssh2
Jan  1 10:07:00 gw sshd[501]: Frobnicated the widget for eve

2026-01-01T10:08:00.123+01:00 gw sshd[600]: Failed password for frank from 10.0.0.2 port 3 ssh2
"""  # noqa: E501 (log lines as sshd writes them, kept whole)


def corpus_events():
    return parse("sshd", CORPUS.splitlines(keepends=True), year=2025, source="gw-sshd")


def test_corpus_counts():
    events, stats = corpus_events()
    assert kinds(events) == {"login_failure": 9, "login_success": 2, "logout": 2}
    assert stats.lines == 29
    assert stats.skipped == 1  # the PAM failure of pid 301 names no user
    assert stats.unparsed == 3
    assert [(n, r) for n, r, _ in stats.samples] == [
        (25, "not a syslog line"),
        (26, "bad timestamp: day is out of range for month"),
        (27, "sshd message not understood"),
    ]
    assert all(e.source == "gw-sshd" and e.attributes["host"] == "gw" for e in events)


def test_corpus_invalid_user_attempts_count_once_each():
    events, _ = corpus_events()
    oracle = [e for e in events if e.user_id == "oracle"]
    # "Invalid user" + PAM + first Failed are one attempt; the second Failed another.
    assert len(oracle) == 2
    assert [at(e).second for e in oracle] == [52, 53]
    assert all(
        e.attributes["invalid_user"] == "true" and e.source_ip == "203.0.113.5" for e in oracle
    )
    # An "Invalid user" the scanner never followed with a password still counts.
    (admin,) = [e for e in events if e.user_id == "admin"]
    assert admin.type == events_pb2.ACTIVITY_TYPE_LOGIN_FAILURE and at(admin).second == 1


def test_corpus_year_rolls_over_and_repeats_expand():
    events, _ = corpus_events()
    oracle = next(e for e in events if e.user_id == "oracle")
    assert at(oracle).year == 2025 and at(oracle).month == 12
    root = [e for e in events if e.user_id == "root"]
    assert len(root) == 4  # 1 Failed + "repeated 3 times"; PAM's line and its "3 more" add none
    assert all(at(e).year == 2026 for e in root)
    assert root[0].attributes["rhost"] == "dsl.example.net" and root[0].source_ip == "198.51.100.9"
    assert len({e.event_id for e in root}) == 4


def test_corpus_sessions_end_once_with_duration():
    events, _ = corpus_events()
    alice = [e for e in events if e.user_id == "alice"]
    assert [e.type for e in alice] == [
        events_pb2.ACTIVITY_TYPE_LOGIN_SUCCESS,
        events_pb2.ACTIVITY_TYPE_LOGOUT,
    ]
    assert alice[0].source_ip == "2001:db8::7" and alice[0].attributes["auth_method"] == "publickey"
    assert alice[1].session_duration.ToTimedelta() == timedelta(hours=1, minutes=30)
    carol = [e for e in events if e.user_id == "carol"]
    assert [e.type for e in carol] == [
        events_pb2.ACTIVITY_TYPE_LOGIN_SUCCESS,
        events_pb2.ACTIVITY_TYPE_LOGOUT,
    ]
    assert carol[1].session_duration.ToTimedelta() == timedelta(minutes=5)


def test_corpus_old_pam_format_and_iso_stamps():
    events, _ = corpus_events()
    (bob,) = [e for e in events if e.user_id == "bob"]
    assert bob.source_ip == "192.0.2.44" and bob.attributes["pid"] == "300"
    (frank,) = [e for e in events if e.user_id == "frank"]
    assert at(frank) == datetime(2026, 1, 1, 9, 8, 0, 123000, tzinfo=UTC)


def test_identical_lines_get_distinct_ids():
    line = "Mar  3 10:00:00 gw sshd[7]: Failed password for root from 10.0.0.9 port 1 ssh2\n"
    events, _ = parse("sshd", [line, line], year=2025)
    assert len(events) == 2 and events[0].event_id != events[1].event_id
    again, _ = parse("sshd", [line, line], year=2025)
    assert [e.event_id for e in events] == [e.event_id for e in again]


def test_default_year_never_puts_lines_in_the_future():
    now = datetime.now(UTC)
    tomorrow = now + timedelta(days=2)
    line = (
        f"{tomorrow:%b} {tomorrow.day:>2} 10:00:00 gw sshd[7]: "
        "Failed password for root from 10.0.0.9 port 1 ssh2"
    )
    (event,), _ = parse("sshd", [line])
    assert at(event) <= now


# -- JSON Lines and CSV ---------------------------------------------------------


def test_jsonl_with_mapping_and_bad_lines():
    lines = [
        json.dumps(
            {
                "user": "bob",
                "type": "LOGIN_SUCCESS",
                "ts": "2026-01-05T08:00:00+01:00",
                "source_ip": "10.0.0.1",
                "dept": "sales",
            }
        ),
        "",
        "{not json",
        json.dumps({"user": "bob", "type": "teleport", "ts": "2026-01-05T08:00:00Z"}),
        json.dumps(
            {
                "user": "bob",
                "type": "api_call",
                "ts": 1767600000,
                "status_code": "404",
                "bytes_transferred": 10,
                "attributes": {"trace": "x"},
                "event_id": "given-1",
            }
        ),
        json.dumps(["an", "array"]),
    ]
    events, stats = parse(
        "jsonl", lines, mapping=parse_mapping(["ts=occurred_at,user=user_id"]), source="hr"
    )
    assert [e.user_id for e in events] == ["bob", "bob"]
    assert at(events[0]) == datetime(2026, 1, 5, 7, 0, tzinfo=UTC)
    assert events[0].attributes == {"dept": "sales"} and events[0].source == "hr"
    assert events[0].event_id.startswith("rec-")
    assert (
        events[1].event_id == "given-1"
        and events[1].status_code == 404
        and events[1].attributes["trace"] == "x"
    )
    assert stats.unparsed == 3 and stats.ignored == 1
    assert [r.split(":")[0] for _, r, _ in stats.samples] == [
        "not JSON",
        "type",
        "not a JSON object",
    ]
    again, _ = parse("jsonl", lines, mapping={"ts": "occurred_at", "user": "user_id"}, source="hr")
    assert [e.event_id for e in again] == [e.event_id for e in events]


def test_csv_reads_export_columns_and_undoes_formula_guard():
    lines = [
        "event_id,user_id,type,occurred_at,received_at,source_ip,latitude,longitude,"
        "session_duration_seconds,attributes\r\n",
        "e1,'-bob,logout,2026-01-05T08:00:00Z,2026-01-05T08:00:01Z,10.0.0.1,-33.87,151.21,90.5,"
        '"{""k"": ""v""}"\r\n',
        "e2,ann,login_success,not a time,,,,,,\r\n",
        "e3,ann,login_success,2026-01-05T09:00:00Z,,,,,,,extra\r\n",
    ]
    events, stats = parse("csv", lines)
    (e,) = events
    assert (e.event_id, e.user_id, e.source_ip) == ("e1", "-bob", "10.0.0.1")
    assert (e.latitude, e.longitude) == (-33.87, 151.21)
    assert e.session_duration.ToTimedelta() == timedelta(seconds=90.5)
    assert dict(e.attributes) == {"k": "v"} and not e.HasField("received_at")
    assert stats.unparsed == 2
    assert stats.samples[0][1].startswith("occurred_at:")


def test_bad_mapping_is_refused():
    with pytest.raises(ValueError):
        parse_mapping(["user"])
