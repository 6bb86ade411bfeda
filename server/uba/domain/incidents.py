"""Incidents: one entity's anomalies across detectors, told as one story.

Analysts triage stories, not rows: a login from a new country on a new
device at an odd hour is one incident with three signals, not three alerts.
Pure logic; storage assigns the `seq` numbers (the alerts' sequence, so one
resumable stream carries both) and persists what these functions return.

Correlation. An incident is what an analyst must triage, so it opens only
when its evidence reaches `opens_at` (MEDIUM): an alerted anomaly that joins
no open incident waits as *pending* (its alert stays, as evidence) until a
related one of its entity, alone or together with the pending ones, is
strong enough; the incident then opens with all of them (two LOW signals in
one session, say, make a MEDIUM incident; a LOW one alone makes none).

The entity is the user, except for population attacks (password spraying,
credential stuffing), whose anomalies belong to each victim but whose story
is the campaign: its incident is keyed by the first source address, lists
every address (`source_ips`) and every victim, and takes every population
anomaly within `window` of its span, whatever the address (a botnet of a
hundred addresses is one story). While the campaign goes on, a targeted
user's own anomalies (the login that got in), a failed login's and those
on an event from one of its addresses join the campaign too: the story of
the attack includes what it achieved.

A user's anomaly joins an open incident of the user when
  * its detector tells a story over days (`story_windows`: sustained volume)
    and the incident holds that detector's signal within that time, or
  * it belongs to one of the incident's sessions (same session_id), or
  * it happened within `window` of the incident's span, unless both it and
    the incident have session ids and they differ (another session is
    another story).

Score (documented in docs/detection.md, "Incidents and risk"). Each member
alert is a signal with a calibrated probability that it shows an attack:
p(severity) x factor(detector). Per detector only the strongest open signal
counts, so repeats of one signal never escalate; the detectors combine as a
noisy-OR, P = 1 - prod(1 - p_d), which is bounded by 1, and grows with each
*independent* kind of evidence. The score is 100 x P; the severity is the
band of P, and never below the most severe open member.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Protocol

from uba.domain import paging
from uba.domain.alerts import Resolution, close, take
from uba.domain.anomalies import Severity
from uba.domain.errors import InvalidArgument, NotFound
from uba.domain.events import EventFilter
from uba.domain.ids import new_uuid7

# Anomaly ids an incident lists (latest first); anomaly_count keeps the total.
MAX_ANOMALY_IDS = 100
MAX_SESSION_IDS = 20
MAX_USER_IDS = 1000
MAX_SOURCE_IPS = 1000

# Detectors whose anomalies describe an attack on the population from one
# address: their incidents are keyed by that address.
POPULATION_DETECTORS = frozenset({"password_spraying", "credential_stuffing"})

DEFAULT_PROBABILITIES: Mapping[Severity, float] = MappingProxyType(
    {
        Severity.LOW: 0.20,
        Severity.MEDIUM: 0.40,
        Severity.HIGH: 0.70,
        Severity.CRITICAL: 0.90,
    }
)

# Detectors whose evidence mostly repeats another's: a login from a new
# country nearly always comes from a new address as well.
DEFAULT_DETECTOR_FACTORS: Mapping[str, float] = MappingProxyType(
    {
        "new_ip": 0.5,
    }
)

DEFAULT_STORY_WINDOWS: Mapping[str, timedelta] = MappingProxyType(
    {"sustained_volume": timedelta(days=7)}
)

# Lower bounds of P for each severity band, highest first.
DEFAULT_BANDS: tuple[tuple[float, Severity], ...] = (
    (0.90, Severity.CRITICAL),
    (0.55, Severity.HIGH),
    (0.30, Severity.MEDIUM),
)


class IncidentStatus(enum.Enum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class EntityKind(enum.Enum):
    USER = "user"
    SOURCE_IP = "source_ip"


@dataclass(slots=True, frozen=True)
class Member:
    """An alerted anomaly, with what correlation needs of its event."""

    anomaly_id: str
    alert_id: str
    user_id: str
    detector: str
    severity: Severity
    occurred_at: datetime
    title: str = ""
    session_id: str = ""
    source_ip: str = ""
    tactics: tuple[str, ...] = ()
    techniques: tuple[str, ...] = ()
    # Its event is a failed login (during a campaign, part of the attack).
    failed_login: bool = False
    # The detectors whose findings this one only repeats (its detector's
    # `echoes`, when nothing else drove it); see IncidentPolicy.combined.
    echoes: tuple[str, ...] = ()


@dataclass(slots=True)
class Signal:
    """One member alert's part of an incident, and its part of the score."""

    alert_id: str
    user_id: str
    detector: str
    title: str
    severity: Severity
    anomaly_count: int
    first_seen_at: datetime
    last_seen_at: datetime
    tactics: list[str] = field(default_factory=list)
    techniques: list[str] = field(default_factory=list)
    # False once its alert is resolved: it no longer counts.
    active: bool = True
    # Its calibrated probability, and whether it is the strongest open
    # signal of its detector (only those count).
    probability: float = 0.0
    counted: bool = False
    # Detectors whose findings every member of this signal only repeated.
    echoes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "alert_id": self.alert_id,
            "user_id": self.user_id,
            "detector": self.detector,
            "title": self.title,
            "severity": int(self.severity),
            "anomaly_count": self.anomaly_count,
            "first_seen_us": _us(self.first_seen_at),
            "last_seen_us": _us(self.last_seen_at),
            "tactics": self.tactics,
            "techniques": self.techniques,
            "active": self.active,
            "probability": self.probability,
            "counted": self.counted,
            "echoes": self.echoes,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Signal:
        return cls(
            alert_id=d["alert_id"],
            user_id=d["user_id"],
            detector=d["detector"],
            title=d["title"],
            severity=Severity(d["severity"]),
            anomaly_count=d["anomaly_count"],
            first_seen_at=_dt(d["first_seen_us"]),
            last_seen_at=_dt(d["last_seen_us"]),
            tactics=list(d.get("tactics", [])),
            techniques=list(d.get("techniques", [])),
            active=d.get("active", True),
            probability=d.get("probability", 0.0),
            counted=d.get("counted", False),
            echoes=list(d.get("echoes", [])),
        )


