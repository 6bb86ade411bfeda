"""The storage facade the domain talks to. Reads are one transaction each;
the ingest writer gets a unit of work: one transaction in which it stores
events and everything detection derived from them.

Domain services see plain Python objects only; SQLAlchemy stays in this
package.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime

from uba.domain.alerts import Alert
from uba.domain.anomalies import Anomaly
from uba.domain.events import ActivityEvent, EventFilter
from uba.domain.incidents import Incident, IncidentFilter
from uba.domain.investigation import AlertFilter, AnomalyFilter
from uba.storage.database import Database
from uba.storage.detection import DetectionRepository
from uba.storage.events import EventKey, EventRepository
from uba.storage.incidents import IncidentRepository


class _Bound:
    """A repository with the transaction's connection bound as the first
    argument of every method, so domain code never handles a connection."""

    def __init__(self, repository: object, conn: object):
        self._repository = repository
        self._conn = conn

    def __getattr__(self, name: str):
        return functools.partial(getattr(self._repository, name), self._conn)


class UnitOfWork:
    """One write transaction: `events`, `detection` and `incidents` repositories."""

    def __init__(self, events: _Bound, detection: _Bound, incidents: _Bound | None = None):
        self.events = events
        self.detection = detection
        self.incidents = incidents

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
    def __init__(self, database: Database):
        self.database = database
        self.backend = database.backend
        self.events = EventRepository(database.backend)
        self.detection = DetectionRepository(database.backend)
        self.incidents = IncidentRepository(database.backend)

    @contextmanager
    def unit_of_work(self) -> Iterator[UnitOfWork]:
        """For the ingest writer thread only (it holds one connection)."""
        with self.database.write_held() as conn:
            yield UnitOfWork(
                _Bound(self.events, conn),
                _Bound(self.detection, conn),
                _Bound(self.incidents, conn),
            )

    # -- reads ------------------------------------------------------------------

    def page_events(
        self, flt: EventFilter, limit: int, after: list[int] | None, newest_first: bool
    ) -> list[tuple[list[int], ActivityEvent]]:
        key = EventKey(*after) if after else None
        with self.database.read() as conn:
            rows = self.events.page(conn, flt, limit, key, newest_first)
        return [([k.occurred_at_us, k.id], e) for k, e in rows]

    def export_page(
        self, flt: EventFilter, limit: int, after: list[int] | None
    ) -> tuple[list[tuple], list[int] | None]:
        key = EventKey(*after) if after else None
        with self.database.read() as conn:
            rows, last = self.events.export_page(conn, flt, limit, key)
        return rows, (None if last is None else [last.occurred_at_us, last.id])

    def window_counts(
        self, start_hour: int, end_hour: int
    ) -> tuple[dict[int, dict[str, int]], int]:
        with self.database.read() as conn:
            return self.events.window_counts(conn, start_hour, end_hour)

    def page_anomalies(
        self, flt: AnomalyFilter, limit: int, after: list[int] | None
    ) -> list[tuple[list[int], Anomaly]]:
        with self.database.read() as conn:
            rows = self.detection.page_anomalies(conn, flt, limit, tuple(after) if after else None)
        return [(list(key), anomaly) for key, anomaly in rows]

    def page_alerts(self, flt: AlertFilter, limit: int, before_seq: int | None) -> list[Alert]:
        with self.database.read() as conn:
            return self.detection.page_alerts(conn, flt, limit, before_seq)

    def alerts_after(self, seq: int, limit: int) -> list[Alert]:
        with self.database.read() as conn:
            return self.detection.alerts_after(conn, seq, limit)

    def max_alert_seq(self) -> int:
        """The latest seq of the alerts' sequence (alert and incident changes)."""
        with self.database.read() as conn:
            return max(self.detection.max_seq(conn), self.incidents.max_seq(conn))

    def changes_after(self, seq: int, limit: int) -> list[Alert | Incident]:
        """Alert and incident changes after `seq`, in seq order (they share
        the sequence), at most `limit`."""
        with self.database.read() as conn:
            alerts = self.detection.alerts_after(conn, seq, limit)
            incidents = self.incidents.incidents_after(conn, seq, limit)
        return sorted([*alerts, *incidents], key=lambda x: x.seq)[:limit]

    def page_incidents(
        self, flt: IncidentFilter, limit: int, before_seq: int | None
    ) -> list[Incident]:
        with self.database.read() as conn:
            return self.incidents.page_incidents(conn, flt, limit, before_seq)

    def incident(self, incident_id: str) -> Incident | None:
        with self.database.read() as conn:
            return self.incidents.incident(conn, incident_id)

    def incident_anomalies(self, incident_id: str, limit: int = 1000) -> list[Anomaly]:
        with self.database.read() as conn:
            return self.incidents.member_anomalies(conn, incident_id, limit)

    def alerts_by_ids(self, alert_ids: Sequence[str]) -> list[Alert]:
        with self.database.read() as conn:
            found = [self.detection.alert(conn, a) for a in alert_ids]
        return [a for a in found if a is not None]

    def baseline(self, user_id: str) -> dict | None:
        with self.database.read() as conn:
            return self.detection.baseline(conn, user_id)

    def anomaly_counts(
        self, start: datetime, end: datetime
    ) -> tuple[dict[int, int], dict[str, int]]:
        with self.database.read() as conn:
            return self.detection.anomaly_counts(conn, start, end)

    def open_alerts_by_severity(self) -> dict[int, int]:
        with self.database.read() as conn:
            return self.detection.open_alerts_by_severity(conn)

    def risks(self) -> list[tuple[str, float, datetime]]:
        with self.database.read() as conn:
            return self.detection.risks(conn)

    def open_reasons(self, user_ids: Sequence[str]) -> dict[str, list[str]]:
        with self.database.read() as conn:
            return self.detection.recent_open_reasons(conn, user_ids)

    def ping(self) -> None:
        """Raises when the database cannot be reached."""
        with self.database.read() as conn:
            conn.exec_driver_sql("SELECT 1")
