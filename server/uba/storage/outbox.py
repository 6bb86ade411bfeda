"""The delivery outbox: notifications in, in the writer's transaction; the
delivery worker's claims, sends and retries in transactions of its own.

Order and once-only delivery across processes rest on a lease per
destination (a conditional UPDATE, the same on SQLite and PostgreSQL): the
process holding it sends that destination's messages in `id` order; the
others leave it alone until the lease expires.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Connection, and_, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from uba.domain.notifications import Notification, NotificationStatus
from uba.storage.events import from_us, from_us_or_none, to_us, to_us_or_none
from uba.storage.models import DeliveryLeaseRow, NotificationRow, table_of

notifications_t = table_of(NotificationRow)
leases_t = table_of(DeliveryLeaseRow)

PENDING = NotificationStatus.PENDING.value
DEAD = NotificationStatus.DEAD.value
DELIVERED = NotificationStatus.DELIVERED.value


def _values(n: Notification) -> dict:
    return {
        "message_id": n.message_id,
        "destination": n.destination,
        "event_type": n.event_type,
        "subject_id": n.subject_id,
        "severity": n.severity,
        "payload": json.dumps(n.payload, separators=(",", ":"), sort_keys=True),
        "status": n.status.value,
        "attempts": n.attempts,
        "created_at_us": to_us(n.created_at),
        "next_attempt_us": to_us(n.next_attempt_at or n.created_at),
        "delivered_at_us": to_us_or_none(n.delivered_at),
        "last_error": n.last_error[:1024],
    }


def _from_row(r) -> Notification:
    return Notification(
        message_id=r.message_id,
        destination=r.destination,
        event_type=r.event_type,
        subject_id=r.subject_id,
        severity=r.severity,
        payload=json.loads(r.payload),
        created_at=from_us(r.created_at_us),
        status=NotificationStatus(r.status),
        attempts=r.attempts,
        next_attempt_at=from_us(r.next_attempt_us),
        delivered_at=from_us_or_none(r.delivered_at_us),
        last_error=r.last_error,
        position=r.id,
    )


class OutboxRepository:
    def __init__(self, conn: Connection, backend: str):
        self._conn = conn
        self.backend = backend

    # -- the writer's side ------------------------------------------------------

    def add(self, notifications: Sequence[Notification]) -> None:
        if notifications:
            self._conn.execute(insert(notifications_t), [_values(n) for n in notifications])

    # -- the delivery worker's side ----------------------------------------------

    def acquire_lease(self, destination: str, owner: str, now: datetime, until: datetime) -> bool:
        """Takes or renews the destination's lease; False while another
        process holds one that has not expired."""
        dialect = postgresql if self.backend == "postgresql" else sqlite
        self._conn.execute(
            dialect.insert(leases_t)
            .values(destination=destination, owner=owner, until_us=to_us(until))
            .on_conflict_do_nothing()
        )
        taken = self._conn.execute(
            update(leases_t)
            .where(
                leases_t.c.destination == destination,
                or_(leases_t.c.owner == owner, leases_t.c.until_us < to_us(now)),
            )
            .values(owner=owner, until_us=to_us(until))
        ).rowcount
        return taken == 1

    def release_lease(self, destination: str, owner: str) -> None:
        self._conn.execute(
            update(leases_t)
            .where(leases_t.c.destination == destination, leases_t.c.owner == owner)
            .values(until_us=0)
        )

    def head(self, destination: str, limit: int) -> list[Notification]:
        """The destination's oldest pending messages, in order."""
        rows = self._conn.execute(
            select(notifications_t)
            .where(
                notifications_t.c.destination == destination, notifications_t.c.status == PENDING
            )
            .order_by(notifications_t.c.id)
            .limit(limit)
        ).all()
        return [_from_row(r) for r in rows]

    def delivered(self, position: int, attempts: int, now: datetime) -> None:
        self._conn.execute(
            update(notifications_t)
            .where(notifications_t.c.id == position)
            .values(status=DELIVERED, attempts=attempts, delivered_at_us=to_us(now), last_error="")
        )

    def failed(self, position: int, attempts: int, retry_at: datetime, error: str) -> None:
        self._conn.execute(
            update(notifications_t)
            .where(notifications_t.c.id == position)
            .values(attempts=attempts, next_attempt_us=to_us(retry_at), last_error=error[:1024])
        )

    def dead(self, position: int, attempts: int, error: str) -> None:
        self._conn.execute(
            update(notifications_t)
            .where(notifications_t.c.id == position)
            .values(status=DEAD, attempts=attempts, last_error=error[:1024])
        )

    # -- the operator's side ---------------------------------------------------------

    def page(
        self,
        limit: int,
        after_position: int,
        *,
        destination: str = "",
        status: NotificationStatus | None = None,
    ) -> list[Notification]:
        """Messages in outbox order after a position, optionally of one
        destination and status."""
        query = select(notifications_t).where(notifications_t.c.id > after_position)
        if destination:
            query = query.where(notifications_t.c.destination == destination)
        if status is not None:
            query = query.where(notifications_t.c.status == status.value)
        rows = self._conn.execute(query.order_by(notifications_t.c.id).limit(limit)).all()
        return [_from_row(r) for r in rows]

    def retry(self, destination: str, message_ids: Sequence[str], now: datetime) -> int:
        """Dead letters back to pending (all of a destination's when no ids
        are given); returns how many. They keep their place in the order."""
        conditions = [notifications_t.c.status == DEAD]
        if destination:
            conditions.append(notifications_t.c.destination == destination)
        if message_ids:
            conditions.append(notifications_t.c.message_id.in_(list(message_ids)))
        return self._conn.execute(
            update(notifications_t)
            .where(and_(*conditions))
            .values(status=PENDING, next_attempt_us=to_us(now), attempts=0)
        ).rowcount

    def by_message_id(self, message_id: str) -> Notification | None:
        row = self._conn.execute(
            select(notifications_t).where(notifications_t.c.message_id == message_id)
        ).first()
        return _from_row(row) if row else None

    def backlog(self) -> dict[str, dict[str, int]]:
        """Per destination: messages by status, and the oldest pending
        message's creation time (microseconds, 0 when none)."""
        out: dict[str, dict[str, int]] = {}
        rows = self._conn.execute(
            select(
                notifications_t.c.destination,
                notifications_t.c.status,
                func.count(),
                func.min(notifications_t.c.created_at_us),
            ).group_by(notifications_t.c.destination, notifications_t.c.status)
        ).all()
        for destination, status, count, oldest in rows:
            entry = out.setdefault(
                destination, {PENDING: 0, DELIVERED: 0, DEAD: 0, "oldest_pending_us": 0}
            )
            entry[status] = count
            if status == PENDING:
                entry["oldest_pending_us"] = oldest or 0
        return out