@dataclass(slots=True)
class Incident:
    incident_id: str
    entity_kind: EntityKind
    entity_id: str
    title: str
    severity: Severity
    # 0..100: 100 x the noisy-OR probability of its open signals.
    score: float
    created_at: datetime
    updated_at: datetime
    first_seen_at: datetime
    last_seen_at: datetime
    status: IncidentStatus = IncidentStatus.OPEN
    # Assigned by storage on every change; 0 until stored.
    seq: int = 0
    signals: list[Signal] = field(default_factory=list)
    session_ids: list[str] = field(default_factory=list)
    user_ids: list[str] = field(default_factory=list)
    # A campaign's addresses (population incidents only).
    source_ips: list[str] = field(default_factory=list)
    tactics: list[str] = field(default_factory=list)
    techniques: list[str] = field(default_factory=list)
    anomaly_ids: list[str] = field(default_factory=list)
    anomaly_count: int = 0
    acknowledged_at: datetime | None = None
    acknowledged_by: str = ""
    resolved_at: datetime | None = None
    resolved_by: str = ""
    resolution: Resolution | None = None
    note: str = ""
    # What it adds to its users' risk (RiskAccumulator weight) as of
    # risk_at, and to whom: kept so that a change replaces it exactly.
    risk_weight: float = 0.0
    risk_at: datetime | None = None
    risk_users: list[str] = field(default_factory=list)
    # `signal`'s index (alert id -> its first signal) of the first
    # `_counted` signals of the list `_indexed`. Signals are only ever
    # appended; a campaign holds one per victim, and each member joining it
    # looks its alert up (a scan made that the square of the campaign).
    _by_alert: dict[str, Signal] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _indexed: list[Signal] | None = field(default=None, init=False, repr=False, compare=False)
    _counted: int = field(default=0, init=False, repr=False, compare=False)

    @property
    def is_open(self) -> bool:
        return self.status is not IncidentStatus.RESOLVED

    @property
    def alert_ids(self) -> list[str]:
        return list(dict.fromkeys(s.alert_id for s in self.signals))

    @property
    def detectors(self) -> list[str]:
        return list(dict.fromkeys(s.detector for s in self.signals))

    def signal(self, alert_id: str) -> Signal | None:
        """The alert's signal (the first, as a scan finds it), or None."""
        signals = self.signals
        if self._indexed is not signals or self._counted > len(signals):
            self._by_alert, self._indexed, self._counted = {}, signals, 0
        for s in signals[self._counted :]:  # appended since the last look-up
            self._by_alert.setdefault(s.alert_id, s)
        self._counted = len(signals)
        return self._by_alert.get(alert_id)


