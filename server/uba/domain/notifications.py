"""Notifications: which alert and incident changes go to which destination,
and the outbox that makes their delivery survive anything after the commit.

Each change the analyzer makes (an alert or incident created, escalated,
acknowledged, resolved) is checked against every destination's route and,
for each one that takes it, written as a Notification into the outbox in
the same transaction as the change itself. A delivery worker sends the
outbox after the commit (uba.delivery): a change that committed is sent at
least once, whatever happens to the process, and a change that rolled back
is never sent.

The domain decides what is sent and to whom; how it is encoded and carried
(HTTP, syslog, OCSF, CEF) is the delivery adapter's business.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

from uba.domain import paging
from uba.domain.alerts import Alert
from uba.domain.anomalies import Anomaly, Severity
from uba.domain.errors import InvalidArgument, NotFound
from uba.domain.ids import new_uuid7
from uba.domain.incidents import Incident

ALERT_CREATED, ALERT_UPDATED = "alert.created", "alert.updated"
INCIDENT_CREATED, INCIDENT_UPDATED = "incident.created", "incident.updated"
TEST = "test"
# Longest text of a test message.
MAX_TEST_TEXT = 1000
# How many of an alert's anomalies a notification carries as evidence.
EVIDENCE_ANOMALIES = 20


class NotificationStatus(enum.Enum):
    PENDING = "pending"
    DELIVERED = "delivered"
    # Given up on: the receiver refused it for good, or it stayed
    # undeliverable past the destination's dead-letter age.
    DEAD = "dead"


@dataclass(frozen=True)
class Route:
    """What one destination takes: changes at or above a severity, of some
    detectors or ATT&CK tactics (empty: all), alerts and/or incidents."""

    destination: str
    min_severity: Severity = Severity.MEDIUM
    detectors: frozenset[str] = frozenset()
    tactics: frozenset[str] = frozenset()
    alerts: bool = True
    incidents: bool = True

    def accepts(self, change: Alert | Incident) -> bool:
        if change.severity < self.min_severity:
            return False
        if isinstance(change, Alert):
            if not self.alerts:
                return False
            detectors = {change.detector}
        else:
            if not self.incidents:
                return False
            detectors = set(change.detectors)
        if self.detectors and not self.detectors & detectors:
            return False
        return not self.tactics or bool(self.tactics & set(change.tactics))


@dataclass
class Notification:
    """One message to one destination: a row of the outbox."""

    message_id: str  # the idempotency id a receiver dedupes on
    destination: str
    event_type: str
    subject_id: str  # the alert's or incident's id
    severity: int
    payload: dict  # the envelope, as the API's JSON mapping
    created_at: datetime
    status: NotificationStatus = NotificationStatus.PENDING
    attempts: int = 0
    next_attempt_at: datetime | None = None
    delivered_at: datetime | None = None
    last_error: str = ""
    # Assigned by storage: the order of the outbox.
    position: int = 0


def event_type(change: Alert | Incident) -> str:
    """Created or updated: a change made in the transaction that created
    the alert or incident carries the same created and updated time."""
    created = change.created_at == change.updated_at
    if isinstance(change, Alert):
        return ALERT_CREATED if created else ALERT_UPDATED
    return INCIDENT_CREATED if created else INCIDENT_UPDATED


class OutboxStorage(Protocol):
    def add(self, notifications: Sequence[Notification]) -> None: ...


class AnomalyReader(Protocol):
    def recent_anomalies_of_alert(self, alert_id: str, limit: int) -> list[Anomaly]: ...


class OutboxTransaction(Protocol):
    """The write transaction the changes are made in."""

    @property
    def detection(self) -> AnomalyReader: ...

    @property
    def outbox(self) -> OutboxStorage: ...


# Builds a notification's payload: (message id, event type, change, its
# anomalies, when) -> the envelope. The delivery adapter supplies it, in
# the API's JSON mapping.
Envelope = Callable[[str, str, "Alert | Incident | None", Sequence[Anomaly], datetime], dict]


@dataclass
class Notifier:
    """Writes the notifications of a transaction's changes into its outbox."""

    routes: Sequence[Route]
    envelope: Envelope
    clock: Callable[[], datetime]

    def enqueue(self, uow: OutboxTransaction, changes: Sequence) -> int:
        """In the changes' transaction: one notification per change and
        destination that takes it, in seq order (other results of the
        writer's work are ignored). Returns how many."""
        rows: list[Notification] = []
        now = self.clock()
        changes = [c for c in changes if isinstance(c, Alert | Incident)]
        for change in sorted(changes, key=lambda c: c.seq):
            routes = [r for r in self.routes if r.accepts(change)]
            if not routes:
                continue
            kind = event_type(change)
            anomalies = (
                uow.detection.recent_anomalies_of_alert(change.alert_id, EVIDENCE_ANOMALIES)
                if isinstance(change, Alert)
                else []
            )
            subject = change.alert_id if isinstance(change, Alert) else change.incident_id
            for route in routes:
                message_id = new_uuid7()
                rows.append(
                    Notification(
                        message_id=message_id,
                        destination=route.destination,
                        event_type=kind,
                        subject_id=subject,
                        severity=int(change.severity),
                        payload=self.envelope(message_id, kind, change, anomalies, now),
                        created_at=now,
                        next_attempt_at=now,
                    )
                )
        if rows:
            uow.outbox.add(rows)
        return len(rows)

    def test_message(self, destination: str, text: str) -> Notification:
        """A test notification for one destination (`uba notify test`)."""
        now = self.clock()
        message_id = new_uuid7()
        payload = self.envelope(message_id, TEST, None, [], now)
        payload.setdefault("data", {})["message"] = text
        return Notification(
            message_id=message_id,
            destination=destination,
            event_type=TEST,
            subject_id="",
            severity=0,
            payload=payload,
            created_at=now,
            next_attempt_at=now,
        )


