"""Attribution and scoring of findings against labels: pure functions on
hand-made inputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from uba.evaluation.score import BENIGN, Finding, Label, matches, score

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 2, 10, 0, tzinfo=UTC)
START, END = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 11, tzinfo=UTC)  # ten days
USERS = [f"u{i}" for i in range(10)]
LOW, MEDIUM, HIGH = 1, 2, 3


def anomaly(id, user, at, severity=MEDIUM, events=(), detector="d"):
    return Finding("anomaly", id, user, detector, severity, at, None, tuple(events))


def alert(id, user, at, severity=MEDIUM, until=None, anomalies=()):
    return Finding("alert", id, user, "d", severity, at, until or at, (), tuple(anomalies))


takeover = Label(
    "account_takeover", T0, T0 + timedelta(minutes=40), users=("u1",), event_ids=("e1", "e2")
)
spray = Label(
    "password_spraying_slow",
    T0,
    T0 + timedelta(hours=2),
    users=("u2", "u3"),
    sources=("198.51.100.9",),
    event_ids=("s1", "s2"),
)
trip = Label(
    "business_trip", T0 - timedelta(days=1), T0 + timedelta(days=2), BENIGN, users=("u1", "u4")
)


@pytest.mark.parametrize(
    "finding, label, expected",
    [
        (anomaly("a", "u1", T0 + timedelta(minutes=10)), takeover, True),  # user and time
        (anomaly("a", "u1", T0 - timedelta(minutes=29)), takeover, True),  # within the slack
        (anomaly("a", "u1", T0 + timedelta(minutes=71)), takeover, False),  # after end + slack
        (anomaly("a", "u9", T0 + timedelta(minutes=10)), takeover, False),  # another user
        (
            anomaly("a", "u9", T0 + timedelta(days=3), events=("e2",)),
            takeover,
            True,
        ),  # its evidence
        (
            anomaly("a", "u9", T0 + timedelta(minutes=5), events=("x1",)),
            spray,
            True,
        ),  # from the attacking address
        (
            anomaly("a", "u9", T0 + timedelta(hours=5), events=("x1",)),
            spray,
            False,
        ),  # that address, hours later
        (
            anomaly("a", "u2", T0 + timedelta(minutes=5), events=("x2",)),
            spray,
            False,
        ),  # a sprayed account, own address
        (
            alert("a", "u1", T0 - timedelta(hours=3), until=T0 + timedelta(minutes=5)),
            takeover,
            True,
        ),  # spans it
    ],
)
def test_a_finding_belongs_to_a_label_by_entity_and_time_or_evidence(finding, label, expected):
    sources = {"x1": "198.51.100.9", "x2": "10.1.1.1"}
    assert matches(finding, label, sources, timedelta(minutes=30)) is expected


def test_caught_best_severity_and_minutes_to_detect():
    anomalies = [
        anomaly("a1", "u1", T0 + timedelta(minutes=12), LOW),
        anomaly("a2", "u1", T0 + timedelta(minutes=25), HIGH),
        anomaly("a3", "u2", T0 + timedelta(minutes=3), LOW, events=("s1",)),
    ]
    alerts = [alert("al1", "u1", T0 + timedelta(minutes=12), HIGH, anomalies=("a1", "a2"))]
    report = score([takeover, spray], anomalies, alerts, USERS, START, END)
    rows = {r["kind"]: r for r in report.attack_rows()}
    ato, sp = rows["account_takeover"], rows["password_spraying_slow"]
    assert (ato["caught"], ato["best_severity"], ato["minutes_to_detect"]) == (1, "HIGH", 12.0)
    assert (
        ato["alerts"],
        ato["alerts_medium_plus"],
        ato["anomalies"],
        ato["anomalies_medium_plus"],
    ) == (1, 1, 2, 1)
    assert ato["anomalies_medium_plus_on_its_events"] == 0  # attributed by user and time only
    assert (sp["caught"], sp["best_severity"], sp["minutes_to_detect"]) == (0, "LOW", None)
    assert report.to_dict()["attack_classes_caught"] == 1


def test_an_alert_belongs_to_its_anomalies_attack_even_outside_the_window():
    late = T0 + timedelta(days=2)
    anomalies = [anomaly("a1", "u7", late, events=("e1",))]
    alerts = [alert("al1", "u7", late, anomalies=("a1",))]
    report = score([takeover], anomalies, alerts, USERS, START, END)
    assert [f.id for f in report.attacks[0].alerts] == ["al1"]
    assert report.attack_rows()[0]["anomalies_medium_plus_on_its_events"] == 1
    assert report.false_user_days == 0 and report.unattributed_medium_plus_alerts == 0


def test_attacks_take_a_finding_before_confounders_and_false_user_days_are_counted():
    anomalies = [
        anomaly("a1", "u1", T0 + timedelta(minutes=5), HIGH),  # the takeover, also inside the trip
        anomaly("a2", "u4", T0 + timedelta(hours=5), MEDIUM),  # the trip's false alarm
        anomaly("a3", "u5", T0 + timedelta(days=4), MEDIUM),  # a false alarm of nothing labelled
        anomaly("a4", "u5", T0 + timedelta(days=4, hours=1), HIGH),  # same user-day
        anomaly("a5", "u6", T0 + timedelta(days=5), LOW),  # LOW does not count
        anomaly(
            "a6", "u1", T0 + timedelta(hours=3), MEDIUM
        ),  # u1's attack day: not counted as false
    ]
    alerts = [
        alert("al2", "u4", T0 + timedelta(hours=5), MEDIUM, anomalies=("a2",)),
        alert("al3", "u5", T0 + timedelta(days=4), HIGH, anomalies=("a3", "a4")),
    ]
    report = score([takeover, trip], anomalies, alerts, USERS, START, END)
    assert [f.id for f in report.attacks[0].anomalies] == ["a1"]
    conf = {r["kind"]: r for r in report.confounder_rows()}["business_trip"]
    assert (conf["alerts_medium_plus"], conf["anomalies_medium_plus"], conf["users_alerted"]) == (
        1,
        2,
        1,
    )
    # 10 users x 10 days, minus u1's attack day; false: u4 on day 2 (the trip), u1's a6 (trip, same
    # day as its attack: excluded), u5 on day 6.
    assert report.user_days == 100 and report.attack_free_user_days == 99
    assert report.false_user_days == 2
    d = report.to_dict()
    assert d["false_medium_plus_user_day_percent"] == pytest.approx(100 * 2 / 99, abs=0.01)
    assert (
        d["alerts_per_day"] == 0.2
        and d["alerts_medium_plus"] == 2
        and d["unattributed_medium_plus_alerts"] == 2
    )


def test_an_attack_that_could_not_be_sent_is_reported_not_scored():
    from dataclasses import replace

    mfa = Label("mfa_fatigue", T0, T0 + timedelta(minutes=30), users=("u8",), sendable=False)
    report = score([takeover, mfa], [anomaly("a1", "u1", T0, HIGH)], [], USERS, START, END)
    d = report.to_dict()
    assert d["attack_classes_sendable"] == 1 and d["attack_classes_not_sendable"] == ["mfa_fatigue"]
    assert d["attack_classes_caught"] == 1
    assert replace(mfa, sendable=True).sendable


def incident(id, at, severity=HIGH, user="", source="", alerts=(), anomalies=(), until=None):
    return Finding(
        "incident",
        id,
        user,
        "incident",
        severity,
        at,
        until or at,
        (),
        tuple(anomalies),
        tuple(alerts),
        source,
    )


def test_incidents_count_for_the_attack_their_members_belong_to_and_load_the_rest():
    """An incident belongs where its alerts or anomalies went (even when its
    own entity and time would not say so), a source incident to the spray
    from its address; what matches no attack is the analyst's extra load,
    and a confounder's MEDIUM+ incident is counted against it."""
    later = T0 + timedelta(days=4)
    report = score(
        [takeover, spray, trip],
        anomalies=[anomaly("an1", "u1", T0 + timedelta(minutes=5), events=("e1",))],
        alerts=[alert("al1", "u1", T0 + timedelta(minutes=5), anomalies=("an1",))],
        incidents=[
            # By its alert, although it opened a day before the takeover.
            incident("i1", T0 - timedelta(days=1), user="u7", alerts=("al1",)),
            # By its anomaly.
            incident("i2", T0 + timedelta(days=5), user="u8", anomalies=("an1",)),
            # The spraying address, during the spray.
            incident("i3", T0 + timedelta(minutes=30), source="198.51.100.9"),
            # The same address long after: nobody's attack.
            incident("i4", later, source="198.51.100.9", severity=LOW),
            # A traveller during the trip, outside the takeover's window.
            incident("i5", T0 - timedelta(hours=12), user="u4", severity=MEDIUM),
        ],
        users=USERS,
        start=START,
        end=END,
    )
    by_kind = {s.label.kind: s for s in report.attacks + report.confounders}
    assert [f.id for f in by_kind["account_takeover"].incidents] == ["i1", "i2"]
    assert [f.id for f in by_kind["password_spraying_slow"].incidents] == ["i3"]
    assert [f.id for f in by_kind["business_trip"].incidents] == ["i5"]
    row = {r["kind"]: r for r in report.attack_rows()}["account_takeover"]
    assert (row["incidents"], row["incidents_per_attack_max"], row["one_incident"]) == (2, 2, 0)
    assert row["best_incident_severity"] == "HIGH"
    trip_row = {r["kind"]: r for r in report.confounder_rows()}["business_trip"]
    assert trip_row["incidents_medium_plus"] == 1
    summary = report.to_dict()
    assert (summary["incidents"], summary["unattributed_incidents"]) == (5, 2)
    assert summary["unattributed_incidents_medium_plus"] == 1  # i5; i4 is LOW
    # 2 incidents outside attacks over 10 days for 10 users: 2 a day per 100 users.
    assert summary["unattributed_incidents_per_day_per_100_users"] == 2.0


