"""Incidents for the growth section: a realistic set of stored incidents
beside the events, so that ListIncidents is measured on a store of the
size it will meet.

The growth fill runs with detection off (it measures storage, not
detectors), so no incident arises on its own. This module adds them
afterwards, one per `EVENTS_PER_INCIDENT` stored events, in the suite's
process and through the storage layer the server uses (the writer's
`unit_of_work`, `IncidentRepository.save_incidents` and `add_members`,
seq numbers from the alerts' shared sequence). Each incident is a real
`uba.domain.incidents.Incident`, built by `IncidentPolicy.correlate` from
members of a detector scenario (score, severity, title, tactics and
signals as the analyzer would make them), anchored on one stored event of
its block (its user, session, address and time), then left open,
acknowledged or resolved with the domain's workflow functions.

The spread (deterministic for a seed): scenarios of one to three
detectors, 3% of them password-spraying campaigns over 5-60 victims (keyed
by address, one member row per victim); about 20% of incidents open, 15%
acknowledged, 65% resolved; about a third carry Credential Access (TA0006).
Only incidents and their member rows are written: ListIncidents reads
nothing else (no alert or anomaly rows are made for them).
"""

from __future__ import annotations

import random
import time
from datetime import datetime, timedelta

from uba.domain.alerts import Resolution
from uba.domain.anomalies import Severity
from uba.domain.attack import attack_for
from uba.domain.incidents import (
    Incident,
    IncidentPolicy,
    Member,
    acknowledge,
    resolve,
)
from uba.storage.database import Database
from uba.storage.store import Store

EVENTS_PER_INCIDENT = 100

# (weight, signals): each signal a detector, its severity and how many
# anomalies (repeats) it has at most. Every scenario reaches MEDIUM, the
# severity at which an incident opens.
L, M, H, C = Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL
USER_SCENARIOS: tuple[tuple[int, tuple[tuple[str, Severity, int], ...]], ...] = (
    (20, (("new_country", M, 2),)),
    (15, (("failed_login_burst", M, 4),)),
    (15, (("new_country", M, 1), ("new_device", M, 1), ("login_time", L, 2))),
    (8, (("session_hijack", H, 2),)),
    (5, (("mfa_fatigue", H, 3),)),
    (10, (("data_volume", M, 3), ("sustained_volume", M, 1))),
    (8, (("api_new_endpoint", L, 4), ("api_rate", L, 2), ("peer_endpoint", M, 2))),
    (6, (("impossible_travel", H, 1), ("new_ip", M, 1))),
    (3, (("account_takeover", C, 1), ("mfa_fatigue", H, 2))),
    (7, (("login_time", L, 2), ("login_frequency", L, 2))),
)
CAMPAIGN_WEIGHT = 3
STATUS_WEIGHTS = (("open", 20), ("acknowledged", 15), ("resolved", 65))

_TITLES = {
    "new_country": "Activity from a new country",
    "new_device": "Activity from a new device",
    "new_ip": "Activity from a new network",
    "login_time": "Login at an unusual time",
    "login_frequency": "Unusually many logins",
    "failed_login_burst": "Burst of failed logins",
    "session_hijack": "Session continued from elsewhere",
    "mfa_fatigue": "MFA fatigue (push bombing)",
    "data_volume": "Data volume spike",
    "sustained_volume": "Sustained rise in data volume",
    "api_new_endpoint": "First use of an API endpoint",
    "api_rate": "API call rate spike",
    "peer_endpoint": "Endpoint no peer uses",
    "impossible_travel": "Impossible travel",
    "account_takeover": "Account takeover pattern",
    "password_spraying": "Password spraying",
}


def incidents_for_events(events: int) -> int:
    """How many incidents a store of `events` events holds."""
    return events // EVENTS_PER_INCIDENT


def _event(i: int, users: int, t0: datetime, spacing_us: int) -> tuple[str, str, str, datetime]:
    """User, session, address and time of event i of the growth stream
    (common.api_event's)."""
    return (
        f"user{i % users}",
        f"s{i % 9000}",
        f"10.{i % 200}.{i % 250}.7",
        t0 + timedelta(microseconds=spacing_us * i),
    )


def _member(
    n: str, user: str, detector: str, severity: Severity, at: datetime, session: str, ip: str
) -> Member:
    mapping = attack_for(detector)
    return Member(
        anomaly_id=f"ga-{n}",
        alert_id=f"gl-{n.rsplit('-', 1)[0]}",
        user_id=user,
        detector=detector,
        severity=severity,
        occurred_at=at,
        title=_TITLES[detector],
        session_id=session,
        source_ip=ip,
        tactics=mapping.tactics,
        techniques=mapping.techniques,
    )


