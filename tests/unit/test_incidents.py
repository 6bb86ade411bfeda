"""Incidents as pure functions: correlation by session, time window and
source address; the noisy-OR score; the workflow; the ATT&CK table."""

from __future__ import annotations

from copy import deepcopy
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import count

import pytest

from uba.detectors.registry import default_registry
from uba.domain import attack
from uba.domain import incidents as lifecycle
from uba.domain.alerts import Resolution
from uba.domain.anomalies import Severity
from uba.domain.errors import FailedPrecondition, InvalidArgument
from uba.domain.incidents import EntityKind, Incident, IncidentPolicy, IncidentStatus, Member
from uba.domain.risk import RiskAccumulator, RiskPolicy

T0 = datetime(2026, 11, 24, 3, 12, tzinfo=UTC)
POLICY = IncidentPolicy()
_ids = count()


def member(
    detector: str,
    severity: Severity = Severity.MEDIUM,
    *,
    user: str = "alice",
    at: datetime = T0,
    session: str = "s1",
    ip: str = "203.0.113.7",
    alert: str | None = None,
    echoes: tuple[str, ...] = (),
) -> Member:
    mapping = attack.attack_for(detector)
    return Member(
        anomaly_id=f"an{next(_ids)}",
        alert_id=alert or f"al-{user}-{detector}",
        user_id=user,
        detector=detector,
        severity=severity,
        occurred_at=at,
        title=detector.replace("_", " "),
        session_id=session,
        source_ip=ip,
        tactics=mapping.tactics,
        techniques=mapping.techniques,
        echoes=echoes,
    )


def correlate(members: list[Member], pending: list[Member] | None = None) -> list[Incident]:
    """Feeds members as the writer does: candidates are the open campaigns,
    then the user's open incidents, newest first; a member that opens no
    incident waits in `pending` (its user's, or the campaigns')."""
    incidents: list[Incident] = []
    pending = [] if pending is None else pending
    for m in members:
        campaigns = [i for i in reversed(incidents) if i.entity_kind is EntityKind.SOURCE_IP]
        own = [
            i
            for i in reversed(incidents)
            if (i.entity_kind, i.entity_id) == (EntityKind.USER, m.user_id)
        ]
        population = POLICY.is_population(m)
        waiting = [
            p
            for p in pending
            if POLICY.is_population(p) == population and (population or p.user_id == m.user_id)
        ]
        incident, added = POLICY.correlate(
            m, campaigns if population else campaigns + own, T0, waiting
        )
        if incident is None:
            pending.append(m)
            continue
        for earlier in added[:-1]:
            pending.remove(earlier)
        if added:
            incidents.append(incident)
    return incidents


def test_several_weak_signals_in_one_session_make_one_high_incident():
    (incident,) = correlate(
        [
            member("new_country"),
            member("new_device"),
            member("login_time", Severity.LOW),
            member("new_ip", Severity.LOW),
        ]
    )
    assert incident.severity >= Severity.HIGH
    assert all(s.severity <= Severity.MEDIUM for s in incident.signals)
    assert len(incident.signals) == 4 and incident.anomaly_count == 4
    assert 60 <= incident.score < 100
    assert incident.tactics == ["TA0001", "TA0003"] and incident.techniques == ["T1078"]
    assert "alice" in incident.title and "one session" in incident.title


def test_repeats_of_one_signal_do_not_escalate():
    one = correlate([member("failed_login_burst", Severity.MEDIUM)])[0]
    (many,) = correlate(
        [
            member("failed_login_burst", Severity.MEDIUM, at=T0 + timedelta(minutes=i))
            for i in range(50)
        ]
    )
    assert many.score == one.score and many.severity is Severity.MEDIUM
    assert many.anomaly_count == 50 and len(many.signals) == 1
    # Two alerts of one detector (after a cool-down) still count once.
    (two,) = correlate([member("new_device", alert="a1"), member("new_device", alert="a2")])
    assert two.score == one.score and [s.counted for s in two.signals].count(True) == 1


def test_a_new_country_on_a_new_device_is_high_and_either_alone_is_not():
    (both,) = correlate(
        [member("new_country"), member("new_device", Severity.LOW), member("new_ip", Severity.LOW)]
    )
    assert both.severity is Severity.HIGH
    (country,) = correlate([member("new_country"), member("new_ip", Severity.LOW)])
    assert country.severity is Severity.MEDIUM
    (two_low,) = correlate([member("new_device", Severity.LOW), member("login_time", Severity.LOW)])
    assert two_low.severity is Severity.MEDIUM