@dataclass(frozen=True, slots=True)
class IncidentPolicy:
    # Anomalies within this time of an incident's span join it.
    window: timedelta = timedelta(hours=2)
    probabilities: Mapping[Severity, float] = field(
        default_factory=lambda: dict(DEFAULT_PROBABILITIES)
    )
    detector_factors: Mapping[str, float] = field(
        default_factory=lambda: dict(DEFAULT_DETECTOR_FACTORS)
    )
    bands: tuple[tuple[float, Severity], ...] = DEFAULT_BANDS
    population_detectors: frozenset[str] = POPULATION_DETECTORS
    # An incident opens once its evidence reaches this severity.
    opens_at: Severity = Severity.MEDIUM
    # Detectors whose findings tell one story over days (a sustained rise is
    # reported as it escalates, day after day): a finding joins the user's
    # incident holding the same detector's signal within this time.
    story_windows: Mapping[str, timedelta] = field(
        default_factory=lambda: dict(DEFAULT_STORY_WINDOWS)
    )

    # -- correlation ---------------------------------------------------------------

    def entity(self, member: Member) -> tuple[EntityKind, str]:
        """The kind of story `member` opens: its user's, or (a population
        detector's, with an address) a campaign keyed by that address."""
        if self.is_population(member):
            return EntityKind.SOURCE_IP, member.source_ip
        return EntityKind.USER, member.user_id

    def is_population(self, member: Member) -> bool:
        return member.detector in self.population_detectors and bool(member.source_ip)

    def _near(self, incident: Incident, member: Member) -> bool:
        return (
            incident.first_seen_at - self.window
            <= member.occurred_at
            <= incident.last_seen_at + self.window
        )

    def joins(self, incident: Incident, member: Member) -> bool:
        """Whether `member` belongs to the story `incident` tells."""
        if not incident.is_open:
            return False
        if incident.entity_kind is EntityKind.SOURCE_IP:
            # A campaign: its own detectors' anomalies near it, and, near it,
            # anything odd about one of its targets (a login that got in) and
            # a failed login or an event from one of its addresses.
            if not self._near(incident, member):
                return False
            return (
                self.is_population(member)
                or member.failed_login
                or member.user_id in incident.user_ids
                or (bool(member.source_ip) and member.source_ip in incident.source_ips)
            )
        if self.entity(member) != (incident.entity_kind, incident.entity_id):
            return False
        story = self.story_windows.get(member.detector)
        if story is not None and any(
            s.detector == member.detector and abs(member.occurred_at - s.last_seen_at) <= story
            for s in incident.signals
        ):
            return True
        if member.session_id:
            if member.session_id in incident.session_ids:
                return True
            if incident.session_ids:
                return False
        return self._near(incident, member)

    def correlate(
        self,
        member: Member,
        candidates: Sequence[Incident],
        now: datetime,
        pending: Sequence[Member] = (),
    ) -> tuple[Incident | None, list[Member]]:
        """`join`, else `open`: the incident `member` is now part of (None
        when it waits as pending) and the members added to a new incident
        ([] when it joined an existing one)."""
        incident = self.join(member, candidates, now)
        if incident is not None:
            return incident, []
        return self.open(member, pending, now)

    def join(
        self, member: Member, candidates: Sequence[Incident], now: datetime
    ) -> Incident | None:
        """Adds `member` to the first of `candidates` (open incidents it may
        join: campaigns first, then its entity's, newest first) it joins, and
        rescores it; None when it joins none."""
        incident = self.attach(member, candidates, now)
        if incident is not None:
            self.rescore(incident)
        return incident

    def attach(
        self, member: Member, candidates: Sequence[Incident], now: datetime
    ) -> Incident | None:
        """`join` without the rescore, for a caller that adds many members
        and then rescores each incident it changed once (`rescore` reads
        every signal, and a campaign gains one per victim: rescoring after
        each member made a group's work grow with the square of the
        campaign). Whether a member joins never depends on the score."""
        incident = next((c for c in candidates if self.joins(c, member)), None)
        if incident is not None:
            self._add(incident, member, now)
        return incident

    def open(
        self, member: Member, pending: Sequence[Member], now: datetime
    ) -> tuple[Incident | None, list[Member]]:
        """A new incident of `member` and the members of `pending` (its
        entity's alerted anomalies in no incident yet, oldest first) that
        belong to its story, if together they reach `opens_at`; returns it
        (None: not yet) and the members it took, `member` last."""
        # The pending members that would join the story `member` opens: the
        # joining rule itself, against an incident of the member alone.
        alone = self._new(member, now)
        self._add(alone, member, now)
        added = [p for p in pending if self.joins(alone, p)] + [member]
        incident = self._new(member, now)
        for m in added:
            self._add(incident, m, now)
        self.rescore(incident)
        if incident.severity < self.opens_at:
            return None, []
        return incident, added

    def _new(self, member: Member, now: datetime) -> Incident:
        kind, entity_id = self.entity(member)
        return Incident(
            incident_id=new_uuid7(),
            entity_kind=kind,
            entity_id=entity_id,
            title="",
            severity=member.severity,
            score=0.0,
            created_at=now,
            updated_at=now,
            first_seen_at=member.occurred_at,
            last_seen_at=member.occurred_at,
        )

    def _add(self, incident: Incident, member: Member, now: datetime) -> None:
        signal = incident.signal(member.alert_id)
        if signal is None:
            incident.signals.append(
                Signal(
                    alert_id=member.alert_id,
                    user_id=member.user_id,
                    detector=member.detector,
                    title=member.title or member.detector.replace("_", " ").capitalize(),
                    severity=member.severity,
                    anomaly_count=1,
                    first_seen_at=member.occurred_at,
                    last_seen_at=member.occurred_at,
                    tactics=list(member.tactics),
                    techniques=list(member.techniques),
                    echoes=list(member.echoes),
                )
            )
        else:
            # A signal repeats other findings only while all its members do.
            signal.echoes = [d for d in signal.echoes if d in member.echoes]
            signal.anomaly_count += 1
            signal.severity = max(signal.severity, member.severity)
            signal.first_seen_at = min(signal.first_seen_at, member.occurred_at)
            signal.last_seen_at = max(signal.last_seen_at, member.occurred_at)
            signal.active = True
        incident.anomaly_ids.insert(0, member.anomaly_id)
        del incident.anomaly_ids[MAX_ANOMALY_IDS:]
        incident.anomaly_count += 1
        if (
            member.session_id
            and member.session_id not in incident.session_ids
            and len(incident.session_ids) < MAX_SESSION_IDS
        ):
            incident.session_ids.append(member.session_id)
        if member.user_id not in incident.user_ids and len(incident.user_ids) < MAX_USER_IDS:
            incident.user_ids.append(member.user_id)
        if (
            incident.entity_kind is EntityKind.SOURCE_IP
            and member.source_ip
            and member.source_ip not in incident.source_ips
            and len(incident.source_ips) < MAX_SOURCE_IPS
        ):
            incident.source_ips.append(member.source_ip)
        incident.first_seen_at = min(incident.first_seen_at, member.occurred_at)
        incident.last_seen_at = max(incident.last_seen_at, member.occurred_at)
        incident.updated_at = now

    # -- score -----------------------------------------------------------------------

    def probability(self, severity: Severity, detector: str) -> float:
        """A signal's calibrated probability, in [0, 1)."""
        p = self.probabilities.get(severity, 0.0) * self.detector_factors.get(detector, 1.0)
        return min(max(p, 0.0), 0.99)

    def combined(self, signals: Iterable[Signal]) -> float:
        """The noisy-OR of the strongest open signal of each detector; marks
        each signal's probability and whether it counted. A signal that only
        repeats findings the incident holds already (its `echoes` are all
        among the other counted detectors) is not independent evidence, which
        the noisy-OR assumes, and does not count."""
        best: dict[str, Signal] = {}
        for s in signals:
            s.probability = self.probability(s.severity, s.detector)
            s.counted = False
            if s.active and (
                s.detector not in best or s.probability > best[s.detector].probability
            ):
                best[s.detector] = s
        independent = [
            s
            for s in best.values()
            if not s.echoes or not set(s.echoes) <= set(best) - {s.detector}
        ]
        miss = 1.0
        for s in independent:
            s.counted = True
            miss *= 1.0 - s.probability
        return 1.0 - miss if independent else 0.0

    def band(self, p: float) -> Severity:
        return next((sev for bound, sev in self.bands if p >= bound - 1e-9), Severity.LOW)

    def rescore(self, incident: Incident) -> None:
        """Recomputes score, severity, tactics, techniques and title from the
        open signals. With none open (all member alerts resolved one by one)
        the last score stands: it is the story's, kept for the record."""
        p = self.combined(incident.signals)
        active = [s for s in incident.signals if s.active]
        if active:
            incident.score = round(100.0 * p, 1)
            incident.severity = max(self.band(p), max(s.severity for s in active))
        incident.tactics = list(dict.fromkeys(t for s in incident.signals for t in s.tactics))
        incident.techniques = list(dict.fromkeys(t for s in incident.signals for t in s.techniques))
        incident.title = self.title(incident)

    def open_probability(self, incident: Incident) -> float:
        """P over the open signals of an open incident; 0 once resolved."""
        if not incident.is_open:
            return 0.0
        return self.combined(incident.signals)

    @staticmethod
    def title(incident: Incident) -> str:
        """The story in one line, e.g. "alice: Login from a new country, New
        device, Unusual login time (3 signals in one session)"."""
        titles = list(
            dict.fromkeys(s.title for s in sorted(incident.signals, key=lambda s: s.first_seen_at))
        )
        kinds = len({s.detector for s in incident.signals})
        if incident.entity_kind is EntityKind.SOURCE_IP:
            users, sources = len(incident.user_ids), len(incident.source_ips)
            context = f"{users} alerted user{'s' if users != 1 else ''}"
            if sources > 1:
                context += f" from {sources} addresses"
        elif kinds > 1:
            where = "one session" if len(incident.session_ids) == 1 else "one window"
            context = f"{kinds} signals in {where}"
        else:
            context = (
                f"{incident.anomaly_count} anomal{'ies' if incident.anomaly_count != 1 else 'y'}"
            )
        return f"{incident.entity_id}: {', '.join(titles)} ({context})"

    def alert_resolved(self, incident: Incident, alert_id: str) -> bool:
        """Its member alert was resolved: the signal stops counting.
        Returns whether the incident changed."""
        signal = incident.signal(alert_id)
        if signal is None or not signal.active:
            return False
        signal.active = False
        self.rescore(incident)
        return True


