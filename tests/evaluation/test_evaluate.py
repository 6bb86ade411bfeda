"""`uba evaluate` end to end: a small scenario through a real throwaway
server, and the user's own events with a labels file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from uba.evaluation import generate
from uba.evaluation.attacks import BLATANT, REALISTIC

# Its subject depends on the analytics mode: both passes of make test run it.
pytestmark = pytest.mark.both_modes

# What the detectors catch in the small scenario below, in both modes:
# every class (new_country_and_device by its incident: its victim's baseline
# is not mature at this size, so each signal alone says LOW). Losing one
# fails the test.
CAUGHT = {
    "new_country_and_device",
    "account_takeover",
    "takeover_campaign",
    "session_hijack",
    "dormant_account_reuse",
    "privilege_misuse",
    "weekend_night_login",
    "low_and_slow_exfiltration",
    "credential_stuffing",
    "password_spraying_slow",
    "mfa_fatigue",
    "off_hours_login",
    "brute_force",
    "password_spraying",
    "impossible_travel",
    "api_rate_spike",
    "data_exfiltration",
    "error_rate_spike",
}


def uba(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UBA_")}
    return subprocess.run(
        [sys.executable, "-m", "uba", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def test_a_small_scenario_through_a_real_server_reports_every_class():
    run = uba(
        "evaluate", "--users", "30", "--days", "21", "--seed", "6", "--instances", "1", "--json"
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert (
        report["events"]["invalid"] == 0
        and report["events"]["accepted"] == report["events"]["sent"] > 10_000
    )
    attacks = {a["kind"]: a for a in report["attacks"]}
    assert set(attacks) == set(REALISTIC) | set(BLATANT)
    for a in attacks.values():
        assert {
            "caught",
            "best_severity",
            "alerts",
            "anomalies",
            "minutes_to_detect",
            "detectors",
        } <= set(a)
    caught = {k for k, a in attacks.items() if a["sendable"] and a["caught"] == a["sendable"]}
    assert CAUGHT <= caught, f"no longer caught: {CAUGHT - caught}"
    for kind in CAUGHT:
        # Within 30 minutes of the start; sustained volume by its third day.
        limit = 3 * 24 * 60 if kind == "low_and_slow_exfiltration" else 30
        assert (
            attacks[kind]["minutes_to_detect"] is not None
            and attacks[kind]["minutes_to_detect"] <= limit
        ), kind
        assert {attacks[kind]["best_severity"], attacks[kind]["best_incident_severity"]} & {
            "MEDIUM",
            "HIGH",
            "CRITICAL",
        }, kind
    mfa = attacks["mfa_fatigue"]
    assert report["setup"]["mfa_sendable"] == bool(mfa["sendable"])
    if not report["setup"]["mfa_sendable"]:
        assert (
            "mfa_fatigue" in report["attack_classes_not_sendable"]
            and report["events"]["not_sendable_mfa"] > 0
        )
    confounders = {c["kind"] for c in report["confounders"]}
    assert {
        "on_call",
        "vpn_change",
        "laptop_refresh",
        "feature_rollout",
        "dst_change",
    } <= confounders
    assert 0 <= report["false_medium_plus_user_day_percent"] <= 100
    assert (
        report["attack_free_user_days"] > 0 and report["alerts"] >= report["alerts_medium_plus"] > 0
    )
    assert report["alerts_per_day"] == pytest.approx(report["alerts"] / 21, abs=0.1)
    # The load by day, beside the days the attacks ran.
    daily = report["daily"]
    assert len(daily) == 21 and 0 < sum(d["alerts"] for d in daily) <= report["alerts"]
    assert {k for d in daily for k in d["attacks"]} == CAUGHT
    # The story layer: each attack is one incident of MEDIUM+ (a campaign
    # with its victims included; sustained volume, judged once a day, one
    # per day it goes on), and few incidents outside the attacks.
    for kind in CAUGHT:
        assert attacks[kind]["best_incident_severity"] in ("MEDIUM", "HIGH", "CRITICAL"), kind
        limit = 5 if kind == "low_and_slow_exfiltration" else 2
        assert 1 <= attacks[kind]["incidents_per_attack_max"] <= limit, (kind, attacks[kind])
    assert report["unattributed_incidents_per_day_per_100_users"] <= 2.0, report


def _record(e) -> dict:
    out = {
        "event_id": e.event_id,
        "user_id": e.user_id,
        "type": e.type.value,
        "occurred_at": e.occurred_at.isoformat(),
    }
    for name in (
        "source_ip",
        "device_id",
        "user_agent",
        "session_id",
        "country_code",
        "city",
        "timezone",
        "peer_group",
        "api_method",
        "api_path",
    ):
        if getattr(e, name):
            out[name] = getattr(e, name)
    if e.latitude is not None:
        out["latitude"], out["longitude"] = e.latitude, e.longitude
    if e.status_code:
        out["status_code"], out["bytes_transferred"] = e.status_code, e.bytes_transferred
    if e.session_duration:
        out["session_duration_seconds"] = e.session_duration.total_seconds()
    return out


@pytest.fixture(scope="module")
def own_events(tmp_path_factory) -> tuple[Path, object]:
    sc = generate(users=12, days=14, seed=4)
    path = tmp_path_factory.mktemp("own") / "events.jsonl"
    path.write_text("".join(json.dumps(_record(e)) + "\n" for e in sc.events))
    return path, sc


def test_own_events_and_labels_are_scored(own_events, tmp_path):
    path, sc = own_events
    brute = next(a for a in sc.attacks if a.kind == "brute_force")
    quiet = sc.people[0].user_id
    labels = tmp_path / "labels.jsonl"
    labels.write_text(
        json.dumps(
            {
                "kind": "brute_force",
                "entity": brute.users[0],
                "start": brute.start.isoformat(),
                "end": brute.end.isoformat(),
            }
        )
        + "\n\n"
        + json.dumps(
            {
                "kind": "holiday",
                "category": "benign",
                "entity": [quiet],
                "start": sc.events[0].occurred_at.isoformat(),
                "end": (sc.start + timedelta(days=2)).isoformat(),
            }
        )
        + "\n"
    )
    run = uba("evaluate", "--events", str(path), "--labels", str(labels), "--json")
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    mfa = sum(1 for e in sc.events if e.type.value.startswith("mfa_"))
    held_back = 0 if report["setup"]["mfa_sendable"] else mfa
    assert report["events"]["not_sendable_mfa"] == held_back
    assert report["events"]["accepted"] == len(sc.events) - held_back
    (row,) = report["attacks"]
    assert (
        row["kind"] == "brute_force"
        and row["caught"] == 1
        and row["best_severity"] in ("HIGH", "CRITICAL")
    )
    assert [c["kind"] for c in report["confounders"]] == ["holiday"]
    text = uba("evaluate", "--events", str(path), "--labels", str(labels))
    assert (
        text.returncode == 0
        and "brute_force" in text.stdout
        and "false MEDIUM+ user-days" in text.stdout
    )


def test_bad_labels_are_refused_line_by_line_and_nothing_is_sent(own_events, tmp_path):
    path, sc = own_events
    user = sc.people[0].user_id
    first = sc.events[0].occurred_at
    ok = {
        "kind": "x",
        "entity": user,
        "start": first.isoformat(),
        "end": (first + timedelta(hours=1)).isoformat(),
    }
    lines = [
        ok,
        {**ok, "entity": "nobody-here"},
        {**ok, "start": (first + timedelta(hours=2)).isoformat()},
        {**ok, "end": (sc.end + timedelta(days=30)).isoformat()},
        {**ok, "kind": ""},
        "not json",
    ]
    labels = tmp_path / "labels.jsonl"
    labels.write_text("".join((json.dumps(x) if isinstance(x, dict) else x) + "\n" for x in lines))
    run = uba("evaluate", "--events", str(path), "--labels", str(labels), timeout=120)
    assert run.returncode == 2 and run.stdout == ""
    err = run.stderr
    assert "nothing was sent" in err and "starting a throwaway server" not in err
    assert "line 1:" not in err
    assert "line 2: entity: 'nobody-here' is no user or source address" in err
    assert "line 3: end: before start" in err
    assert "line 4: end:" in err and "outside the events' range" in err
    assert "line 5: kind: required" in err
    assert "line 6: not JSON" in err


def test_mfa_events_are_held_back_exactly_when_the_contract_lacks_their_types():
    from uba.commands.messages import mfa_sendable, to_messages
    from uba.v1 import events_pb2

    has_types = "ACTIVITY_TYPE_MFA_CHALLENGE" in events_pb2.ActivityType.keys()
    assert mfa_sendable() is has_types
    sc = generate(users=3, days=3, seed=2)
    mfa = sum(1 for e in sc.events if e.type.value.startswith("mfa_"))
    assert mfa > 0
    sent = list(to_messages(sc.events, skip_mfa=True))
    assert len(sent) == len(sc.events) - mfa


def test_a_saved_scenario_is_accepted_as_events_and_labels(tmp_path):
    saved = uba(
        "evaluate",
        "--users",
        "8",
        "--days",
        "10",
        "--seed",
        "9",
        "--instances",
        "1",
        "--save",
        str(tmp_path),
    )
    assert saved.returncode == 0, saved.stderr
    labels = [json.loads(line) for line in (tmp_path / "labels.jsonl").open()]
    sc = generate(users=8, days=10, seed=9)
    assert {lb["kind"] for lb in labels if lb["category"] == "attack"} == {
        a.kind for a in sc.attacks
    }
    run = uba(
        "evaluate",
        "--events",
        str(tmp_path / "events.jsonl"),
        "--labels",
        str(tmp_path / "labels.jsonl"),
        "--json",
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert {a["kind"] for a in report["attacks"]} == {a.kind for a in sc.attacks}
    mfa = next(a for a in report["attacks"] if a["kind"] == "mfa_fatigue")
    assert mfa["sendable"] == (1 if report["setup"]["mfa_sendable"] else 0)


def test_the_throwaway_server_runs_on_the_given_postgresql_database(pg_available):
    from support import postgres

    url = postgres.create_database()
    try:
        run = uba(
            "evaluate",
            "--users",
            "10",
            "--days",
            "10",
            "--seed",
            "2",
            "--instances",
            "1",
            "--database-url",
            url,
            "--json",
        )
        assert run.returncode == 0, run.stderr
        report = json.loads(run.stdout)
        assert report["setup"]["storage"] == "postgresql" and report["events"]["invalid"] == 0
        assert report["events"]["accepted"] == report["events"]["sent"] > 1000
        assert {a["kind"] for a in report["attacks"]} >= set(BLATANT)
    finally:
        postgres.drop_database(url)