def test_a_finding_that_repeats_others_counts_once():
    """A phone's first use: new device and new address (LOW each), and the
    Isolation Forest flagging the same novelty. Its finding repeats theirs,
    so the session stays LOW; driven by something else it is evidence."""
    context = [member("new_device", Severity.LOW), member("new_ip", Severity.LOW)]
    forest = "isolation_forest"
    echo = member(forest, Severity.LOW, echoes=("new_device", "new_ip"))
    assert correlate([*context, echo]) == [], "LOW: no incident opens"
    # Beside a finding that makes the story MEDIUM anyway, it is not counted.
    (story,) = correlate([*context, echo, member("api_new_endpoint", Severity.LOW)])
    assert [s.counted for s in story.signals] == [True, True, False, True]
    (without,) = correlate([*context, member("api_new_endpoint", Severity.LOW)])
    assert story.score == without.score
    (other,) = correlate([*context, member(forest, Severity.LOW)])
    assert other.severity is Severity.MEDIUM
    # It echoes a detector the incident does not hold: it counts.
    (missing,) = correlate([*context, member(forest, Severity.LOW, echoes=("new_country",))])
    assert missing.severity is Severity.MEDIUM
    # A signal repeats others only while all of its anomalies do.
    (mixed,) = correlate(
        [
            *context,
            member(forest, Severity.LOW, echoes=("new_device",), alert="f1"),
            member(forest, Severity.LOW, alert="f1"),
        ]
    )
    assert mixed.severity is Severity.MEDIUM and mixed.signals[-1].echoes == []


def test_score_is_a_bounded_noisy_or():
    p = {s: POLICY.probability(s, "new_country") for s in Severity}
    (incident,) = correlate(
        [member("new_country"), member("new_device"), member("impossible_travel")]
    )
    assert incident.score == pytest.approx(100 * (1 - (1 - p[Severity.MEDIUM]) ** 3), abs=0.1)
    (top,) = correlate(
        [
            member(d, Severity.CRITICAL)
            for d in ("new_country", "new_device", "impossible_travel", "login_time", "data_volume")
        ]
    )
    assert top.severity is Severity.CRITICAL and 99 < top.score <= 100
    # A lone finding keeps its own severity; a lone LOW one opens no incident.
    for severity in Severity:
        opened = correlate([member("new_device", severity)])
        assert [i.severity for i in opened] == ([] if severity < Severity.MEDIUM else [severity])


def test_weak_signals_wait_until_together_they_are_worth_an_incident():
    """A LOW signal alone is no incident (its alert stays, as evidence);
    the incident opens when a related one makes the evidence MEDIUM, and
    tells the whole story, the earlier signal included."""
    pending: list[Member] = []
    assert correlate([member("login_time", Severity.LOW, at=T0)], pending) == []
    assert [m.detector for m in pending] == ["login_time"]
    # Another user's or another session's LOW signal does not complete it.
    assert correlate([member("new_device", Severity.LOW, user="bob")], pending) == []
    assert correlate([member("api_new_endpoint", Severity.LOW, session="s2")], pending) == []
    (incident,) = correlate(
        [member("new_device", Severity.LOW, at=T0 + timedelta(minutes=3))], pending
    )
    assert incident.severity is Severity.MEDIUM and incident.entity_id == "alice"
    assert [s.detector for s in incident.signals] == ["login_time", "new_device"]
    assert incident.first_seen_at == T0 and incident.anomaly_count == 2
    assert sorted(m.detector for m in pending) == ["api_new_endpoint", "new_device"]  # others wait


def test_separate_sessions_and_windows_are_separate_incidents():
    incidents = correlate([member("new_country", session="s1"), member("new_device", session="s2")])
    assert len(incidents) == 2
    later = correlate(
        [
            member("new_country", session="", at=T0),
            member("new_device", session="", at=T0 + POLICY.window + timedelta(minutes=1)),
        ]
    )
    assert len(later) == 2
    # Without session ids, the window decides; a session continues a story
    # begun without one (failures before the login).
    (story,) = correlate(
        [
            member("failed_login_burst", session="", at=T0),
            member("new_device", session="s9", at=T0 + timedelta(minutes=20)),
            member("data_volume", session="s9", at=T0 + timedelta(hours=5)),
        ]
    )
    assert len(story.signals) == 3 and story.session_ids == ["s9"]
    # Other users never join.
    assert len(correlate([member("new_country", user="a"), member("new_device", user="b")])) == 2


