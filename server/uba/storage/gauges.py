"""Counts the metrics scrape reads from storage: unresolved alerts and
incidents, and the outbox messages still waiting or dead. Each count walks
only the rows in those states through an index whose first column is the
status (resolved alerts, closed incidents and delivered messages, which
grow without bound, are never read), so a scrape stays cheap on a large
store."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, func, select

from uba.domain.alerts import AlertStatus
from uba.domain.incidents import IncidentStatus
from uba.domain.notifications import NotificationStatus
from uba.storage.models import AlertRow, IncidentRow, NotificationRow, table_of

alerts_t = table_of(AlertRow)
incidents_t = table_of(IncidentRow)
notifications_t = table_of(NotificationRow)

_UNRESOLVED_ALERTS = (AlertStatus.OPEN.value, AlertStatus.ACKNOWLEDGED.value)
_UNRESOLVED_INCIDENTS = (IncidentStatus.OPEN.value, IncidentStatus.ACKNOWLEDGED.value)
_WAITING = (NotificationStatus.PENDING.value, NotificationStatus.DEAD.value)


@dataclass
class OperationalCounts:
    alerts: dict[tuple[str, int], int] = field(default_factory=dict)  # (status, severity)
    incidents: dict[tuple[str, int], int] = field(default_factory=dict)
    notifications: dict[tuple[str, str], int] = field(default_factory=dict)  # (dest, status)
    oldest_pending_us: dict[str, int] = field(default_factory=dict)  # per destination


def operational_counts(conn: Connection, destinations: list[str]) -> OperationalCounts:
    out = OperationalCounts()
    for status, severity, count in conn.execute(
        select(alerts_t.c.status, alerts_t.c.severity, func.count())
        .where(alerts_t.c.status.in_(_UNRESOLVED_ALERTS))
        .group_by(alerts_t.c.status, alerts_t.c.severity)
    ):
        out.alerts[(status, severity)] = count
    for status, severity, count in conn.execute(
        select(incidents_t.c.status, incidents_t.c.severity, func.count())
        .where(incidents_t.c.status.in_(_UNRESOLVED_INCIDENTS))
        .group_by(incidents_t.c.status, incidents_t.c.severity)
    ):
        out.incidents[(status, severity)] = count
    if not destinations:
        return out
    # By the configured destinations: the (destination, status, id) index.
    for destination, status, count, oldest in conn.execute(
        select(
            notifications_t.c.destination,
            notifications_t.c.status,
            func.count(),
            func.min(notifications_t.c.created_at_us),
        )
        .where(
            notifications_t.c.destination.in_(destinations),
            notifications_t.c.status.in_(_WAITING),
        )
        .group_by(notifications_t.c.destination, notifications_t.c.status)
    ):
        out.notifications[(destination, status)] = count
        if status == NotificationStatus.PENDING.value:
            out.oldest_pending_us[destination] = oldest or 0
    return out