# -- the analyst's workflow --------------------------------------------------------


def acknowledge(incident: Incident, who: str, note: str, now: datetime) -> Incident:
    """An analyst takes the incident (the alerts' workflow)."""
    return take(incident, f"incident {incident.incident_id}", who, note, now)


def resolve(
    incident: Incident, resolution: Resolution | None, who: str, note: str, now: datetime
) -> Incident:
    """An analyst closes the incident with a classification (which the
    caller cascades to its member alerts). Resolved once."""
    return close(incident, f"incident {incident.incident_id}", resolution, who, note, now)


@dataclass(frozen=True, slots=True)
class IncidentFilter:
    user_id: str = ""
    status: IncidentStatus | None = None
    min_severity: int = 0
    # An ATT&CK tactic id (uba.domain.attack.parse_tactic).
    tactic: str = ""
    start_time: datetime | None = None
    end_time: datetime | None = None


# -- time in the JSON parts: microseconds since the epoch, UTC -------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _dt(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


# -- what analysts read and do ------------------------------------------------------

# The timeline shows the entity's events this long before and after the incident.
TIMELINE_MARGIN = timedelta(minutes=30)
TIMELINE_EVENTS = 500
TIMELINE_ANOMALIES = 1000
MAX_NOTE = 4096


@dataclass(frozen=True, slots=True)
class IncidentDetail:
    incident: Incident
    alerts: list
    # (occurred_at, Anomaly or ActivityEvent), oldest first.
    timeline: list[tuple[datetime, object]]