def test_population_attacks_group_by_source_address():
    victims = [f"user{i}" for i in range(12)]
    incidents = correlate(
        [
            member(
                "password_spraying",
                Severity.HIGH,
                user=u,
                session="",
                ip="198.51.100.9",
                at=T0 + timedelta(seconds=5 * i),
            )
            for i, u in enumerate(victims)
        ]
        + [member("new_device", user="user3"), member("new_device", user="other", ip="10.9.9.9")]
    )
    spray = [i for i in incidents if i.entity_kind is EntityKind.SOURCE_IP]
    assert len(spray) == 1 and len(incidents) == 2
    (s,) = spray
    assert s.entity_id == "198.51.100.9" and s.user_ids == victims and len(s.alert_ids) == 13
    assert "new_device" in s.detectors  # a target's own finding during the spray
    assert s.severity is Severity.HIGH  # twelve victims of one technique: no escalation by count
    assert s.techniques == ["T1110.003", "T1078"] and "12 alerted users" in s.title


def test_a_campaign_from_many_addresses_is_one_incident_with_its_victims():
    """Credential stuffing from a botnet: every population finding near the
    campaign joins it whatever its address, and so does a victim's own
    finding on an event from one of its addresses or on a failed login; the
    victim's finding from home, and a wave hours later, are other stories."""
    botnet = [f"45.134.26.{i}" for i in range(40)]
    wave = [
        member(
            "credential_stuffing",
            Severity.HIGH if i % 10 == 0 else Severity.MEDIUM,
            user=f"user{i % 25}",
            session="",
            ip=ip,
            at=T0 + timedelta(minutes=2 * i),
        )
        for i, ip in enumerate(botnet)
    ]
    victim_from_botnet = member(
        "new_country", user="user7", ip=botnet[5], at=T0 + timedelta(minutes=15), session="s7"
    )
    # The targeted account that got in, from an address no finding named.
    got_in = member(
        "impossible_travel",
        Severity.HIGH,
        user="user3",
        ip="194.26.29.166",
        at=T0 + timedelta(hours=1),
    )
    victim_at_home = member("new_device", user="user88", ip="10.0.0.8", at=T0 + timedelta(hours=1))
    # A victim's failure from an address no population finding named yet.
    failing = replace(
        member("new_country", user="user99", ip="91.241.19.3", at=T0 + timedelta(minutes=30)),
        failed_login=True,
    )
    later = member(
        "credential_stuffing",
        user="user1",
        session="",
        ip="5.188.62.9",
        at=T0 + timedelta(minutes=80) + POLICY.window + timedelta(minutes=1),
    )
    incidents = correlate([*wave, victim_from_botnet, failing, got_in, victim_at_home, later])
    campaign, home, second = incidents
    assert campaign.entity_kind is EntityKind.SOURCE_IP and campaign.entity_id == botnet[0]
    assert campaign.source_ips == [*botnet, "91.241.19.3", "194.26.29.166"]
    assert len(campaign.user_ids) == 26
    assert {victim_from_botnet.anomaly_id, failing.anomaly_id, got_in.anomaly_id} <= set(
        campaign.anomaly_ids
    )
    assert campaign.severity is Severity.CRITICAL  # a wave that got in
    assert "from 42 addresses" in campaign.title
    assert (home.entity_kind, home.entity_id) == (EntityKind.USER, "user88")
    assert second.entity_id == "5.188.62.9" and second.source_ips == ["5.188.62.9"]


def test_attaching_a_group_then_rescoring_once_equals_joining_one_by_one():
    """The writer attaches a group's members and rescores each incident once
    (a campaign's score reads every signal): the incident is the same as
    when each member joined and rescored it, whatever the mix of repeats,
    new victims, severities, echoes and resolved signals."""
    first = member("password_spraying", Severity.HIGH, user="v0", session="", ip="198.51.100.9")
    base = correlate([first])[0]
    POLICY.attach(member("new_ip", Severity.LOW, user="v0", ip="198.51.100.9"), [base], T0)
    POLICY.rescore(base)
    POLICY.alert_resolved(base, "al-v0-new_ip")  # a resolved signal that comes back
    detectors = ("password_spraying", "new_ip", "new_country", "credential_stuffing")
    group = [
        member(
            detectors[i % 4],
            (Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL)[i % 7 % 4],
            user=f"v{i % 13}",
            session="",
            # The campaign's own findings from new addresses, the victims'
            # from one of its addresses: every member joins it.
            ip=f"198.51.100.{9 + i % 3}" if i % 4 in (0, 3) else "198.51.100.9",
            at=T0 + timedelta(seconds=30 * i),
            echoes=("new_country",) if i % 5 == 1 else (),
        )
        for i in range(60)
    ]
    joined, attached = deepcopy(base), deepcopy(base)
    for m in group:
        assert POLICY.join(m, [joined], T0) is joined
        assert POLICY.attach(m, [attached], T0) is attached
    POLICY.rescore(attached)
    assert attached == joined
    assert attached.title == joined.title and attached.score == joined.score > 0


