"""MFA fatigue: refused prompts counted per user, an approval after them."""

from datetime import timedelta

from uba.detectors.engine import DetectionEngine
from uba.detectors.registry import DetectorRegistry
from uba.domain.anomalies import Severity
from uba.domain.events import ActivityType
from uba.testing.checks import Simulation, only
from uba.testing.synthetic import Persona, day_after_history

CHALLENGE, APPROVED, DENIED = (
    ActivityType.MFA_CHALLENGE,
    ActivityType.MFA_APPROVED,
    ActivityType.MFA_DENIED,
)
REGISTRY = DetectorRegistry(entry_points=False)
DAY = day_after_history()


def fresh(**params) -> Simulation:
    return Simulation(DetectionEngine(REGISTRY, only(REGISTRY, "mfa_fatigue", **params)))


def test_everyday_prompts_and_an_occasional_denial_are_quiet():
    sim, alice = fresh(), Persona()
    start = alice.local(DAY, 9, 0)
    events = []
    for i in range(20):  # a prompt an hour, approved; two mistakes denied and retried
        at = start + timedelta(hours=i)
        events.append(alice.event(CHALLENGE, at))
        if i in (3, 11):
            events += [
                alice.event(DENIED, at + timedelta(seconds=5)),
                alice.event(CHALLENGE, at + timedelta(seconds=30)),
            ]
        events.append(alice.event(APPROVED, at + timedelta(seconds=40)))
    assert sim.feed(events) == []


def test_ignored_prompts_then_an_approval_is_high_and_quarantined():
    sim, alice = fresh(), Persona()
    start = alice.local(DAY, 2, 0)
    prompts = [alice.event(CHALLENGE, start + timedelta(seconds=30 * i)) for i in range(6)]
    found = sim.feed(prompts)
    # The sixth prompt leaves five unanswered: MEDIUM, once.
    assert [(a.severity, a.observed) for a in found] == [
        (Severity.MEDIUM, "5 refused prompts in 30m")
    ]
    assert "T1621" in found[0].reason
    (approval,) = sim.feed([alice.event(APPROVED, start + timedelta(seconds=200))])
    assert approval.severity is Severity.HIGH and approval.quarantined
    assert approval.observed == "5 refused prompts, then approval"
    assert "6 sent" in approval.reason and "T1621" in approval.reason
    # The approval closed the episode.
    assert (
        sim.feed(
            [
                alice.event(CHALLENGE, start + timedelta(seconds=300)),
                alice.event(APPROVED, start + timedelta(seconds=310)),
            ]
        )
        == []
    )


def test_denials_alone_are_medium_and_escalate_at_each_doubling():
    sim, alice = fresh(), Persona()
    start = alice.local(DAY, 23, 0)
    events = []
    for i in range(10):
        events += [
            alice.event(CHALLENGE, start + timedelta(seconds=60 * i)),
            alice.event(DENIED, start + timedelta(seconds=60 * i + 5)),
        ]
    found = sim.feed(events)
    assert [(a.severity, a.observed) for a in found] == [
        (Severity.MEDIUM, "5 refused prompts in 30m"),
        (Severity.HIGH, "10 refused prompts in 30m"),
    ]


def test_a_few_refusals_before_an_approval_are_enough_without_challenges_logged():
    sim, alice = fresh(), Persona()
    start = alice.local(DAY, 9, 0)
    found = sim.feed(
        [alice.event(DENIED, start + timedelta(seconds=10 * i)) for i in range(3)]
        + [alice.event(APPROVED, start + timedelta(seconds=40))]
    )
    (approval,) = found
    assert (
        approval.severity is Severity.HIGH
        and approval.observed == "3 refused prompts, then approval"
    )


def test_prompts_spread_beyond_the_window_are_not_counted():
    sim, alice = fresh(window_seconds=600), Persona()
    start = alice.local(DAY, 9, 0)
    events = []
    for i in range(8):  # one ignored prompt every 15 minutes
        events.append(alice.event(CHALLENGE, start + timedelta(minutes=15 * i)))
    events.append(alice.event(APPROVED, start + timedelta(minutes=15 * 7, seconds=20)))
    assert sim.feed(events) == []