def test_an_incident_of_weak_signals_catches_an_attack_as_of_its_latest_member():
    """Two LOW alerts are no MEDIUM+ finding, but the MEDIUM incident they
    make is what the analyst sees: the attack is caught, at the time of the
    incident's latest member (when it had reached MEDIUM at the latest)."""
    weak = [
        alert("l1", "u1", T0 + timedelta(minutes=2), severity=LOW),
        alert("l2", "u1", T0 + timedelta(minutes=9), severity=LOW),
    ]
    both = incident(
        "i1",
        T0 + timedelta(minutes=2),
        MEDIUM,
        user="u1",
        alerts=("l1", "l2"),
        until=T0 + timedelta(minutes=9),
    )
    report = score([takeover], [], weak, USERS, START, END)
    assert not report.attacks[0].caught
    report = score([takeover], [], weak, USERS, START, END, incidents=[both])
    (row,) = report.attack_rows()
    assert row["caught"] == 1 and row["minutes_to_detect"] == 9.0
    assert row["best_severity"] == "LOW" and row["best_incident_severity"] == "MEDIUM"


def test_the_load_by_day_counts_alerts_and_incidents_beside_the_attack_days():
    report = score(
        [takeover, trip],
        [],
        [
            alert("a1", "u1", T0, severity=HIGH),
            alert("a2", "u5", T0 + timedelta(days=1), severity=LOW),
            alert("a3", "u5", START - timedelta(days=1)),  # before the period: not a day of it
        ],
        USERS,
        START,
        END,
        incidents=[incident("i1", T0 + timedelta(days=1), user="u5")],
    )
    daily = {d["date"]: d for d in report.to_dict()["daily"]}
    assert len(daily) == 10 and min(daily) == START.date().isoformat()
    first, second = daily[T0.date().isoformat()], daily[(T0 + timedelta(days=1)).date().isoformat()]
    assert (first["alerts"], first["alerts_medium_plus"], first["incidents"]) == (1, 1, 0)
    assert (second["alerts"], second["alerts_medium_plus"], second["incidents"]) == (1, 0, 1)
    assert first["attacks"] == ["account_takeover"] and second["attacks"] == []  # trips are benign
    assert sum(d["alerts"] for d in daily.values()) == 2