def test_a_signal_is_found_by_its_alert_as_signals_are_added_or_replaced():
    (incident,) = correlate([member("new_country"), member("new_device")])
    assert incident.signal("al-alice-new_device") is incident.signals[1]
    assert incident.signal("nobody") is None
    POLICY.join(member("login_time"), [incident], T0)
    assert incident.signal("al-alice-login_time") is incident.signals[2]
    incident.signals = incident.signals[1:]  # a new list: looked up in it
    assert incident.signal("al-alice-new_country") is None
    assert incident.signal("al-alice-login_time") is incident.signals[1]
    twice = lifecycle.Signal.from_dict(incident.signals[0].to_dict())
    incident.signals.append(twice)
    assert incident.signal(twice.alert_id) is incident.signals[0]  # the first, as a scan


def test_a_sustained_rise_reported_day_after_day_is_one_story():
    """Sustained volume escalates over days (LOW, then MEDIUM, then HIGH,
    each on another day): one incident, not one a day; another detector's
    finding days later is another story, and so is the same rise weeks on."""
    days = [T0 + timedelta(days=d, hours=3 * d) for d in range(3)]
    pending: list[Member] = []
    incidents = correlate(
        [
            member("sustained_volume", Severity.LOW, at=days[0], session="d0", alert="v1"),
            member("sustained_volume", Severity.MEDIUM, at=days[1], session="d1", alert="v2"),
            member("sustained_volume", Severity.HIGH, at=days[2], session="d2", alert="v3"),
            member("new_country", at=days[2] + timedelta(days=1), session="d3"),
            member("sustained_volume", Severity.MEDIUM, at=T0 + timedelta(days=20), alert="v4"),
        ],
        pending,
    )
    rise, country, later = incidents
    assert [s.alert_id for s in rise.signals] == ["v1", "v2", "v3"]
    assert rise.severity is Severity.HIGH and rise.first_seen_at == days[0]
    assert [s.detector for s in country.signals] == ["new_country"]
    assert [s.alert_id for s in later.signals] == ["v4"] and pending == []


def test_resolving_a_member_alert_stops_it_counting():
    (incident,) = correlate([member("new_country"), member("new_device"), member("login_time")])
    before = incident.score
    assert POLICY.alert_resolved(incident, "al-alice-new_country")
    assert incident.score < before and not incident.signal("al-alice-new_country").active
    assert not POLICY.alert_resolved(incident, "al-alice-new_country")  # once
    for alert_id in incident.alert_ids:
        POLICY.alert_resolved(incident, alert_id)
    assert POLICY.open_probability(incident) == 0.0 and incident.score > 0  # the record stays


def test_workflow():
    (incident,) = correlate([member("new_country")])
    lifecycle.acknowledge(incident, "ann", "looking", T0)
    assert incident.status is IncidentStatus.ACKNOWLEDGED and incident.note == "looking"
    with pytest.raises(FailedPrecondition):
        lifecycle.acknowledge(incident, "ann", "", T0)
    with pytest.raises(InvalidArgument) as info:
        lifecycle.resolve(incident, None, "ann", "", T0)
    assert info.value.violations[0].field == "resolution"
    lifecycle.resolve(incident, Resolution.BENIGN, "ann", "travel", T0)
    assert incident.status is IncidentStatus.RESOLVED and POLICY.open_probability(incident) == 0.0
    with pytest.raises(FailedPrecondition) as info:
        lifecycle.resolve(incident, Resolution.TRUE_POSITIVE, "ann", "", T0)
    assert incident.incident_id in str(info.value)
    # A resolved incident takes no new members.
    assert not POLICY.joins(incident, member("new_device"))


