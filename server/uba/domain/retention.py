"""Retention: expired rows leave the database in small steps.

Each kind of record has its own age limit (0 keeps it forever):
- events, by whole UTC days, with the hourly rollups of the hours they
  filled;
- anomalies, except those of an alert that is still open or of an incident
  that is still open;
- resolved alerts and resolved incidents (an open one is never deleted,
  however old), by the time of their last change;
- delivered notifications (pending and dead ones stay for the operator);
- audit entries, which an operator normally keeps longest.

The job deletes at most `batch` rows per transaction, each transaction on
the ingest writer between two ingest groups (on SQLite there is one write
lock, and the writer holds it for every group commit: a delete on another
connection would make ingest wait for it). After each batch it pauses for
`(1 - duty) / duty` times as long as the batch took, so retention takes at
most about `duty` of the writer's time however much has expired.

Storage may also have work of its own to do outside the writer
(`Housekeeping`): on PostgreSQL, creating the events' partitions of the
coming days and dropping those of expired days, whole (uba.storage.partitions).
It runs first in every pass, on a thread of its own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

log = logging.getLogger(__name__)

DAY = timedelta(days=1)
KINDS = ("events", "anomalies", "alerts", "notifications", "audit")


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Days each kind is kept; 0 keeps it forever."""

    events_days: int = 0
    anomaly_days: int = 0
    alert_days: int = 0
    notification_days: int = 0
    audit_days: int = 0

    def __post_init__(self) -> None:
        for name in (
            "events_days",
            "anomaly_days",
            "alert_days",
            "notification_days",
            "audit_days",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be 0 (keep forever) or a number of days")
        longest = max(self.events_days, self.anomaly_days, self.alert_days)
        if self.audit_days and self.audit_days < longest:
            raise ValueError(
                "audit_days must be 0 (forever) or at least as long as events, anomalies and "
                "alerts are kept: the trail must outlive what it is about"
            )

    @property
    def active(self) -> bool:
        return any(self.days(kind) for kind in KINDS)

    def days(self, kind: str) -> int:
        return {
            "events": self.events_days,
            "anomalies": self.anomaly_days,
            "alerts": self.alert_days,
            "notifications": self.notification_days,
            "audit": self.audit_days,
        }[kind]

    def cutoff(self, kind: str, now: datetime) -> datetime | None:
        """Records of `kind` older than this expire (None: kept forever).
        Events expire by whole UTC days, so that a day's partition can be
        dropped whole (and an hour's rollup goes with its last event): an
        event is kept at least the days set and goes within the day after."""
        days = self.days(kind)
        if not days:
            return None
        cutoff = now - days * DAY
        if kind == "events":
            cutoff = cutoff.replace(hour=0, minute=0, second=0, microsecond=0)
        return cutoff


class RetentionTransaction(Protocol):
    """The deletes of one batch (uba.storage.retention)."""

    def expire(self, kind: str, cutoff: datetime, limit: int) -> int:
        """Deletes at most `limit` expired records of `kind`; returns how many."""


class Housekeeping(Protocol):
    """Storage's own work, outside the writer (uba.storage.partitions)."""

    def prepare(self, now: datetime) -> object:
        """Makes ready what the coming days' writes need."""

    def drop_expired(self, kind: str, cutoff: datetime) -> int:
        """Removes whole units of `kind` that all expired before `cutoff`;
        returns how many records they held."""


class Writer(Protocol):
    def run_exclusive(self, action: Callable[[Any], Any]) -> Future: ...


class RetentionService:
    def __init__(
        self,
        writer: Writer,
        policy: RetentionPolicy,
        clock: Callable[[], datetime],
        batch: int = 5_000,
        duty: float = 0.05,
        min_pause: float = 0.05,
        housekeeping: Housekeeping | None = None,
    ):
        self._writer = writer
        self._housekeeping = housekeeping
        self.policy = policy
        self._clock = clock
        self.batch = batch
        self.duty = duty
        self.min_pause = min_pause
        self.deleted: dict[str, int] = dict.fromkeys(KINDS, 0)

    def _batch(self, kind: str, cutoff: datetime) -> Future:
        done: list[int] = []

        def action(uow: Any) -> None:
            tx: RetentionTransaction = uow.retention
            done.append(tx.expire(kind, cutoff, self.batch))

        outer: Future = Future()
        inner = self._writer.run_exclusive(action)

        def finish(f: Future) -> None:
            if outer.cancelled():  # the pass was cancelled meanwhile (shutdown)
                return
            if (e := f.exception()) is not None:
                outer.set_exception(e)
            else:
                outer.set_result(done[0])

        inner.add_done_callback(finish)
        return outer

    def _pause(self, took: float) -> float:
        return max(self.min_pause, took * (1.0 - self.duty) / self.duty)

    async def run_once(self) -> dict[str, int]:
        """One pass: every kind until nothing of it has expired. Returns the
        rows deleted per kind."""
        now = self._clock()
        deleted = dict.fromkeys(KINDS, 0)
        housekeeping = self._housekeeping
        if housekeeping is not None:
            await asyncio.to_thread(housekeeping.prepare, now)
        for kind in KINDS:
            cutoff = self.policy.cutoff(kind, now)
            if cutoff is None:
                continue
            if housekeeping is not None:
                n = await asyncio.to_thread(housekeeping.drop_expired, kind, cutoff)
                deleted[kind] += n
                self.deleted[kind] += n
            while True:
                started = time.monotonic()
                n = await asyncio.wrap_future(self._batch(kind, cutoff))
                deleted[kind] += n
                self.deleted[kind] += n
                if n < self.batch:
                    break
                await asyncio.sleep(self._pause(time.monotonic() - started))
        return deleted

    async def run_forever(self, interval: float = 600.0) -> None:
        """A pass now, then every `interval` seconds, until cancelled."""
        while True:
            try:
                deleted = await self.run_once()
                if any(deleted.values()):
                    log.info(
                        "retention: deleted %s",
                        ", ".join(f"{n} {kind}" for kind, n in deleted.items() if n),
                    )
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the database is down: try again next interval
                log.warning("retention pass failed", exc_info=True)
            await asyncio.sleep(interval)