@dataclass(frozen=True)
class DestinationInfo:
    """A configured destination as the operator sees it, with its backlog."""

    name: str
    kind: str
    format: str
    pending: int = 0
    delivered: int = 0
    dead: int = 0
    oldest_pending_at: datetime | None = None


class NotificationStore(Protocol):
    def page_notifications(
        self, limit: int, after_position: int, destination: str, status: NotificationStatus | None
    ) -> list[Notification]: ...
    def retry_notifications(
        self, destination: str, message_ids: Sequence[str], now: datetime
    ) -> int: ...
    def add_notification(self, notification: Notification) -> None: ...
    def notification_backlog(self) -> dict[str, dict[str, int]]: ...


class NotificationService:
    """The operator's view of delivery: the backlog, dead letters sent
    again, test messages (uba notify list|retry|test)."""

    def __init__(
        self,
        store: NotificationStore,
        notifier: Notifier | None,
        destinations: Sequence[DestinationInfo],
        wake: Callable[[], None],
    ):
        self._store = store
        self._notifier = notifier
        self._destinations = {d.name: d for d in destinations}
        self._wake = wake

    def _known(self, field_name: str, destination: str, required: bool) -> None:
        if not destination:
            if required:
                raise InvalidArgument.single(
                    field_name, "required: a destination of the notify file"
                )
            return
        if destination not in self._destinations:
            known = (
                ", ".join(sorted(self._destinations)) or "none (the server has no --notify file)"
            )
            raise NotFound(f"no destination {destination!r}; configured: {known}")

    def page(
        self,
        destination: str,
        status: NotificationStatus | None,
        requested_size: int,
        token: str,
    ) -> tuple[list[Notification], str, list[DestinationInfo]]:
        self._known("destination", destination, required=False)
        size = paging.page_size(requested_size)
        key = {"destination": destination, "status": status.value if status else ""}
        after = paging.decode(token, key, 1)
        rows = self._store.page_notifications(
            size + 1, after[0] if after else 0, destination, status
        )
        next_token = paging.encode([rows[size - 1].position], key) if len(rows) > size else ""
        return rows[:size], next_token, self.destinations()

    def destinations(self) -> list[DestinationInfo]:
        backlog = self._store.notification_backlog()
        out = []
        for d in self._destinations.values():
            counts = backlog.get(d.name, {})
            oldest = counts.get("oldest_pending_us", 0)
            out.append(
                replace(
                    d,
                    pending=counts.get(NotificationStatus.PENDING.value, 0),
                    delivered=counts.get(NotificationStatus.DELIVERED.value, 0),
                    dead=counts.get(NotificationStatus.DEAD.value, 0),
                    oldest_pending_at=(
                        datetime.fromtimestamp(oldest / 1e6, UTC) if oldest else None
                    ),
                )
            )
        return out

    def retry(self, destination: str, message_ids: Sequence[str]) -> int:
        self._known("destination", destination, required=True)
        count = self._store.retry_notifications(
            destination, list(message_ids), self._notifier_clock()
        )
        self._wake()
        return count

    def send_test(self, destination: str, text: str) -> Notification:
        self._known("destination", destination, required=True)
        if self._notifier is None:
            raise NotFound("the server has no --notify file")
        if len(text) > MAX_TEST_TEXT:
            raise InvalidArgument.single("text", f"at most {MAX_TEST_TEXT} characters")
        notification = self._notifier.test_message(
            destination, text or "uba test notification: delivery to this destination works"
        )
        self._store.add_notification(notification)
        self._wake()
        return notification

    def _notifier_clock(self) -> datetime:
        return self._notifier.clock() if self._notifier else datetime.now(UTC)