def test_signals_round_trip_through_their_stored_form():
    (incident,) = correlate([member("new_country"), member("login_time", Severity.LOW)])
    for s in incident.signals:
        assert lifecycle.Signal.from_dict(s.to_dict()) == s


def test_risk_follows_incidents_one_contribution_each():
    risk = RiskPolicy()
    acc = RiskAccumulator()
    (incident,) = correlate([member("new_country"), member("new_device"), member("login_time")])
    weight = risk.incident_weight(POLICY.open_probability(incident))
    acc.add_weight(risk, weight, T0, T0)
    score = acc.score(risk, T0)
    # The same story told by ten more anomalies is still one contribution.
    acc.remove_weight(risk, weight, T0, T0)
    for i in range(10):
        POLICY.correlate(member("new_device", at=T0 + timedelta(minutes=i)), [incident], T0)
    acc.add_weight(risk, risk.incident_weight(POLICY.open_probability(incident)), T0, T0)
    assert acc.score(risk, T0) == score
    acc.remove_weight(risk, risk.incident_weight(POLICY.open_probability(incident)), T0, T0)
    assert acc.score(risk, T0) == 0
    assert risk.incident_weight(1.0) == risk.incident_scale and risk.incident_weight(0.0) == 0.0


# -- ATT&CK --------------------------------------------------------------------


def test_every_registered_detector_has_a_mapping_of_known_ids():
    registry = default_registry()
    for name in registry.names():
        mapping = (
            attack.attack_for(name, getattr(registry.get(name), "attack", None))
            if registry.entries[name].available
            else attack.attack_for(name)
        )
        assert name in attack.TABLE, f"{name} is not in the ATT&CK table"
        assert mapping.tactics and mapping.techniques, name
        assert all(t in attack.TACTICS for t in mapping.tactics), name
        assert all(t in attack.TECHNIQUES for t in mapping.techniques), name


def test_table_names_the_techniques_of_the_detectors_being_built():
    expect = {
        "failed_login_burst": "T1110.001",
        "password_spraying": "T1110.003",
        "credential_stuffing": "T1110.004",
        "session_hijack": "T1539",
        "mfa_fatigue": "T1621",
        "data_volume": "T1567",
        "sustained_volume": "T1567",
        "new_country": "T1078",
        "account_takeover": "T1078",
        "dormant_account": "T1078",
        "peer_endpoint": "T1078",
    }
    for detector, technique in expect.items():
        assert technique in attack.attack_for(detector).techniques, detector
    assert "TA0004" in attack.attack_for("peer_endpoint").tactics
    assert attack.attack_for("new_ip").tactics == ("TA0001", "TA0003")


def test_unknown_detectors_get_the_default_and_overrides_win():
    assert attack.attack_for("some_plugin") == attack.DEFAULT
    override = attack.attack_for("new_ip", ("T1110.004", "TA0006"))
    assert override.techniques == ("T1110.004",) and override.tactics == ("TA0006",)
    # Without tactic ids, the technique's own tactics.
    assert attack.attack_for("x", ("T1567",)).tactics == ("TA0010",)


def test_tactic_filter_accepts_ids_and_names():
    assert attack.parse_tactic("ta0006") == "TA0006"
    assert attack.parse_tactic("credential-access") == "TA0006"
    assert attack.parse_tactic("Initial Access") == "TA0001"
    with pytest.raises(ValueError):
        attack.parse_tactic("lunch")


def test_a_detector_class_attack_attribute_overrides_the_table():
    from uba.detectors.base import Detector
    from uba.detectors.engine import DetectionEngine
    from uba.detectors.registry import DetectorRegistry
    from uba.domain.alerts import AlertPolicy
    from uba.domain.analysis import Analyzer

    class Prompts(Detector):
        name = "mfa_prompts"
        attack = ("T1621", "TA0006")

        def score_one(self, event, ctx):
            return []

    class Plain(Detector):
        name = "new_ip"  # in the table

        def score_one(self, event, ctx):
            return []

    registry = DetectorRegistry({}, entry_points=False)
    registry.register("mfa_prompts", Prompts)
    registry.register("new_ip", Plain)
    analyzer = Analyzer(DetectionEngine(registry), AlertPolicy(), RiskPolicy(), lambda: T0)
    assert analyzer.attack["mfa_prompts"] == attack.AttackMapping(("TA0006",), ("T1621",))
    assert analyzer.attack["new_ip"] == attack.TABLE["new_ip"]