class IncidentReader(Protocol):
    def page_incidents(
        self,
        limit: int,
        before_seq: int | None,
        *,
        user_id: str,
        status: IncidentStatus | None,
        min_severity: int,
        tactic: str,
        start_time: datetime | None,
        end_time: datetime | None,
    ) -> list[Incident]: ...
    def incident(self, incident_id: str) -> Incident | None: ...
    def incident_anomalies(self, incident_id: str, limit: int) -> list: ...
    def alerts_by_ids(self, alert_ids: Sequence[str]) -> list: ...
    def page_events(
        self, flt: Any, limit: int, after: list[int] | None, newest_first: bool
    ) -> list: ...


class IncidentWriter(Protocol):
    def run_exclusive(self, action: Callable[[Any], Any]) -> Future: ...


class IncidentWorkflow(Protocol):
    """The writer-side half (uba.domain.analysis.Analyzer)."""

    def acknowledge_incident(self, uow: Any, incident_id: str, who: str, note: str) -> Incident: ...
    def resolve_incident(
        self, uow: Any, incident_id: str, resolution: Resolution | None, who: str, note: str
    ) -> Incident: ...


@dataclass(frozen=True, slots=True)
class IncidentPage:
    items: list[Incident]
    next_page_token: str


class IncidentService:
    def __init__(self, reader: IncidentReader, writer: IncidentWriter, workflow: IncidentWorkflow):
        self._reader = reader
        self._writer = writer
        self._workflow = workflow

    def list(self, flt: IncidentFilter, requested_size: int, token: str) -> IncidentPage:
        """Incidents, most recently changed first (by seq)."""
        if flt.start_time and flt.end_time and flt.end_time <= flt.start_time:
            raise InvalidArgument.single("end_time", "must be after start_time")
        size = paging.page_size(requested_size)
        key = {
            "user_id": flt.user_id,
            "status": flt.status.value if flt.status else "",
            "min_severity": flt.min_severity,
            "tactic": flt.tactic,
            "start_time": flt.start_time.isoformat() if flt.start_time else "",
            "end_time": flt.end_time.isoformat() if flt.end_time else "",
        }
        after = paging.decode(token, key, 1)
        rows = self._reader.page_incidents(
            size + 1,
            after[0] if after else None,
            user_id=flt.user_id,
            status=flt.status,
            min_severity=flt.min_severity,
            tactic=flt.tactic,
            start_time=flt.start_time,
            end_time=flt.end_time,
        )
        next_token = paging.encode([rows[size - 1].seq], key) if len(rows) > size else ""
        return IncidentPage(rows[:size], next_token)

    def get(self, incident_id: str) -> IncidentDetail:
        incident = self._find(incident_id)
        anomalies = self._reader.incident_anomalies(incident.incident_id, TIMELINE_ANOMALIES)
        alerts = self._reader.alerts_by_ids(incident.alert_ids)
        start, end = (
            incident.first_seen_at - TIMELINE_MARGIN,
            incident.last_seen_at + TIMELINE_MARGIN,
        )
        if incident.entity_kind is EntityKind.SOURCE_IP:
            flt = EventFilter(source_ip=incident.entity_id, start_time=start, end_time=end)
        else:
            flt = EventFilter(user_id=incident.entity_id, start_time=start, end_time=end)
        events = [e for _, e in self._reader.page_events(flt, TIMELINE_EVENTS, None, False)]
        timeline: list[tuple[datetime, object]] = [
            (a.occurred_at or incident.first_seen_at, a) for a in anomalies
        ]
        timeline += [(e.occurred_at, e) for e in events]
        # An anomaly sorts after the event it is about.
        timeline.sort(key=lambda entry: (entry[0], not hasattr(entry[1], "event_id")))
        return IncidentDetail(incident, alerts, timeline)

    def acknowledge(self, incident_id: str, who: str, note: str) -> Future:
        _check(incident_id, note)
        return self._writer.run_exclusive(
            lambda uow: self._workflow.acknowledge_incident(uow, incident_id, who, note)
        )

    def resolve(
        self, incident_id: str, resolution: Resolution | None, who: str, note: str
    ) -> Future:
        _check(incident_id, note)
        return self._writer.run_exclusive(
            lambda uow: self._workflow.resolve_incident(uow, incident_id, resolution, who, note)
        )

    def _find(self, incident_id: str) -> Incident:
        if not incident_id:
            raise InvalidArgument.single("incident_id", "required")
        incident = self._reader.incident(incident_id)
        if incident is None:
            raise NotFound(f"no incident {incident_id[:64]!r}")
        return incident


def _check(incident_id: str, note: str) -> None:
    if not incident_id:
        raise InvalidArgument.single("incident_id", "required")
    if len(note) > MAX_NOTE:
        raise InvalidArgument.single("note", f"longer than {MAX_NOTE} characters")
