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
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Protocol

from uba.detectors.state import SharedState
from uba.domain import alerts as lifecycle
from uba.domain.alerts import Alert, AlertPolicy, Resolution
from uba.domain.anomalies import Anomaly
from uba.domain.baselines import PriorBaselines, UserBaseline
from uba.domain.detection import DetectionEngine
from uba.domain.errors import InvalidArgument, NotFound
from uba.domain.events import ActivityEvent
from uba.domain.risk import RiskAccumulator, RiskPolicy

log = logging.getLogger(__name__)

SHARED_STATE = "detector_windows"
PRIORS = "priors"


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
    def save_risk(self, user_id: str, weight_sum: float, as_of: datetime) -> None: ...


class UnitOfWork(Protocol):
    detection: DetectionStorage
    events: object  # offers by_ids(event_ids) -> list[ActivityEvent]


class Analyzer:
    def __init__(self, engine: DetectionEngine, policy: AlertPolicy, risk: RiskPolicy,
                 clock: Callable[[], datetime], cache_size: int = 20_000,
                 checkpoint_every: timedelta = timedelta(seconds=30)):
        self.engine = engine
        self.policy = policy
        self.risk = risk
        self._clock = clock
        self._cache: OrderedDict[str, tuple[int, UserBaseline]] = OrderedDict()
        self._cache_size = cache_size
        self._checkpoint_every = checkpoint_every
        self._last_checkpoint: datetime | None = None
        self.shared = SharedState()
        self.prior = PriorBaselines()
        self._touched: set[str] = set()
        self.last_anomaly_count = 0

    # -- start-up and checkpoints -----------------------------------------------

    def load_state(self, uow: UnitOfWork) -> None:
        """Restores the detector windows and priors a previous run saved."""
        shared = uow.detection.load_state(SHARED_STATE)
        if shared:
            self.shared = SharedState.from_dict(shared)
        prior = uow.detection.load_state(PRIORS)
        if prior:
            self.prior = PriorBaselines.from_dict(prior)
        self._last_checkpoint = self._clock()

    def checkpoint(self, uow: UnitOfWork, force: bool = False) -> None:
        """Saves the cross-user detector windows and the priors now and then:
        losing them costs at most one window of detection, not correctness."""
        now = self._clock()
        if not force and self._last_checkpoint and now - self._last_checkpoint < self._checkpoint_every:
            return
        uow.detection.save_state(SHARED_STATE, self.shared.to_dict(), now)
        uow.detection.save_state(PRIORS, self.prior.to_dict(), now)
        self._last_checkpoint = now

    # -- events -------------------------------------------------------------------

    def reset(self, uow: UnitOfWork) -> int:
        """Forgets every baseline, detector window and prior (before a
        backfill rebuilds them); returns how many baselines were dropped."""
        dropped = uow.detection.delete_baselines()
        self._cache.clear()
        self.shared = SharedState()
        self.prior = PriorBaselines()
        self.checkpoint(uow, force=True)
        return dropped

    def process(self, uow: UnitOfWork, events: Sequence[ActivityEvent], raise_alerts: bool = True) -> list[Alert]:
        """Scores and learns newly stored events; returns the alerts created
        or changed (with their new seq numbers). Without `raise_alerts`
        (a backfill that only warms up baselines) anomalies are counted in
        `last_anomaly_count` but neither stored nor alerted."""
        self.last_anomaly_count = 0
        if not events:
            return []
        now = self._clock()
        users = sorted({e.user_id for e in events})
        self._touched = set(users)
        baselines = self._baselines(uow.detection, users)
        anomalies: list[Anomaly] = []
        for event in sorted(events, key=lambda e: e.occurred_at):
            anomalies.extend(self.engine.process(event, baselines[event.user_id], self.prior, self.shared))
        anomalies.extend(self.engine.flush())
        self._save_baselines(uow.detection, users, now)
        self.last_anomaly_count = len(anomalies)
        changed = self._alerts(uow.detection, anomalies, now) if anomalies and raise_alerts else []
        self.checkpoint(uow)
        return changed

    def rollback(self) -> None:
        """The transaction failed: forget the cached baselines it changed, so
        they are reloaded from what was committed."""
        for user_id in self._touched:
            self._cache.pop(user_id, None)
        self._touched = set()

    def _baselines(self, storage: DetectionStorage, users: list[str]) -> dict[str, UserBaseline]:
        versions = storage.baseline_versions(users)
        stale = [u for u in users if u not in self._cache or self._cache[u][0] != versions.get(u, 0)]
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

    def _alerts(self, storage: DetectionStorage, anomalies: list[Anomaly], now: datetime) -> list[Alert]:
        changed: dict[str, Alert] = {}
        created: set[str] = set()
        latest: dict[tuple[str, str], Alert | None] = {}
        risks: dict[str, RiskAccumulator] = {}
        for anomaly in anomalies:
            key = (anomaly.user_id, anomaly.detector)
            if key not in latest:
                latest[key] = storage.latest_alert(*key)
            result = self.policy.apply(anomaly, latest[key], storage.suppressed_until(*key), now)
            if result is None:
                continue
            alert, new = result
            risk = risks.get(anomaly.user_id)
            if risk is None:
                weight, as_of = storage.risk(anomaly.user_id)
                risk = risks[anomaly.user_id] = RiskAccumulator(weight, as_of)
            alert.user_risk = risk.add(self.risk, anomaly.severity, anomaly.occurred_at or now, now)
            latest[key] = changed[alert.alert_id] = alert
            if new:
                created.add(alert.alert_id)
        storage.insert_anomalies(anomalies)
        for user_id, risk in risks.items():
            storage.save_risk(user_id, risk.weight_sum, risk.as_of or now)
        self._assign_seqs(storage, list(changed.values()))
        storage.save_alerts(list(changed.values()), created)
        return sorted(changed.values(), key=lambda a: a.seq)

    @staticmethod
    def _assign_seqs(storage: DetectionStorage, alerts: list[Alert]) -> None:
        if alerts:
            for alert, seq in zip(alerts, storage.next_seqs(len(alerts))):
                alert.seq = seq

    # -- the analyst's workflow ----------------------------------------------------

    def acknowledge(self, uow: UnitOfWork, alert_id: str, who: str, note: str) -> Alert:
        storage = uow.detection
        alert = self._alert(storage, alert_id)
        lifecycle.acknowledge(alert, who, note, self._clock())
        self._assign_seqs(storage, [alert])
        storage.save_alerts([alert], set())
        return alert

    def resolve(self, uow: UnitOfWork, alert_id: str, resolution: Resolution | None, who: str, note: str,
                suppress_for: timedelta | None) -> Alert:
        """Closes the alert. Benign and false-positive resolutions learn the
        quarantined events after all and may silence the detector for the
        user; every resolution takes the alert's weight out of the risk."""
        storage = uow.detection
        now = self._clock()
        alert = self._alert(storage, alert_id)
        if suppress_for is not None and suppress_for < timedelta(0):
            raise InvalidArgument.single("suppress_for", "must not be negative")
        lifecycle.resolve(alert, resolution, who, note, now)
        anomalies = storage.anomalies_of_alert(alert_id)
        weight, as_of = storage.risk(alert.user_id)
        risk = RiskAccumulator(weight, as_of)
        for anomaly in anomalies:
            risk.remove(self.risk, anomaly.severity, anomaly.occurred_at or now, now)
        storage.save_risk(alert.user_id, risk.weight_sum, risk.as_of or now)
        alert.user_risk = risk.score(self.risk, now)
        if resolution is not None and resolution.readmits_events:
            self._admit(uow, alert.user_id, anomalies, now)
            storage.release_quarantine(alert_id)
            until = now + suppress_for if suppress_for else self.policy.suppressed_until(alert)
            if until is not None and until > now:
                storage.suppress(alert.user_id, alert.detector, until)
        self._assign_seqs(storage, [alert])
        storage.save_alerts([alert], set())
        return alert

    def _admit(self, uow: UnitOfWork, user_id: str, anomalies: list[Anomaly], now: datetime) -> None:
        event_ids = sorted({i for a in anomalies if a.quarantined for i in a.event_ids})
        if not event_ids:
            return
        self._touched = {user_id}
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
