"""The storage facade the domain talks to. Reads are one transaction each;
the ingest writer gets a write transaction: one transaction in which it
stores events and everything detection derived from them.

Domain services see plain Python objects only; SQLAlchemy stays in this
package.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from sqlalchemy import Connection

from uba.domain.alerts import Alert, AlertStatus
from uba.domain.anomalies import Anomaly
from uba.domain.erasure import ErasureReport
from uba.domain.events import ActivityEvent, EventFilter
from uba.domain.incidents import Incident, IncidentStatus
from uba.domain.notifications import Notification, NotificationStatus
from uba.storage.database import Database
from uba.storage.detection import DetectionRepository
from uba.storage.events import EventKey, EventRepository
from uba.storage.gauges import OperationalCounts, operational_counts
from uba.storage.incidents import IncidentRepository
from uba.storage.outbox import OutboxRepository
from uba.storage.retention import RetentionRepository


class Repositories:
    """The repositories of one transaction, each bound to its connection,
    so that domain code never handles a connection."""

    def __init__(self, conn: Connection, backend: str):
        self.events = EventRepository(conn, backend)
        self.detection = DetectionRepository(conn, backend)
        self.incidents = IncidentRepository(conn, backend)
        self.outbox = OutboxRepository(conn, backend)


class WriteTransaction(Repositories):
    """The ingest writer's transaction: its repositories, and the storing of
    a group of events."""

    @property
    def retention(self) -> RetentionRepository:
        """Retention's and erasure's deletes (made on demand: ingest's
        transactions never use them)."""
        return RetentionRepository(self.events._conn, self.events.backend)  # noqa: SLF001

    def store_events(
        self, events: Sequence[ActivityEvent], received_at: datetime
    ) -> tuple[set[str], dict[str, datetime]]:
        """Inserts the new events; returns the ids inserted now and, for the
        others (already stored), when they were first received."""
        inserted = self.events.insert_new(events, received_at)
        if inserted:
            self.events.add_to_rollups([e for e in events if e.event_id in inserted])
        others = [e.event_id for e in events if e.event_id not in inserted]
        return inserted, (self.events.received_at(others) if others else {})


class Store:
    """What the domain services call: each read in a transaction of its
    own, and the ingest writer's transaction (`unit_of_work`, the name
    uba.domain.ingest asks for)."""

    def __init__(self, database: Database):
        self.database = database
        self.backend = database.backend

    @contextmanager
    def unit_of_work(self) -> Iterator[WriteTransaction]:
        """For the ingest writer thread only (it holds one connection)."""
        with self.database.write_held() as conn:
            yield WriteTransaction(conn, self.backend)

    @contextmanager
    def transaction(self) -> Iterator[WriteTransaction]:
        """A write transaction like the ingest writer's on a pooled
        connection, for another writer thread (an event-log worker's
        population partitions)."""
        with self.database.write() as conn:
            yield WriteTransaction(conn, self.backend)

    @contextmanager
    def outbox(self) -> Iterator[OutboxRepository]:
        """A write transaction on the outbox, for the delivery worker and
        the operator's retries (not the ingest writer's connection)."""
        with self.database.write() as conn:
            yield OutboxRepository(conn, self.backend)

    @contextmanager
    def outbox_read(self) -> Iterator[OutboxRepository]:
        with self.database.read() as conn:
            yield OutboxRepository(conn, self.backend)

    @contextmanager
    def _read(self) -> Iterator[Repositories]:
        """A read transaction's repositories."""
        with self.database.read() as conn:
            yield Repositories(conn, self.backend)

    # -- reads ------------------------------------------------------------------

    def erasure_reports(self, erasure_id: str) -> list[ErasureReport]:
        """What the event log's workers applied of an erasure, one report
        per partition (uba.domain.erasure.LoggedErasureService)."""
        with self.database.read() as conn:
            return RetentionRepository(conn, self.backend).erasure_reports(erasure_id)

    def page_events(
        self, flt: EventFilter, limit: int, after: list[int] | None, newest_first: bool
    ) -> list[tuple[list[int], ActivityEvent]]:
        key = EventKey(*after) if after else None
        with self._read() as repos:
            rows = repos.events.page(flt, limit, key, newest_first)
        return [([k.occurred_at_us, k.id], e) for k, e in rows]

    def export_page(
        self, flt: EventFilter, limit: int, after: list[int] | None
    ) -> tuple[list[tuple], list[int] | None]:
        key = EventKey(*after) if after else None
        with self._read() as repos:
            rows, last = repos.events.export_page(flt, limit, key)
        return rows, (None if last is None else [last.occurred_at_us, last.id])

    def window_counts(
        self, start_hour: int, end_hour: int
    ) -> tuple[dict[int, dict[str, int]], int]:
        with self._read() as repos:
            return repos.events.window_counts(start_hour, end_hour)

    def page_anomalies(
        self,
        limit: int,
        after: list[int] | None,
        *,
        user_id: str = "",
        detector: str = "",
        min_severity: int = 0,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
    ) -> list[tuple[list[int], Anomaly]]:
        with self._read() as repos:
            rows = repos.detection.page_anomalies(
                limit,
                (after[0], after[1]) if after else None,
                user_id=user_id,
                detector=detector,
                min_severity=min_severity,
                start_time=start_time,
                end_time=end_time,
            )
        return [(list(key), anomaly) for key, anomaly in rows]

    def page_alerts(
        self,
        limit: int,
        before_seq: int | None,
        *,
        user_id: str = "",
        detector: str = "",
        min_severity: int = 0,
        status: AlertStatus | None = None,
    ) -> list[Alert]:
        with self._read() as repos:
            return repos.detection.page_alerts(
                limit,
                before_seq,
                user_id=user_id,
                detector=detector,
                min_severity=min_severity,
                status=status,
            )

    def alerts_after(self, seq: int, limit: int) -> list[Alert]:
        with self._read() as repos:
            return repos.detection.alerts_after(seq, limit)

    def max_alert_seq(self) -> int:
        """The latest seq of the alerts' sequence (alert and incident changes)."""
        with self._read() as repos:
            return max(repos.detection.max_seq(), repos.incidents.max_seq())

    def changes_after(self, seq: int, limit: int) -> list[Alert | Incident]:
        """Alert and incident changes after `seq`, in seq order (they share
        the sequence), at most `limit`."""
        with self._read() as repos:
            alerts = repos.detection.alerts_after(seq, limit)
            incidents = repos.incidents.incidents_after(seq, limit)
        changes: list[Alert | Incident] = [*alerts, *incidents]
        return sorted(changes, key=lambda change: change.seq)[:limit]

    def page_incidents(
        self,
        limit: int,
        before_seq: int | None,
        *,
        user_id: str = "",
        status: IncidentStatus | None = None,
        min_severity: int = 0,
        tactic: str = "",
        start_time: datetime | None = None,
        end_time: datetime | None = None,
    ) -> list[Incident]:
        with self._read() as repos:
            return repos.incidents.page_incidents(
                limit,
                before_seq,
                user_id=user_id,
                status=status,
                min_severity=min_severity,
                tactic=tactic,
                start_time=start_time,
                end_time=end_time,
            )

    def incident(self, incident_id: str) -> Incident | None:
        with self._read() as repos:
            return repos.incidents.incident(incident_id)

    def incident_anomalies(self, incident_id: str, limit: int = 1000) -> list[Anomaly]:
        with self._read() as repos:
            return repos.incidents.member_anomalies(incident_id, limit)

    def alerts_by_ids(self, alert_ids: Sequence[str]) -> list[Alert]:
        with self._read() as repos:
            found = [repos.detection.alert(a) for a in alert_ids]
        return [a for a in found if a is not None]

    def baseline(self, user_id: str) -> dict | None:
        with self._read() as repos:
            return repos.detection.baseline(user_id)

    def anomaly_counts(
        self, start: datetime, end: datetime
    ) -> tuple[dict[int, int], dict[str, int]]:
        with self._read() as repos:
            return repos.detection.anomaly_counts(start, end)

    def open_alerts_by_severity(self) -> dict[int, int]:
        with self._read() as repos:
            return repos.detection.open_alerts_by_severity()

    def risks(self) -> list[tuple[str, float, datetime]]:
        with self._read() as repos:
            return repos.detection.risks()

    def open_reasons(self, user_ids: Sequence[str]) -> dict[str, list[str]]:
        with self._read() as repos:
            return repos.detection.recent_open_reasons(user_ids)

    # -- the outbox, for the operator -------------------------------------------

    def page_notifications(
        self, limit: int, after_position: int, destination: str, status: NotificationStatus | None
    ) -> list[Notification]:
        with self.outbox_read() as outbox:
            return outbox.page(limit, after_position, destination=destination, status=status)

    def retry_notifications(
        self, destination: str, message_ids: Sequence[str], now: datetime
    ) -> int:
        with self.outbox() as outbox:
            return outbox.retry(destination, message_ids, now)

    def add_notification(self, notification: Notification) -> None:
        with self.outbox() as outbox:
            outbox.add([notification])

    def notification_backlog(self) -> dict[str, dict[str, int]]:
        with self.outbox_read() as outbox:
            return outbox.backlog()

    def operational_counts(self, destinations: list[str]) -> OperationalCounts:
        """What the metrics scrape reads (uba.storage.gauges)."""
        with self.database.read() as conn:
            return operational_counts(conn, destinations)

    def ping(self) -> None:
        """Raises when the database cannot be reached."""
        with self.database.read() as conn:
            conn.exec_driver_sql("SELECT 1")
