"""Retention on SQLite and PostgreSQL: expired events go with the hourly
counts of their hours, in batches on the ingest writer; anomalies, resolved
alerts and incidents, delivered notifications and audit entries expire by
their own settings; an open alert or incident, and its evidence, stays
however old; the audit trail still refuses every other change."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Float, Integer, String, Text, insert, text
from sqlalchemy.exc import DBAPIError

from uba.domain.events import ActivityEvent, ActivityType
from uba.domain.ingest import IngestService
from uba.domain.retention import RetentionPolicy, RetentionService
from uba.storage.database import Database
from uba.storage.events import HOUR_US, to_us
from uba.storage.models import (
    AlertRow,
    AnomalyRow,
    AuditRow,
    IncidentMemberRow,
    IncidentRow,
    NotificationRow,
    table_of,
)
from uba.storage.store import Store

pytestmark = pytest.mark.unit

NOW = datetime(2027, 3, 1, 12, 30, tzinfo=UTC)
OLD = NOW - timedelta(days=40)
RECENT = NOW - timedelta(days=1)


def row(model, **values) -> dict:
    """A row of `model`: the given values, every other column a blank."""
    out = {}
    for column in table_of(model).columns:
        if column.name == "id" or column.name in values:
            continue
        if column.nullable:
            out[column.name] = None
        elif isinstance(column.type, Float):
            out[column.name] = 0.0
        elif isinstance(column.type, Integer):
            out[column.name] = 0
        elif isinstance(column.type, String | Text):
            out[column.name] = ""
    return {**out, **values}


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path, make_database_url):
    url = make_database_url(request.param) or f"sqlite:///{tmp_path}/uba.db"
    database = Database(url)
    database.upgrade()
    yield database
    database.dispose()


def count(database: Database, sql: str) -> int:
    with database.read() as conn:
        return conn.execute(text(sql)).scalar_one()


def column(database: Database, sql: str) -> set:
    """The first column of the rows of `sql`, read on a connection that is
    given back at once (none is left open when the database is dropped)."""
    with database.read() as conn:
        return {r[0] for r in conn.execute(text(sql))}


def test_expiry_keeps_what_is_young_or_open(database):
    store = Store(database)
    ingest = IngestService(store)
    events = [
        ActivityEvent(f"old-{i}", f"u{i % 7}", ActivityType.API_CALL, OLD + timedelta(seconds=i))
        for i in range(1234)
    ] + [
        ActivityEvent(f"new-{i}", f"u{i % 7}", ActivityType.LOGIN_SUCCESS, RECENT)
        for i in range(10)
    ]
    ingest.submit(events).result()
    old_us, new_us, now_us = to_us(OLD), to_us(RECENT), to_us(NOW)
    with database.write() as conn:
        for alert_id, status, updated, incident in [
            ("a-open", "open", old_us, ""),
            ("a-old", "resolved", old_us, ""),
            ("a-new", "resolved", new_us, ""),
            ("a-in-open-incident", "resolved", old_us, "i-open"),
        ]:
            conn.execute(
                insert(table_of(AlertRow)),
                row(
                    AlertRow,
                    alert_id=alert_id,
                    seq=len(alert_id) * 1000 + updated % 997,
                    status=status,
                    updated_at_us=updated,
                    incident_id=incident,
                ),
            )
            conn.execute(
                insert(table_of(AnomalyRow)),
                row(
                    AnomalyRow, anomaly_id=f"x-{alert_id}", alert_id=alert_id, occurred_at_us=old_us
                ),
            )
        conn.execute(
            insert(table_of(AnomalyRow)),
            row(AnomalyRow, anomaly_id="x-alone", occurred_at_us=old_us),
        )
        for incident_id, status, seq in [("i-open", "open", 1), ("i-old", "resolved", 2)]:
            conn.execute(
                insert(table_of(IncidentRow)),
                row(
                    IncidentRow,
                    incident_id=incident_id,
                    seq=seq,
                    status=status,
                    updated_at_us=old_us,
                ),
            )
            conn.execute(
                insert(table_of(IncidentMemberRow)),
                row(IncidentMemberRow, incident_id=incident_id, anomaly_id=f"m-{incident_id}"),
            )
        for i, (status, delivered) in enumerate(
            [("delivered", old_us), ("delivered", new_us), ("dead", None), ("pending", None)]
        ):
            conn.execute(
                insert(table_of(NotificationRow)),
                row(
                    NotificationRow,
                    message_id=f"n{i}",
                    status=status,
                    created_at_us=old_us,
                    delivered_at_us=delivered,
                ),
            )
        conn.execute(
            insert(table_of(AuditRow)),
            [
                row(AuditRow, action="old", occurred_at_us=now_us - 400 * 86_400_000_000),
                row(AuditRow, action="new", occurred_at_us=now_us),
            ],
        )
    assert count(database, "SELECT COUNT(*) FROM event_rollup") == 2

    policy = RetentionPolicy(
        events_days=30, anomaly_days=30, alert_days=30, notification_days=30, audit_days=365
    )
    service = RetentionService(ingest, policy, lambda: NOW, batch=500, min_pause=0.0)
    deleted = asyncio.run(service.run_once())
    try:
        assert deleted["events"] >= 1234
        assert count(database, "SELECT COUNT(*) FROM events") == 10
        # The expired hour's counts and active users went with its events.
        hours = column(
            database,
            "SELECT DISTINCT hour FROM event_rollup UNION SELECT DISTINCT hour FROM user_hours",
        )
        assert hours == {to_us(RECENT) // HOUR_US}
        alerts = column(database, "SELECT alert_id FROM alerts")
        assert alerts == {"a-open", "a-new", "a-in-open-incident"}
        anomalies = column(database, "SELECT anomaly_id FROM anomalies")
        # Evidence of the open alert and of the open incident's alert stays;
        # a resolved alert's expires by the anomaly setting.
        assert anomalies == {"x-a-open", "x-a-in-open-incident"}
        incidents = column(database, "SELECT incident_id FROM incidents")
        assert incidents == {"i-open"}
        assert count(database, "SELECT COUNT(*) FROM incident_members") == 1
        assert column(database, "SELECT status FROM notifications") == {
            "delivered",
            "dead",
            "pending",
        }
        assert count(database, "SELECT COUNT(*) FROM notifications") == 3
        assert column(database, "SELECT action FROM audit_log") == {"new"}
        # No grant outlives its transaction: the trail is sealed again.
        assert count(database, "SELECT COUNT(*) FROM audit_grants") == 0
        with pytest.raises(DBAPIError):
            with database.engine.begin() as conn:
                conn.execute(text("DELETE FROM audit_log"))
        # A second pass finds nothing.
        assert not any(asyncio.run(service.run_once()).values())
    finally:
        ingest.close()


def test_the_audit_trail_outlives_what_it_is_about():
    with pytest.raises(ValueError, match="audit"):
        RetentionPolicy(events_days=90, audit_days=30)
    assert RetentionPolicy(events_days=90, audit_days=0).active
    assert not RetentionPolicy().active
