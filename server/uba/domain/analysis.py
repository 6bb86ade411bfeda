"""Analysis inside the ingest transaction: score new events against their
users' baselines, persist the learned baselines, and turn anomalies into
alerts with risk and seq numbers, all in the transaction that stores the
events, so a crash never leaves a baseline that learned an event the store
lost (or the reverse).

Runs on the ingest writer thread only; it owns the baseline cache and the
shared detector state of this process. Baselines are versioned: before a
group is processed, the versions of its users' baselines are read (and
row-locked on PostgreSQL), and any cached copy another process has since
changed is reloaded, so several server processes learn into one baseline
without losing updates.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from uba.domain import alerts as lifecycle
from uba.domain import incidents as incident_lifecycle
from uba.domain.aggregates import Aggregates
from uba.domain.alerts import Alert, AlertPolicy, Resolution
from uba.domain.anomalies import Anomaly, echoed_detectors
from uba.domain.attack import AttackMapping, attack_for
from uba.domain.errors import InvalidArgument, NotFound
from uba.domain.events import ActivityEvent, ActivityType
from uba.domain.incidents import EntityKind, Incident, IncidentPolicy, Member
from uba.domain.priors import PriorBaselines, SharedPriors
from uba.domain.risk import RiskAccumulator, RiskPolicy
from uba.domain.shared_state import CACHED_USERS, SharedState
from uba.domain.user_baseline import UserBaseline

log = logging.getLogger(__name__)

SHARED_STATE = "detector_windows"
# Longest suppression a resolution may ask for: ten years. (Unbounded, the
# end of the longest Duration lies past the year 9999 that datetime can
# hold: the call failed as an overflow, answered UNAVAILABLE.)
MAX_SUPPRESSION = timedelta(days=3650)
PRIORS = "priors"
# The priors of the event log's workers, pooled in the log's order and
# saved with the position they are as of (uba.domain.priors.SharedPriors).
SHARED_PRIORS = "priors.eventlog"


# The pending members of population detectors, whatever their address.
_CAMPAIGN = "\x00campaign"


class DetectionStorage(Protocol):
    """The detection repository of a unit of work (see uba.storage.detection)."""

    def baseline_versions(self, user_ids: Sequence[str]) -> dict[str, int]: ...
    def delete_baselines(self) -> int: ...
    def load_baselines(self, user_ids: Sequence[str]) -> dict[str, tuple[int, dict]]: ...
    def save_baselines(self, rows: Iterable[tuple[str, int, dict]], now: datetime) -> None: ...
    def load_state(self, name: str) -> dict | None: ...
    def save_state(self, name: str, data: dict, now: datetime) -> None: ...
    def next_seqs(self, count: int) -> list[int]: ...
    def insert_anomalies(self, anomalies: Sequence[Anomaly]) -> None: ...
    def anomalies_of_alert(self, alert_id: str) -> list[Anomaly]: ...
    def release_quarantine(self, alert_id: str) -> None: ...
    def latest_alert(self, user_id: str, detector: str) -> Alert | None: ...
    def alert(self, alert_id: str, lock: bool = False) -> Alert | None: ...
    def save_alerts(self, alerts: Sequence[Alert], created: set[str]) -> None: ...
    def suppressed_until(self, user_id: str, detector: str) -> datetime | None: ...
    def suppress(self, user_id: str, detector: str, until: datetime) -> None: ...
    def risk(self, user_id: str) -> tuple[float, datetime | None]: ...
    def risks_of(self, user_ids: Sequence[str]) -> dict[str, tuple[float, datetime]]: ...
    def save_risks(self, rows: Sequence[tuple[str, float, datetime]]) -> None: ...


class IncidentStorage(Protocol):
    """The incident repository of a unit of work (see uba.storage.incidents)."""

    def open_incidents(self, entity_kind: EntityKind, entity_id: str) -> list[Incident]: ...
    def open_campaigns(self, since: datetime) -> list[Incident]: ...
    def pending_members(self, user_id: str, since: datetime) -> list[Member]: ...
    def pending_population(self, detectors: Sequence[str], since: datetime) -> list[Member]: ...
    def link_alerts(self, incident_of_alert: Mapping[str, str]) -> None: ...
    def incident(self, incident_id: str, lock: bool = False) -> Incident | None: ...
    def incidents_of_alert(self, alert_id: str) -> list[Incident]: ...
    def save_incidents(self, incidents: Sequence[Incident], created: set[str]) -> None: ...
    def add_members(self, rows: Sequence[tuple[str, str, str, str, datetime]]) -> None: ...


class EventStorage(Protocol):
    """The event repository of a unit of work, as far as analysis reads it."""

    def by_ids(self, event_ids: Sequence[str]) -> list[ActivityEvent]: ...


class NamedDetector(Protocol):
    """What the analyzer reads of a detector: its name (and its optional
    `attack` ids, with getattr)."""

    @property
    def name(self) -> str: ...


class Detection(Protocol):
    """The detection engine the analyzer runs (the composition root, uba.app,
    gives it the detectors' DetectionEngine): score and learn one event,
    flush the micro-batched findings, learn a released quarantined event."""

    @property
    def detectors(self) -> Sequence[NamedDetector]: ...

    @property
    def learns_baselines(self) -> bool: ...

    def process(
        self,
        event: ActivityEvent,
        baseline: UserBaseline,
        prior: PriorBaselines | None,
        shared: SharedState,
    ) -> list[Anomaly]: ...

    def flush(self) -> list[Anomaly]: ...

    def admit(self, event: ActivityEvent, baseline: UserBaseline) -> None: ...


class AnalysisTransaction(Protocol):
    """The transaction analysis reads and writes in: the ingest writer's
    (storage's unit of work, uba.storage.store, offers it)."""

    # Read-only: a transaction may hold more specific repositories.
    @property
    def detection(self) -> DetectionStorage: ...
    @property
    def events(self) -> EventStorage: ...
    @property
    def incidents(self) -> IncidentStorage | None: ...


class Analyzer:
    def __init__(
        self,
        engine: Detection,
        policy: AlertPolicy,
        risk: RiskPolicy,
        clock: Callable[[], datetime],
        cache_size: int = CACHED_USERS,
        checkpoint_every: timedelta = timedelta(seconds=30),
        incidents: IncidentPolicy | None = None,
        state_name: str = SHARED_STATE,
    ):
        self.engine = engine
        self.policy = policy
        self.risk = risk
        self.incidents = incidents or IncidentPolicy()
        # ATT&CK ids per detector: the class's `attack`, else the table.
        self.attack: dict[str, AttackMapping] = {
            d.name: attack_for(d.name, getattr(d, "attack", None)) for d in engine.detectors
        }
        # Per detector: feature -> the detector whose finding it repeats.
        self.echoes: dict[str, Mapping[str, str]] = {
            d.name: getattr(d, "echoes", None) or {} for d in engine.detectors
        }
        self._clock = clock
        self._cache: OrderedDict[str, tuple[int, UserBaseline]] = OrderedDict()
        self._cache_size = cache_size
        self._checkpoint_every = checkpoint_every
        self._last_checkpoint: datetime | None = None
        # The state row of the detector windows; with `partition_state`,
        # the prefix of one row per key.
        self.state_name = state_name
        self._key_of: Callable[[ActivityEvent], str] | None = None
        self._aggregates: Aggregates | None = None
        self._states: dict[str, SharedState] = {"": SharedState()}
        self.learns_baselines = engine.learns_baselines
        self.prior = PriorBaselines()
        self._prior_row = PRIORS
        self._touched: set[str] = set()
        self._changes: list[Alert | Incident] = []
        self.last_anomaly_count = 0

    # -- start-up and checkpoints -----------------------------------------------

    @property
    def shared(self) -> SharedState:
        """The detector windows of the process (not kept per key)."""
        return self._states[""]

    def partition_state(
        self, key_of: Callable[[ActivityEvent], str], aggregates: Aggregates | None = None
    ) -> None:
        """Keeps the detector windows per `key_of(event)` from now on, each
        in the state row `state_name.KEY`, loaded when its first event
        comes (before any event is processed). The windows `aggregates`
        claims are one set shared by every key instead, merged with other
        processes' (uba.domain.aggregates), and in no key's row."""
        self._key_of = key_of
        self._aggregates = aggregates
        self._states = {}

    def _row(self, key: str) -> str:
        return f"{self.state_name}.{key}" if key else self.state_name

    def _shared(self, uow: AnalysisTransaction, key: str) -> SharedState:
        shared = self._states.get(key)
        if shared is None:
            data = uow.detection.load_state(self._row(key))
            aggregates = self._aggregates
            shared = self._states[key] = (
                SharedState.from_dict(data, aggregates) if data else SharedState(aggregates)
            )
        return shared

    def load_state(self, uow: AnalysisTransaction) -> None:
        """Restores the detector windows and priors a previous run saved."""
        if self._key_of is None:
            shared = uow.detection.load_state(self.state_name)
            if shared:
                self._states[""] = SharedState.from_dict(shared)
        prior = uow.detection.load_state(PRIORS) if self.learns_baselines else None
        if prior:
            self.prior = PriorBaselines.from_dict(prior)
        self._last_checkpoint = self._clock()

    def checkpoint(self, uow: AnalysisTransaction, force: bool = False) -> None:
        """Saves the cross-user detector windows and the priors now and then:
        losing them costs at most one window of detection, not correctness."""
        now = self._clock()
        if (
            not force
            and self._last_checkpoint
            and now - self._last_checkpoint < self._checkpoint_every
        ):
            return
        for key, shared in self._states.items():
            uow.detection.save_state(self._row(key), shared.to_dict(), now)
        if self.learns_baselines:
            uow.detection.save_state(self._prior_row, self.prior.to_dict(), now)
        self._last_checkpoint = now

    def share_priors(self, uow: AnalysisTransaction) -> SharedPriors:
        """The event log's workers: the priors pooled through the log
        (uba.domain.priors.SharedPriors) instead of this process's own,
        loaded from the row any worker saved, or the first time from the
        row of one process (the log holds no share of those)."""
        data = uow.detection.load_state(SHARED_PRIORS)
        if data is None:
            data = uow.detection.load_state(PRIORS)
        priors = SharedPriors.from_dict(data) if data else SharedPriors()
        self.prior, self._prior_row = priors, SHARED_PRIORS
        return priors

    def release_state(self, uow: AnalysisTransaction, key: str) -> None:
        """Saves the windows of `key` and forgets them: another process
        takes its partition over and loads them from there."""
        shared = self._states.pop(key, None)
        if shared is not None:
            uow.detection.save_state(self._row(key), shared.to_dict(), self._clock())

    def drop_state(self, key: str) -> None:
        """Forgets the windows of `key` unsaved (its partition was taken
        over: what is saved is the new owner's to write)."""
        self._states.pop(key, None)

    def forget_user(
        self, uow: AnalysisTransaction, user_id: str, alias: str = "", keys: Sequence[str] = ()
    ) -> None:
        """Erasure: drops the user's cached baseline and their keys and
        entries in the detector windows, and saves the windows without them
        in this transaction (the baseline row itself storage deletes). The
        windows of `keys` (with `partition_state`) are loaded first if not
        held yet, so that their rows are saved without the user too; the
        population aggregates shared with other processes hand `alias`, the
        user's pseudonym, to them (uba.domain.aggregates)."""
        for key in keys:
            self._shared(uow, key)
        self._cache.pop(user_id, None)
        for shared in self._states.values():
            shared.forget(user_id)
        if self._aggregates is not None:
            self._aggregates.forget(user_id, alias)
        self.checkpoint(uow, force=True)

    # -- events -------------------------------------------------------------------

    def reset(self, uow: AnalysisTransaction) -> int:
        """Forgets every baseline, detector window and prior (before a
        backfill rebuilds them); returns how many baselines were dropped."""
        dropped = uow.detection.delete_baselines()
        self._cache.clear()
        self._states = {key: SharedState(self._aggregates) for key in self._states}
        self.prior = PriorBaselines()
        self.checkpoint(uow, force=True)
        return dropped

    def process(
        self, uow: AnalysisTransaction, events: Sequence[ActivityEvent], raise_alerts: bool = True
    ) -> list[Alert | Incident]:
        """Scores and learns newly stored events; returns the alerts and
        incidents created or changed (with their new seq numbers). Without `raise_alerts`
        (a backfill that only warms up baselines) anomalies are counted in
        `last_anomaly_count` but neither stored nor alerted."""
        self.last_anomaly_count = 0
        if not events:
            return []
        now = self._clock()
        if self._aggregates is not None:  # what other processes added, before judging
            self._aggregates.merge_received()
        users = sorted({e.user_id for e in events})
        self._touched = set(users)
        baselines = self._baselines(uow.detection, users)
        prior = self.prior if self.learns_baselines else None
        key_of = self._key_of
        anomalies: list[Anomaly] = []
        for event in sorted(events, key=lambda e: e.occurred_at):
            shared = self._shared(uow, key_of(event)) if key_of is not None else self.shared
            anomalies.extend(self.engine.process(event, baselines[event.user_id], prior, shared))
        anomalies.extend(self.engine.flush())
        for anomaly in anomalies:
            mapping = self.attack.get(anomaly.detector) or attack_for(anomaly.detector)
            anomaly.tactics, anomaly.techniques = list(mapping.tactics), list(mapping.techniques)
        if self.learns_baselines:
            self._save_baselines(uow.detection, users, now)
        self.last_anomaly_count = len(anomalies)
        changed = self._alerts(uow, anomalies, now, events) if anomalies and raise_alerts else []
        self.checkpoint(uow)
        return changed

    def rollback(self) -> None:
        """The transaction failed: forget the cached baselines it changed, so
        they are reloaded from what was committed."""
        for user_id in self._touched:
            self._cache.pop(user_id, None)
        self._touched = set()
        self._changes = []

    def _baselines(self, storage: DetectionStorage, users: list[str]) -> dict[str, UserBaseline]:
        versions = storage.baseline_versions(users)
        stale = [
            u for u in users if u not in self._cache or self._cache[u][0] != versions.get(u, 0)
        ]
        loaded = storage.load_baselines(stale) if stale else {}
        for user_id in stale:
            if user_id in loaded:
                version, data = loaded[user_id]
                self._cache[user_id] = (version, UserBaseline.from_dict(data))
            else:
                self._cache[user_id] = (0, UserBaseline(user_id))
        result = {}
        for user_id in users:
            self._cache.move_to_end(user_id)
            result[user_id] = self._cache[user_id][1]
        return result

    def _save_baselines(self, storage: DetectionStorage, users: list[str], now: datetime) -> None:
        rows = []
        for user_id in users:
            version, baseline = self._cache[user_id]
            self._cache[user_id] = (version + 1, baseline)
            rows.append((user_id, version + 1, baseline.to_dict()))
        storage.save_baselines(rows, now)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)

    def _alerts(
        self,
        uow: AnalysisTransaction,
        anomalies: list[Anomaly],
        now: datetime,
        events: Sequence[ActivityEvent],
    ) -> list[Alert | Incident]:
        """Alerts, then incidents, then risk, for the group's anomalies;
        returns every alert and incident changed, in seq order."""
        storage = uow.detection
        changed: dict[str, Alert] = {}
        created: set[str] = set()
        latest: dict[tuple[str, str], Alert | None] = {}
        suppressed: dict[tuple[str, str], datetime | None] = {}
        alerted: list[tuple[Anomaly, Alert]] = []
        for anomaly in anomalies:
            key = (anomaly.user_id, anomaly.detector)
            if key not in latest:
                latest[key] = storage.latest_alert(*key)
                suppressed[key] = storage.suppressed_until(*key)
            result = self.policy.apply(anomaly, latest[key], suppressed[key], now)
            if result is None:
                continue
            alert, new = result
            latest[key] = changed[alert.alert_id] = alert
            alerted.append((anomaly, alert))
            if new:
                created.add(alert.alert_id)
        storage.insert_anomalies(anomalies)
        risks: dict[str, RiskAccumulator] = {}
        self._load_risks(storage, risks, (a.user_id for a in changed.values()))
        incidents, new_incidents, members = self._correlate(uow, alerted, events, now)
        if uow.incidents is None:  # no incident storage: each anomaly weighs on its own
            for anomaly, _alert in alerted:
                self._risk_of(storage, risks, anomaly.user_id).add(
                    self.risk, anomaly.severity, anomaly.occurred_at or now, now
                )
        self._update_risk(storage, incidents, risks, now)
        for alert in changed.values():
            alert.user_risk = self._risk_of(storage, risks, alert.user_id).score(self.risk, now)
        self._save_risks(storage, risks, now)
        # Incidents first, the alerts last: the commit's last seq is an
        # alert's, so a subscriber of alerts only resumes where its last
        # alert was (incidents reach only subscribers that ask for them).
        out: list[Alert | Incident] = [*incidents, *changed.values()]
        self._assign_seqs(storage, out)
        storage.save_alerts(list(changed.values()), created)
        if uow.incidents is not None and incidents:
            uow.incidents.save_incidents(incidents, new_incidents)
            uow.incidents.add_members(members)
        return sorted(out, key=lambda a: a.seq)

    # -- incidents -----------------------------------------------------------------

    def _correlate(
        self,
        uow: AnalysisTransaction,
        alerted: list[tuple[Anomaly, Alert]],
        events: Sequence[ActivityEvent],
        now: datetime,
    ) -> tuple[list[Incident], set[str], list[tuple[str, str, str, str, datetime]]]:
        """Each alerted anomaly joins (or opens) its entity's incident."""
        repo = uow.incidents
        if repo is None or not alerted:
            return [], set(), []
        by_id = {e.event_id: e for e in events}
        pairs: list[tuple[Member, Alert]] = []
        for anomaly, alert in alerted:
            event = next((by_id[i] for i in reversed(anomaly.event_ids) if i in by_id), None)
            pairs.append(
                (
                    Member(
                        anomaly_id=anomaly.anomaly_id,
                        alert_id=alert.alert_id,
                        user_id=anomaly.user_id,
                        detector=anomaly.detector,
                        severity=anomaly.severity,
                        occurred_at=anomaly.occurred_at or now,
                        title=alert.title,
                        session_id=event.session_id if event else "",
                        source_ip=event.source_ip if event else "",
                        tactics=tuple(anomaly.tactics),
                        techniques=tuple(anomaly.techniques),
                        failed_login=bool(event and event.type is ActivityType.LOGIN_FAILURE),
                        echoes=self._echoes_of(anomaly),
                    ),
                    alert,
                )
            )
        policy = self.incidents
        # Population findings first: an event's campaign finding names its
        # address before the victim's own findings on it look for a campaign.
        pairs.sort(key=lambda pair: not policy.is_population(pair[0]))
        # Open incidents read (and locked) in one order, so two writers never
        # wait on each other's entities crosswise: campaigns (any member may
        # come from one of their addresses), then each user's.
        since = min(m.occurred_at for m, _ in pairs) - policy.window
        campaigns = repo.open_campaigns(since)
        users = sorted({m.user_id for m, _ in pairs if not policy.is_population(m)})
        own: dict[str, list[Incident]] = {u: repo.open_incidents(EntityKind.USER, u) for u in users}
        # Alerted anomalies in no incident yet, oldest first: a user's, and
        # the population detectors' (a campaign's first signals); read only
        # for a member that joins no open incident.
        in_group = {m.anomaly_id for m, _ in pairs}
        pending: dict[str, list[Member]] = {}

        def waiting_for(key: str) -> list[Member]:
            if key not in pending:
                stored = (
                    repo.pending_population(sorted(policy.population_detectors), since)
                    if key == _CAMPAIGN
                    else repo.pending_members(key, since)
                )
                pending[key] = [
                    p
                    for p in stored
                    if p.anomaly_id not in in_group
                    and (key != _CAMPAIGN or policy.is_population(p))
                ]
            return pending[key]

        changed: dict[str, Incident] = {}
        created: set[str] = set()
        members: list[tuple[str, str, str, str, datetime]] = []
        linked: dict[str, str] = {}  # alert id -> incident id, for alerts not in this group
        for member, alert in pairs:
            population = policy.is_population(member)
            key = _CAMPAIGN if population else member.user_id
            candidates = campaigns if population else [*campaigns, *own[key]]
            added: list[Member] = []
            incident = policy.attach(member, candidates, now)  # rescored once, below
            if incident is None:
                waiting = waiting_for(key)
                incident, added = policy.open(member, waiting, now)
                if incident is None:
                    waiting.append(member)
                    continue
            if added:
                (campaigns if population else own[key]).insert(0, incident)
                created.add(incident.incident_id)
                for earlier in added[:-1]:
                    pending[key].remove(earlier)
                    linked[earlier.alert_id] = incident.incident_id
            changed[incident.incident_id] = incident
            alert.incident_id = incident.incident_id
            for m in added or [member]:
                members.append(
                    (incident.incident_id, m.anomaly_id, m.alert_id, m.user_id, m.occurred_at)
                )
        for incident in changed.values():
            policy.rescore(incident)
        group_alerts = {a.alert_id for _, a in pairs}
        repo.link_alerts({a: i for a, i in linked.items() if a not in group_alerts})
        for _, alert in pairs:  # an alert whose earlier anomaly opened an incident just now
            if not alert.incident_id and alert.alert_id in linked:
                alert.incident_id = linked[alert.alert_id]
        return list(changed.values()), created, members

    @staticmethod
    def _risk_of(
        storage: DetectionStorage, risks: dict[str, RiskAccumulator], user_id: str
    ) -> RiskAccumulator:
        risk = risks.get(user_id)
        if risk is None:
            weight, as_of = storage.risk(user_id)
            risk = risks[user_id] = RiskAccumulator(weight, as_of)
        return risk

    @staticmethod
    def _load_risks(
        storage: DetectionStorage, risks: dict[str, RiskAccumulator], user_ids: Iterable[str]
    ) -> None:
        """Reads the risk of each of `user_ids` not read yet, in one go: a
        campaign's contribution changes for each of its victims at once,
        which read one by one cost a query per victim in every group."""
        missing = [u for u in dict.fromkeys(user_ids) if u not in risks]
        if missing:
            stored = storage.risks_of(missing)
            for user_id in missing:
                weight, as_of = stored.get(user_id, (0.0, None))
                risks[user_id] = RiskAccumulator(weight, as_of)

    @staticmethod
    def _save_risks(
        storage: DetectionStorage, risks: dict[str, RiskAccumulator], now: datetime
    ) -> None:
        if risks:
            storage.save_risks([(u, r.weight_sum, r.as_of or now) for u, r in risks.items()])

    def _update_risk(
        self,
        storage: DetectionStorage,
        incidents: Sequence[Incident],
        risks: dict[str, RiskAccumulator],
        now: datetime,
    ) -> None:
        """One incident, one contribution to each of its users' risk (a
        campaign's: each victim with an open signal in it): its previous
        contribution is taken back and the current one added."""
        changes: list[tuple[Incident, float, datetime, list[str]]] = []
        for incident in incidents:
            weight = self.risk.incident_weight(self.incidents.open_probability(incident))
            users = (
                [incident.entity_id]
                if incident.entity_kind is EntityKind.USER
                else list(dict.fromkeys(s.user_id for s in incident.signals if s.active))
            )
            if weight <= 0.0:
                users = []
            anchor = incident.last_seen_at
            if (weight, anchor, users) == (
                incident.risk_weight,
                incident.risk_at,
                incident.risk_users,
            ):
                continue
            changes.append((incident, weight, anchor, users))
        self._load_risks(
            storage,
            risks,
            (
                u
                for incident, _, _, users in changes
                for u in [*(incident.risk_users if incident.risk_at is not None else ()), *users]
            ),
        )
        for incident, weight, anchor, users in changes:
            if incident.risk_at is not None:
                for user_id in incident.risk_users:
                    self._risk_of(storage, risks, user_id).remove_weight(
                        self.risk, incident.risk_weight, incident.risk_at, now
                    )
            for user_id in users:
                self._risk_of(storage, risks, user_id).add_weight(self.risk, weight, anchor, now)
            incident.risk_weight, incident.risk_at, incident.risk_users = weight, anchor, users

    def _assign_seqs(self, storage: DetectionStorage, items: Sequence[Alert | Incident]) -> None:
        """New seq numbers, in the given order (alerts and incidents share
        them). Every change is stored with one, so every change of the
        transaction passes here and is remembered for `take_changes`."""
        if items:
            for item, seq in zip(items, storage.next_seqs(len(items)), strict=True):
                item.seq = seq
            self._changes.extend(items)

    def _echoes_of(self, anomaly: Anomaly) -> tuple[str, ...]:
        """The detectors whose findings this anomaly only repeats (its
        detector's `echoes`, see echoed_detectors)."""
        return echoed_detectors(anomaly.features, self.echoes.get(anomaly.detector) or {})

    def take_changes(self) -> list[Alert | Incident]:
        """Every alert and incident change of the current transaction, in
        seq order, including those a workflow call makes besides the one it
        returns (an incident's member alerts, the incidents of an alert);
        forgotten once taken."""
        changes, self._changes = self._changes, []
        return sorted(changes, key=lambda c: c.seq)

    # -- the analyst's workflow ----------------------------------------------------

    def acknowledge(self, uow: AnalysisTransaction, alert_id: str, who: str, note: str) -> Alert:
        storage = uow.detection
        alert = self._alert(storage, alert_id)
        lifecycle.acknowledge(alert, who, note, self._clock())
        self._assign_seqs(storage, [alert])
        storage.save_alerts([alert], set())
        return alert

    def resolve(
        self,
        uow: AnalysisTransaction,
        alert_id: str,
        resolution: Resolution | None,
        who: str,
        note: str,
        suppress_for: timedelta | None,
    ) -> Alert:
        """Closes the alert. Benign and false-positive resolutions learn the
        quarantined events after all and may silence the detector for the
        user; the alert stops counting in its incident, whose contribution
        to the risk is replaced (alerts from before incidents take their
        anomalies' weight out of the risk instead)."""
        storage = uow.detection
        now = self._clock()
        if uow.incidents is not None and alert_id:
            uow.incidents.incidents_of_alert(
                alert_id
            )  # lock order: incidents, then the alert (as ingest)
        alert = self._alert(storage, alert_id)
        if suppress_for is not None and not timedelta(0) <= suppress_for <= MAX_SUPPRESSION:
            raise InvalidArgument.single(
                "suppress_for", f"must be within 0..{MAX_SUPPRESSION.days} days"
            )
        lifecycle.resolve(alert, resolution, who, note, now)
        anomalies = storage.anomalies_of_alert(alert_id)
        incidents = self._incidents_without(uow, [alert_id], now)
        risks: dict[str, RiskAccumulator] = {}
        if incidents or alert.incident_id:
            self._update_risk(storage, incidents, risks, now)
        else:
            risk = self._risk_of(storage, risks, alert.user_id)
            for anomaly in anomalies:
                risk.remove(self.risk, anomaly.severity, anomaly.occurred_at or now, now)
        alert.user_risk = self._risk_of(storage, risks, alert.user_id).score(self.risk, now)
        self._save_risks(storage, risks, now)
        self._readmit(uow, alert, resolution, anomalies, now, suppress_for)
        # The alert's seq comes last: a subscriber's broker sees the gap and
        # reads the incidents' changes from storage too.
        self._assign_seqs(storage, [*incidents, alert])
        storage.save_alerts([alert], set())
        if incidents:
            self._incident_storage(uow).save_incidents(incidents, set())
        return alert

    def _readmit(
        self,
        uow: AnalysisTransaction,
        alert: Alert,
        resolution: Resolution | None,
        anomalies: list[Anomaly],
        now: datetime,
        suppress_for: timedelta | None,
    ) -> None:
        if resolution is not None and resolution.readmits_events:
            self._admit(uow, alert.user_id, anomalies, now)
            uow.detection.release_quarantine(alert.alert_id)
            until = now + suppress_for if suppress_for else self.policy.suppressed_until(alert)
            if until is not None and until > now:
                uow.detection.suppress(alert.user_id, alert.detector, until)

    def _incidents_without(
        self,
        uow: AnalysisTransaction,
        alert_ids: list[str],
        now: datetime,
        already: dict[str, Incident] | None = None,
    ) -> list[Incident]:
        """The open incidents these (now resolved) alerts belonged to, with
        the alerts no longer counting."""
        if uow.incidents is None:
            return []
        changed: dict[str, Incident] = dict(already or {})
        for alert_id in alert_ids:
            for incident in uow.incidents.incidents_of_alert(alert_id):
                incident = changed.get(incident.incident_id, incident)
                if incident.is_open and self.incidents.alert_resolved(incident, alert_id):
                    incident.updated_at = now
                    changed[incident.incident_id] = incident
        return [i for i in changed.values() if already is None or i.incident_id not in already]

    def acknowledge_incident(
        self, uow: AnalysisTransaction, incident_id: str, who: str, note: str
    ) -> Incident:
        incident = self._incident(uow, incident_id)
        incident_lifecycle.acknowledge(incident, who, note, self._clock())
        self._assign_seqs(uow.detection, [incident])
        self._incident_storage(uow).save_incidents([incident], set())
        return incident

    def resolve_incident(
        self,
        uow: AnalysisTransaction,
        incident_id: str,
        resolution: Resolution | None,
        who: str,
        note: str,
    ) -> Incident:
        """Closes the incident and, with the same classification, each of its
        member alerts still open (benign and false positive re-admit their
        quarantined events, as resolving the alert does). Its contribution
        to the risk is taken back."""
        storage = uow.detection
        now = self._clock()
        incident = self._incident(uow, incident_id)
        incident_lifecycle.resolve(incident, resolution, who, note, now)
        alerts: list[Alert] = []
        for alert_id in incident.alert_ids:
            alert = storage.alert(alert_id, lock=True)
            if alert is None or not alert.is_open:
                continue
            lifecycle.resolve(alert, resolution, who, note, now)
            self._readmit(uow, alert, resolution, storage.anomalies_of_alert(alert_id), now, None)
            alerts.append(alert)
        for signal in incident.signals:
            signal.active = False
        others = self._incidents_without(
            uow, [a.alert_id for a in alerts], now, already={incident.incident_id: incident}
        )
        risks: dict[str, RiskAccumulator] = {}
        self._update_risk(storage, [incident, *others], risks, now)
        for alert in alerts:
            alert.user_risk = self._risk_of(storage, risks, alert.user_id).score(self.risk, now)
        self._save_risks(storage, risks, now)
        self._assign_seqs(storage, [*alerts, *others, incident])
        storage.save_alerts(alerts, set())
        self._incident_storage(uow).save_incidents([*others, incident], set())
        return incident

    @staticmethod
    def _incident_storage(uow: AnalysisTransaction) -> IncidentStorage:
        """The incident repository, once incidents were found in it."""
        if uow.incidents is None:
            raise RuntimeError("incidents changed without incident storage")
        return uow.incidents

    @staticmethod
    def _incident(uow: AnalysisTransaction, incident_id: str) -> Incident:
        if not incident_id:
            raise InvalidArgument.single("incident_id", "required")
        incident = (
            uow.incidents.incident(incident_id, lock=True) if uow.incidents is not None else None
        )
        if incident is None:
            raise NotFound(f"no incident {incident_id[:64]!r}")
        return incident

    def _admit(
        self, uow: AnalysisTransaction, user_id: str, anomalies: list[Anomaly], now: datetime
    ) -> None:
        event_ids = sorted({i for a in anomalies if a.quarantined for i in a.event_ids})
        if not event_ids:
            return
        self._touched.add(user_id)
        baseline = self._baselines(uow.detection, [user_id])[user_id]
        for event in sorted(uow.events.by_ids(event_ids), key=lambda e: e.occurred_at):
            if event.user_id == user_id:
                self.engine.admit(event, baseline)
        self._save_baselines(uow.detection, [user_id], now)

    @staticmethod
    def _alert(storage: DetectionStorage, alert_id: str) -> Alert:
        if not alert_id:
            raise InvalidArgument.single("alert_id", "required")
        alert = storage.alert(alert_id, lock=True)
        if alert is None:
            raise NotFound(f"no alert {alert_id[:64]!r}")
        return alert
