"""Scoring a server's findings against labelled ground truth: pure
functions over plain values (no protobuf, no server), so they are tested
with hand-made inputs.

A finding (anomaly or alert) belongs to a label when
- its evidence event ids are among the label's events, or
- its time falls within the label's window widened by `slack`, and its
  user is one of the label's users, or, for a population attack (a label
  with source addresses), one of its events came from one of them.
An alert also belongs where its anomalies do, and an incident where its
alerts or anomalies do (or, by time, where its entity, a user or a source
address, is the label's).
Attacks are matched first; a finding that matches no attack but a benign
confounder is that confounder's false alarm.

What counts: MEDIUM and above ("MEDIUM+"). An attack is caught when at
least one MEDIUM+ finding or incident is attributed to it; a confounder should raise
none. A false MEDIUM+ user-day is a (user, UTC date) outside every attack
of that user with a MEDIUM+ finding attributed to no attack.

Incidents measure the analyst's load and the story: how many incidents one
attack became (one is the goal), how severe the best was, how many arrive
per day outside every attack (per 100 users), and how many MEDIUM+
incidents the benign confounders raised.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

ATTACK, BENIGN = "attack", "benign"
SEVERITIES = ("UNSPECIFIED", "LOW", "MEDIUM", "HIGH", "CRITICAL")
MEDIUM = 2
DEFAULT_SLACK = timedelta(minutes=30)


@dataclass(frozen=True)
class Label:
    """Ground truth of one labelled stretch of activity: an attack or a
    benign confounder (which should raise nothing)."""

    kind: str
    start: datetime
    end: datetime
    category: str = ATTACK
    users: tuple[str, ...] = ()  # victims (or the people the confounder concerns)
    sources: tuple[str, ...] = ()  # source addresses of a population attack
    event_ids: tuple[str, ...] = ()
    description: str = ""
    # The detectors a blatant attack is staged to wake (empty: not claimed).
    detectors: tuple[str, ...] = ()
    # False when the server cannot take its events (e.g. a type its contract lacks).
    sendable: bool = True

    @property
    def is_attack(self) -> bool:
        return self.category == ATTACK

    @property
    def started_at(self) -> datetime:
        return self.start


@dataclass(frozen=True)
class Finding:
    """An anomaly, alert or incident as the scoring needs it. `at` is the
    event time (an alert's or incident's first_seen_at), `severity` 1 LOW ..
    4 CRITICAL. An incident about a source address has `user_id` "" and
    the address in `source`."""

    kind: str  # "anomaly", "alert" or "incident"
    id: str
    user_id: str
    detector: str
    severity: int
    at: datetime
    until: datetime | None = None  # an alert's last_seen_at
    event_ids: tuple[str, ...] = ()
    anomaly_ids: tuple[str, ...] = ()  # an alert's or incident's anomalies
    alert_ids: tuple[str, ...] = ()  # an incident's alerts
    source: str = ""  # an incident's source address


@dataclass
class LabelScore:
    label: Label
    anomalies: list[Finding] = field(default_factory=list)
    alerts: list[Finding] = field(default_factory=list)
    incidents: list[Finding] = field(default_factory=list)

    @property
    def findings(self) -> list[Finding]:
        return self.anomalies + self.alerts

    @property
    def best_incident_severity(self) -> int:
        return max((f.severity for f in self.incidents), default=0)

    @property
    def medium_plus(self) -> list[Finding]:
        return [f for f in self.findings if f.severity >= MEDIUM]

    @property
    def medium_plus_incidents(self) -> list[Finding]:
        return [f for f in self.incidents if f.severity >= MEDIUM]

    @property
    def caught(self) -> bool:
        """A MEDIUM+ finding or incident belongs to it (an incident of weak
        signals is what the analyst sees)."""
        return bool(self.medium_plus or self.medium_plus_incidents)

    @property
    def on_its_events(self) -> int:
        """MEDIUM+ anomalies whose evidence is among the label's own events
        (the rest belong to it by user or address and time)."""
        ids = set(self.label.event_ids)
        return sum(
            1 for f in self.anomalies if f.severity >= MEDIUM and ids.intersection(f.event_ids)
        )

    @property
    def best_severity(self) -> int:
        return max((f.severity for f in self.findings), default=0)

    @property
    def minutes_to_detect(self) -> float | None:
        """To the first MEDIUM+ finding, or to the latest member of a MEDIUM+
        incident (by then it had reached MEDIUM), whichever is earlier."""
        times = [f.at for f in self.medium_plus]
        times += [f.until or f.at for f in self.medium_plus_incidents]
        first = min(times, default=None)
        if first is None:
            return None
        return max(0.0, (first - self.label.start).total_seconds() / 60)


def _overlaps(f: Finding, label: Label, slack: timedelta) -> bool:
    lo, hi = label.start - slack, label.end + slack
    return f.at <= hi and (f.until or f.at) >= lo


def matches(
    f: Finding,
    label: Label,
    sources_of: Mapping[str, str],
    slack: timedelta = DEFAULT_SLACK,
    anomaly_labels: Mapping[str, set[int]] | None = None,
    index: int | None = None,
    alert_labels: Mapping[str, set[int]] | None = None,
) -> bool:
    """Whether finding `f` belongs to `label` (see the module docstring).
    `sources_of` maps event ids to source addresses; for an alert or an
    incident, `anomaly_labels` (and for an incident `alert_labels`) map
    member ids to the labels (by `index`) they were attributed to."""
    if f.event_ids and label.event_ids and not set(f.event_ids).isdisjoint(label.event_ids):
        return True
    if index is not None:
        for members, attributed in ((f.anomaly_ids, anomaly_labels), (f.alert_ids, alert_labels)):
            if attributed is not None and any(index in attributed.get(m, ()) for m in members):
                return True
    if not _overlaps(f, label, slack):
        return False
    if label.sources:
        # A population attack is known by its addresses: its many accounts go on with their day.
        return f.source in label.sources or any(
            sources_of.get(e) in label.sources for e in f.event_ids
        )
    return f.user_id in label.users


@dataclass
class Report:
    start: datetime
    end: datetime
    attacks: list[LabelScore]
    confounders: list[LabelScore]
    users: int
    user_days: int
    attack_user_days: int
    false_user_days: int
    alerts_total: int
    alerts_medium_plus: int
    anomalies_total: int
    anomalies_medium_plus: int
    unattributed_medium_plus_alerts: int
    incidents_total: int = 0
    incidents_medium_plus: int = 0
    unattributed_incidents: int = 0
    unattributed_incidents_medium_plus: int = 0
    # The analyst's load by UTC day, beside the days attacks ran.
    daily: list[dict] = field(default_factory=list)

    @property
    def days(self) -> float:
        return max((self.end - self.start).total_seconds() / 86400, 1e-9)

    @property
    def attack_free_user_days(self) -> int:
        return self.user_days - self.attack_user_days

    @property
    def false_user_day_share(self) -> float:
        return (
            self.false_user_days / self.attack_free_user_days if self.attack_free_user_days else 0.0
        )

    def by_kind(self, scores: list[LabelScore]) -> dict[str, list[LabelScore]]:
        grouped: dict[str, list[LabelScore]] = defaultdict(list)
        for s in scores:
            grouped[s.label.kind].append(s)
        return dict(grouped)

    def attack_rows(self) -> list[dict]:
        rows = []
        for kind, scores in self.by_kind(self.attacks).items():
            sendable = [s for s in scores if s.label.sendable]
            minutes = [m for s in sendable if (m := s.minutes_to_detect) is not None]
            rows.append(
                {
                    "kind": kind,
                    "instances": len(scores),
                    "sendable": len(sendable),
                    "caught": sum(s.caught for s in sendable),
                    "best_severity": SEVERITIES[
                        max((s.best_severity for s in sendable), default=0)
                    ],
                    "alerts": sum(len(s.alerts) for s in sendable),
                    "alerts_medium_plus": sum(
                        1 for s in sendable for f in s.alerts if f.severity >= MEDIUM
                    ),
                    "anomalies": sum(len(s.anomalies) for s in sendable),
                    "anomalies_medium_plus": sum(
                        1 for s in sendable for f in s.anomalies if f.severity >= MEDIUM
                    ),
                    "anomalies_medium_plus_on_its_events": sum(s.on_its_events for s in sendable),
                    "minutes_to_detect": round(statistics.median(minutes), 1) if minutes else None,
                    "incidents": sum(len(s.incidents) for s in sendable),
                    "incidents_per_attack_max": max(
                        (len(s.incidents) for s in sendable), default=0
                    ),
                    "one_incident": sum(len(s.incidents) == 1 for s in sendable),
                    "best_incident_severity": SEVERITIES[
                        max((s.best_incident_severity for s in sendable), default=0)
                    ],
                    "detectors": sorted({f.detector for s in sendable for f in s.medium_plus}),
                    "expected_detectors": sorted({d for s in scores for d in s.label.detectors}),
                }
            )
        return rows

    def confounder_rows(self) -> list[dict]:
        rows = []
        for kind, scores in self.by_kind(self.confounders).items():
            rows.append(
                {
                    "kind": kind,
                    "instances": len(scores),
                    "alerts_medium_plus": sum(
                        1 for s in scores for f in s.alerts if f.severity >= MEDIUM
                    ),
                    "anomalies_medium_plus": sum(
                        1 for s in scores for f in s.anomalies if f.severity >= MEDIUM
                    ),
                    "incidents_medium_plus": sum(
                        1 for s in scores for f in s.incidents if f.severity >= MEDIUM
                    ),
                    "users_alerted": len(
                        {f.user_id for s in scores for f in s.alerts if f.severity >= MEDIUM}
                    ),
                    "detectors": sorted({f.detector for s in scores for f in s.medium_plus}),
                }
            )
        return rows

    def to_dict(self) -> dict:
        attack_rows = self.attack_rows()
        sendable = [r for r in attack_rows if r["sendable"]]
        return {
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "users": self.users,
            "days": round(self.days, 2),
            "attacks": attack_rows,
            "attack_classes_caught": sum(1 for r in sendable if r["caught"] == r["sendable"]),
            "attack_classes_sendable": len(sendable),
            "attack_classes_not_sendable": [r["kind"] for r in attack_rows if not r["sendable"]],
            "confounders": self.confounder_rows(),
            "false_medium_plus_user_days": self.false_user_days,
            "attack_free_user_days": self.attack_free_user_days,
            "false_medium_plus_user_day_percent": round(100 * self.false_user_day_share, 2),
            "alerts": self.alerts_total,
            "alerts_medium_plus": self.alerts_medium_plus,
            "alerts_per_day": round(self.alerts_total / self.days, 1),
            "alerts_medium_plus_per_day": round(self.alerts_medium_plus / self.days, 1),
            "unattributed_medium_plus_alerts": self.unattributed_medium_plus_alerts,
            "anomalies": self.anomalies_total,
            "anomalies_medium_plus": self.anomalies_medium_plus,
            "incidents": self.incidents_total,
            "incidents_medium_plus": self.incidents_medium_plus,
            "incidents_per_day": round(self.incidents_total / self.days, 1),
            "unattributed_incidents": self.unattributed_incidents,
            "unattributed_incidents_medium_plus": self.unattributed_incidents_medium_plus,
            # The analyst's load outside every attack, per 100 users a day.
            "unattributed_incidents_per_day_per_100_users": round(
                100 * self.unattributed_incidents / self.days / max(self.users, 1), 2
            ),
            "daily": self.daily,
        }


def _dates(lo: datetime, hi: datetime) -> Iterable[date]:
    day = lo.date()
    while day <= hi.date():
        yield day
        day += timedelta(days=1)


def score(
    labels: list[Label],
    anomalies: list[Finding],
    alerts: list[Finding],
    users: Iterable[str],
    start: datetime,
    end: datetime,
    sources_of: Mapping[str, str] | None = None,
    slack: timedelta = DEFAULT_SLACK,
    incidents: Iterable[Finding] = (),
) -> Report:
    """Attributes every finding and sums up (see the module docstring).
    `users` are the population's accounts (the user-days' users);
    `start`..`end` the period the events cover."""
    sources_of = sources_of or {}
    users = set(users)
    ordered = [lb for lb in labels if lb.is_attack] + [lb for lb in labels if not lb.is_attack]
    scores = [LabelScore(lb) for lb in ordered]
    # Anomalies first: alerts are attributed through their anomalies too.
    anomaly_labels: dict[str, set[int]] = {}
    alert_labels: dict[str, set[int]] = {}
    attributed_to_attack: dict[str, bool] = {}

    # Which labels could match a finding, by user, source and event id
    # (tens of thousands of findings against hundreds of labels).
    by_key: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, lb in enumerate(ordered):
        for u in lb.users:
            by_key["u", u].append(i)
        for s in lb.sources:
            by_key["s", s].append(i)
        for e in lb.event_ids:
            by_key["e", e].append(i)

    def attribute(f: Finding) -> bool:
        """Adds f to the scores it belongs to; whether an attack took it."""
        candidates = set(by_key.get(("u", f.user_id), ()))
        candidates.update(by_key.get(("s", f.source), ()))
        for e in f.event_ids:
            candidates.update(by_key.get(("e", e), ()))
            if e in sources_of:
                candidates.update(by_key.get(("s", sources_of[e]), ()))
        for a in f.anomaly_ids:
            candidates.update(anomaly_labels.get(a, ()))
        for a in f.alert_ids:
            candidates.update(alert_labels.get(a, ()))
        found = [
            i
            for i in sorted(candidates)
            if matches(f, ordered[i], sources_of, slack, anomaly_labels, i, alert_labels)
        ]
        hits = [i for i in found if ordered[i].is_attack] or found
        for i in hits:
            members = {"anomaly": scores[i].anomalies, "alert": scores[i].alerts}
            members.get(f.kind, scores[i].incidents).append(f)
        if f.kind == "anomaly":
            anomaly_labels[f.id] = set(hits)
        elif f.kind == "alert":
            alert_labels[f.id] = set(hits)
        return any(ordered[i].is_attack for i in hits)

    incidents = list(incidents)
    for f in [*anomalies, *alerts, *incidents]:
        attributed_to_attack[f.id] = attribute(f)

    attack_days: set[tuple[str, date]] = set()
    for lb in ordered:
        if lb.is_attack and lb.sendable:
            for u in lb.users:
                if u in users:
                    attack_days.update((u, d) for d in _dates(lb.start - slack, lb.end + slack))
    false_days = {
        (f.user_id, f.at.date())
        for f in anomalies + alerts
        if f.severity >= MEDIUM and not attributed_to_attack[f.id] and f.user_id in users
    } - attack_days
    period = list(_dates(start, end - timedelta(microseconds=1)))
    period_days = len(period)
    return Report(
        start=start,
        end=end,
        attacks=[s for s in scores if s.label.is_attack],
        confounders=[s for s in scores if not s.label.is_attack],
        users=len(users),
        user_days=len(users) * period_days,
        attack_user_days=len({(u, d) for u, d in attack_days if start.date() <= d <= end.date()}),
        false_user_days=len(false_days),
        alerts_total=len(alerts),
        alerts_medium_plus=sum(f.severity >= MEDIUM for f in alerts),
        anomalies_total=len(anomalies),
        anomalies_medium_plus=sum(f.severity >= MEDIUM for f in anomalies),
        unattributed_medium_plus_alerts=sum(
            1 for f in alerts if f.severity >= MEDIUM and not attributed_to_attack[f.id]
        ),
        incidents_total=len(incidents),
        incidents_medium_plus=sum(f.severity >= MEDIUM for f in incidents),
        unattributed_incidents=sum(not attributed_to_attack[f.id] for f in incidents),
        unattributed_incidents_medium_plus=sum(
            f.severity >= MEDIUM and not attributed_to_attack[f.id] for f in incidents
        ),
        daily=_daily(period, alerts, incidents, ordered),
    )


def _daily(
    period: list[date], alerts: list[Finding], incidents: list[Finding], labels: list[Label]
) -> list[dict]:
    """Per UTC day of the period: alerts (all, MEDIUM+) and incidents by the
    day they began, and the attacks under way that day."""
    counts: dict[date, list[int]] = {d: [0, 0, 0] for d in period}
    for f in alerts:
        if (day := f.at.date()) in counts:
            counts[day][0] += 1
            counts[day][1] += f.severity >= MEDIUM
    for f in incidents:
        if (day := f.at.date()) in counts:
            counts[day][2] += 1
    attacks: dict[date, set[str]] = defaultdict(set)
    for lb in labels:
        if lb.is_attack and lb.sendable:
            for day in _dates(lb.start, lb.end):
                attacks[day].add(lb.kind)
    return [
        {
            "date": day.isoformat(),
            "alerts": a,
            "alerts_medium_plus": m,
            "incidents": i,
            "attacks": sorted(attacks.get(day, ())),
        }
        for day, (a, m, i) in counts.items()
    ]