def _members(k: int, rng: random.Random, users: int, t0: datetime, spacing_us: int) -> list:
    """The members of incident k, anchored on a random event of its block."""
    i = k * EVENTS_PER_INCIDENT + rng.randrange(EVENTS_PER_INCIDENT)
    user, session, ip, at = _event(i, users, t0, spacing_us)
    weights = [w for w, _ in USER_SCENARIOS] + [CAMPAIGN_WEIGHT]
    pick = rng.choices(range(len(weights)), weights)[0]
    members = []
    if pick == len(USER_SCENARIOS):
        # A spraying campaign: victims of consecutive events, a few addresses.
        addresses = [f"203.0.{k % 250}.{a + 1}" for a in range(rng.randint(1, 4))]
        for v in range(rng.randint(5, 60)):
            victim = _event(i + v, users, t0, spacing_us)
            members.append(
                _member(
                    f"{k}-{v}-0",
                    victim[0],
                    "password_spraying",
                    M,
                    victim[3],
                    "",
                    addresses[v % len(addresses)],
                )
            )
        return members
    step = timedelta(seconds=1)
    for s, (detector, severity, repeats) in enumerate(USER_SCENARIOS[pick][1]):
        for r in range(rng.randint(1, repeats)):
            when = at + step * (len(members) + r)
            members.append(_member(f"{k}-{s}-{r}", user, detector, severity, when, session, ip))
    return members


def make_incidents(
    first: int, stop: int, users: int, t0: datetime, spacing_us: int, seed: int = 11
) -> list[tuple[Incident, list[Member]]]:
    """Incidents first..stop-1 (one per EVENTS_PER_INCIDENT events of the
    growth stream) with their members, in the order they last changed."""
    policy = IncidentPolicy()
    out = []
    for k in range(first, stop):
        rng = random.Random(f"{seed}:{k}")
        members = _members(k, rng, users, t0, spacing_us)
        incident, _ = policy.correlate(members[0], [], members[0].occurred_at)
        if incident is None:
            # Too weak alone: it waits as pending until the last member opens it.
            incident, _ = policy.correlate(
                members[-1], [], members[-1].occurred_at, pending=members[:-1]
            )
        else:
            for m in members[1:]:
                policy.correlate(m, [incident], m.occurred_at)
        # Every member joined the one incident (a scenario is one story).
        assert incident is not None and incident.anomaly_count == len(members), k
        status = rng.choices([s for s, _ in STATUS_WEIGHTS], [w for _, w in STATUS_WEIGHTS])[0]
        later = incident.last_seen_at + timedelta(minutes=rng.randint(5, 600))
        if status != "open":
            acknowledge(incident, "analyst", "", later)
        if status == "resolved":
            resolution = rng.choice(list(Resolution))
            resolve(incident, resolution, "analyst", "", later + timedelta(minutes=30))
        incident.updated_at = (
            incident.resolved_at or incident.acknowledged_at or incident.updated_at
        )
        out.append((incident, members))
    out.sort(key=lambda pair: pair[0].updated_at)
    return out


def store_incidents(
    database_url: str,
    first: int,
    stop: int,
    users: int,
    t0: datetime,
    spacing_us: int,
    group: int = 2000,
) -> dict:
    """Builds incidents first..stop-1 and stores them with their members in
    transactions of `group` incidents; returns the counts and the seconds
    spent storing (building is not timed)."""
    built = make_incidents(first, stop, users, t0, spacing_us)
    database = Database(database_url, pool_size=1)
    store = Store(database)
    seconds = 0.0
    members = 0
    try:
        for start in range(0, len(built), group):
            part = built[start : start + group]
            t_start = time.perf_counter()
            with store.unit_of_work() as uow:
                for (incident, _), seq in zip(
                    part, uow.detection.next_seqs(len(part)), strict=True
                ):
                    incident.seq = seq
                uow.incidents.save_incidents([i for i, _ in part], {i.incident_id for i, _ in part})
                rows = [
                    (i.incident_id, m.anomaly_id, m.alert_id, m.user_id, m.occurred_at)
                    for i, ms in part
                    for m in ms
                ]
                uow.incidents.add_members(rows)
            seconds += time.perf_counter() - t_start
            members += len(rows)
    finally:
        database.dispose()
    return {"incidents": len(built), "members": members, "seconds": seconds}


if __name__ == "__main__":  # the spread of a sample: python bench/incident_fill.py
    from collections import Counter
    from datetime import UTC

    sample = make_incidents(0, 2000, 5000, datetime(2026, 1, 1, tzinfo=UTC), 1000)
    print(Counter(i.status.value for i, _ in sample))
    print(Counter(i.severity.name for i, _ in sample))
    print(Counter(t for i, _ in sample for t in i.tactics))
    print(Counter(i.entity_kind.value for i, _ in sample), sum(len(m) for _, m in sample))
